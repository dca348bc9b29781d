"""`repyolo demo` end to end at a toy budget (the real budget is measured in BENCHMARKS.md)."""
from __future__ import annotations

import json

import pytest

from repyolo.cli import main


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    code = main(["demo", "--project", str(tmp_path), "--epochs", "2", "--n-train", "16", "--n-val", "8",
                 "--img", "64", "--batch", "8", "--workers", "0"])
    assert code == 0
    report = json.loads((tmp_path / "demo.json").read_text())
    assert (tmp_path / "train" / "weights" / "best.pt").is_file()
    assert report["onnx"] and (tmp_path / "model.onnx").is_file()
    drawn = list((tmp_path / "predict").glob("*.jpg"))
    assert len(drawn) == 6
    assert 0.0 <= report["map50"] <= 1.0
