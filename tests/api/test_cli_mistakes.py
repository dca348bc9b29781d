"""One deliberate mistake per command, as a new user makes them: one ``error:`` line, exit 2,
nothing written and no work done first."""
from __future__ import annotations

import logging

import pytest

from repyolo.cli import main


@pytest.fixture
def image(synthetic_data) -> str:
    return str(next((synthetic_data.parent / "images" / "val").glob("*.jpg")))


def test_mistakes(trained, synthetic_data, image, tmp_path, repyolo_log, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = [
        (["predict", "--weights", trained.source, "--source", image, "--conf", "2"], "--conf 2"),
        (["val", "--weights", trained.source, "--iou", "0"], "--iou 0"),
        (["export", "--weights", trained.source, "--img", "65"], "multiples of the model stride"),
        (["convert", "voc2yolo", str(tmp_path / "nosuch"), str(tmp_path / "out")], "VOC folder not found"),
        (["import-weights", trained.source, "-o", str(tmp_path / "w.pt")], "already a repyolo checkpoint"),
        (["quantize", "ptq", "--weights", trained.source, "--data", "nosuch.yaml"], "data YAML not found"),
        (["val", "--weights", str(tmp_path / "m.onnx"), "--data", str(synthetic_data)], "not found"),
        (["train", "--resume"], "runs/train/exp/weights/last.pt: weights file not found"),
    ]
    for cmd, phrase in cases:
        start = len(repyolo_log.records)
        assert main(cmd) == 2, cmd
        said = repyolo_log.records[start:]
        errors = [r.getMessage() for r in said if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and phrase in errors[0], (cmd, errors)
        assert not any("fused the model" in r.getMessage() or "ONNX:" in r.getMessage() for r in said), cmd
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a refused command wrote something"
