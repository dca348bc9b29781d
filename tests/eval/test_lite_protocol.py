"""``repyolo val`` on the imported YOLOv6-Lite-S reproduces the mAP its release reports
(../shared/weights/yolov6-lite/SOURCE.md: 0.299 / 0.428 on coco128's real val2017 split) with the
release's protocol, which ``val`` spells ``--square --single-label --conf 0.001 --full-decode
--uniform-gain``."""
from __future__ import annotations

import json

import pytest

from repyolo.cli import main

SOURCE_MAP = {"s": (0.299, 0.428)}  # mAP@0.5:0.95, mAP@0.5 of SOURCE.md
RELEASE_PROTOCOL = ["--square", "--single-label", "--conf", "0.001", "--full-decode", "--uniform-gain"]


@pytest.mark.slow
@pytest.mark.real_data
def test_val_reproduces_the_release_map(lite_s_checkpoint, coco128_val_yaml, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["val", "--weights", str(lite_s_checkpoint), "--data", str(coco128_val_yaml), "--img", "320",
                 "--workers", "0", "--no-plots", "--json", str(out), *RELEASE_PROTOCOL]) == 0
    result = json.loads(out.read_text())
    want_map, want_map50 = SOURCE_MAP["s"]
    assert abs(result["map"] - want_map) <= 0.003 and abs(result["map50"] - want_map50) <= 0.003, result["map"]
    assert result["n_images"] == 128 and result["n_instances"] == 898
    assert "mAP@0.5:0.95 0.29" in capsys.readouterr().out
