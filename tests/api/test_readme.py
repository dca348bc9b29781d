"""The README's Python example runs as written, with smaller numbers (the replacements below must
all still match the README: change both together)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
# README text -> what the test runs instead (a toy budget on the synthetic set)
SMALLER = {
    "n_train=200, n_val=50, img_size=192": "n_train=16, n_val=8, img_size=64",
    "epochs=30, img=192, batch=16": "epochs=1, img=64, batch=8, workers=0",
    "bench(runs=10)": "bench(runs=2, warmup=1)",
}


def readme_example() -> str:
    """The first ```python block of the README's Python section that uses ``YOLO``."""
    section = README.read_text(encoding="utf-8").split("\n## Python\n", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return next(b for b in blocks if "YOLO(" in b)


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    code = readme_example()
    for old, new in SMALLER.items():
        assert old in code, f"README example changed: {old!r} not found; update SMALLER"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    assert "mAP@0.5 " in printed and "runs/shapes/weights/best.pt" in printed
    assert (tmp_path / "runs" / "shapes" / "weights" / "best.onnx").is_file()
    assert (tmp_path / "runs" / "val" / "exp" / "pr_curve.png").is_file()
