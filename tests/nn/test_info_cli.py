"""`repyolo info` prints the contract JSON."""
from __future__ import annotations

import json

from repyolo.cli import main


def test_info_json(capsys):
    assert main(["info", "--model", "yolov6n", "--img", "640", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert abs(info["params"]["deploy"] / 1e6 - 4.7) / 4.7 < 0.02
    assert abs(info["gflops"]["deploy"] - 11.4) / 11.4 < 0.02
    assert info["params"]["train"] > info["params"]["deploy"]


def test_info_table(capsys):
    assert main(["info", "--model", "yolov6s-v2", "--img", "320"]) == 0
    out = capsys.readouterr().out
    assert "backbone" in out and "GFLOPs" in out
