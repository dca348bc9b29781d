"""The command line's surface: every ``--help`` shows the defaults, and an output that cannot be
written is one ``error:`` line (exit 2) before any work starts, for every command that writes."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import pytest

from repyolo.cli import build_parser, main, subparsers


def test_every_option_help_shows_its_default():
    missing = []
    for parser in subparsers(build_parser()):
        text = parser.format_help()
        for action in parser._actions:
            default = action.default
            if (not action.option_strings or default in (None, False, argparse.SUPPRESS, [], "")
                    or isinstance(action, argparse._SubParsersAction)):
                continue
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
            if not action.help or shown not in text:  # (argparse prints no default without a help text)
                missing.append(f"{parser.prog} {action.option_strings[0]} (default {shown})")
    assert not missing, "options whose help hides the default:\n" + "\n".join(missing)


@pytest.fixture
def blocked(tmp_path) -> Path:
    """A regular file: any output path under it cannot be created."""
    f = tmp_path / "not_a_folder"
    f.write_text("a regular file")
    return f


def _commands(weights, data, image, out: Path) -> dict[str, list[str]]:
    """Command lines whose output goes under ``out``, by case name."""
    return {
        "predict": ["predict", "--weights", weights, "--source", image, "--project", str(out)],
        "export": ["export", "--weights", weights, "--output", str(out / "m.onnx")],
        "val": ["val", "--weights", weights, "--data", data, "--project", str(out)],
        "val-json": ["val", "--weights", weights, "--data", data, "--no-save", "--json", str(out / "m.json")],
        "val-predictions": ["val", "--predictions", str(out / "p.json"), "--data", data, "--project", str(out)],
        "quantize": ["quantize", "ptq", "--weights", weights, "--data", data, "--output", str(out / "q.onnx")],
        "demo": ["demo", "--project", str(out), "--epochs", "1"],
        "import-weights": ["import-weights", weights, "-o", str(out / "w.pt")],
        "bench": ["bench", "--weights", weights, "--json", str(out / "b.json")],
        "data-check": ["data", "check", data, "--json", str(out / "r.json")],
        "data-show": ["data", "show", data, "--out", str(out / "s.jpg")],
    }


WORK_LOGS = ("images usable", "fused the model", "synthetic data set", "calibrat", "ms inference", "tensors from")


@pytest.mark.parametrize("case", ["predict", "export", "val", "val-json", "val-predictions", "quantize", "demo",
                                  "import-weights", "bench", "data-check", "data-show"])
def test_output_under_a_regular_file_is_one_line(case, trained, synthetic_data, blocked, repyolo_log, capsys):
    image = str(next((Path(synthetic_data).parent / "images" / "val").glob("*.jpg")))
    cmd = _commands(trained.source, str(synthetic_data), image, blocked / "out")[case]
    assert main(cmd) == 2
    errors = repyolo_log.text().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ") and str(blocked) in errors[0], errors
    assert "is a file" in errors[0]
    said = repyolo_log.text(logging.INFO)
    assert not any(w in said for w in WORK_LOGS), f"work started before the output check:\n{said}"
    assert not capsys.readouterr().out  # no result printed either


@pytest.mark.parametrize("case", ["predict", "export", "val", "demo"])
def test_read_only_output_folder_is_one_line(case, trained, synthetic_data, tmp_path, repyolo_log, monkeypatch):
    """A read-only mount (root ignores chmod, so os.access is made to say what a mount says)."""
    mount = tmp_path / "mount"
    mount.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == mount else real(p, mode, **kw))
    image = str(next((Path(synthetic_data).parent / "images" / "val").glob("*.jpg")))
    cmd = _commands(trained.source, str(synthetic_data), image, mount)[case]
    assert main(cmd) == 2
    errors = repyolo_log.text().splitlines()
    assert len(errors) == 1 and str(mount) in errors[0] and "not writable" in errors[0], errors
    assert not any(mount.iterdir())


def test_file_where_the_run_folder_should_be(trained, synthetic_data, tmp_path, repyolo_log):
    """``--exist-ok`` into PROJECT/NAME when NAME is a file: one line, nothing written."""
    (tmp_path / "exp").write_text("not a folder")
    assert main(["val", "--weights", trained.source, "--data", str(synthetic_data), "--project", str(tmp_path),
                 "--exist-ok"]) == 2
    assert "is a file" in repyolo_log.text() and sorted(p.name for p in tmp_path.iterdir()) == ["exp"]
