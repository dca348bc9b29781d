"""What a user is told about a weights file that is not a usable checkpoint (issue #15): the same
one line through ``repyolo val / predict / export --weights X`` and ``repyolo.load_model``, saying
what the file is, and never torch's advice to turn the safe loader off."""
from __future__ import annotations

import logging
import os
import pickle
import sys
import types

import pytest
import torch

from repyolo import load_model
from repyolo.cli import main
from repyolo.errors import CheckpointError


class _Evil:
    def __reduce__(self):
        return os.system, ("echo pwned",)


def _good_checkpoint(path, model_yaml):
    from repyolo.io.checkpoint import save_checkpoint, training_checkpoint
    from repyolo.nn.model import build_model

    return save_checkpoint(training_checkpoint(build_model(str(model_yaml), num_classes=5)), path)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, tiny_model_yaml) -> dict:
    """``{case: (path, expected phrase)}``."""
    d = tmp_path_factory.mktemp("bad")
    good = _good_checkpoint(d / "good.pt", tiny_model_yaml).read_bytes()
    files = {
        "jpeg": (b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(200), "not a checkpoint: a JPEG image"),
        "onnx": (b"\x08\x07\x12\x07pytorch\x1a\x062.13.0:" + os.urandom(300), "not a checkpoint: an ONNX model"),
        "truncated": (good[: len(good) // 2], "corrupt or truncated checkpoint"),
        "truncated-tiny": (good[:100], "corrupt or truncated checkpoint"),
        "random": (os.urandom(4096), "not a checkpoint: binary data"),
        "evil-pickle": (pickle.dumps({"model": _Evil()}, protocol=2), "refusing to load: a plain pickle"),
        "empty": (b"", "file is empty"),
        "text": (b"weights go here\n", "not a checkpoint: a text file"),
    }
    damaged = bytearray(good)
    mid = len(damaged) // 2
    damaged[mid: mid + 64] = bytes(64)
    files["damaged"] = (bytes(damaged), "fails its checksum")
    out = {}
    for case, (data, phrase) in files.items():
        (d / f"{case}.pt").write_bytes(data)
        out[case] = (d / f"{case}.pt", phrase)
    torch.save({"model": _Evil()}, d / "evil-zip.pt")
    out["evil-zip"] = (d / "evil-zip.pt", "refusing to load: the file references")
    torch.save({"state": torch.zeros(2)}, d / "foreign.pt")
    out["foreign"] = (d / "foreign.pt", "not a repyolo checkpoint")
    return out


CASES = ["jpeg", "onnx", "truncated", "truncated-tiny", "random", "evil-pickle", "empty", "text", "damaged",
         "evil-zip", "foreign"]


@pytest.mark.parametrize("case", CASES)
def test_load_model_says_what_the_file_is(bad_files, case):
    path, phrase = bad_files[case]
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and phrase in msg and "\n" not in msg
    assert "weights_only" not in msg


@pytest.mark.parametrize("case", CASES)
def test_commands_say_what_the_file_is(bad_files, case, synthetic_data, tmp_path, repyolo_log):
    path, phrase = bad_files[case]
    image = next((synthetic_data.parent / "images" / "val").glob("*.jpg"))
    commands = [["val", "--weights", str(path), "--data", str(synthetic_data), "--save-dir", str(tmp_path / "v")],
                ["predict", "--weights", str(path), "--source", str(image), "--project", str(tmp_path)],
                ["export", "--weights", str(path), "--output", str(tmp_path / "m.onnx")]]
    for cmd in commands:
        start = len(repyolo_log.records)
        assert main(cmd) == 2, cmd[0]
        said = [r.getMessage() for r in repyolo_log.records[start:]]
        errors = [m for m in said if m.startswith("error:")]
        assert len(errors) == 1 and phrase in errors[0] and "\n" not in errors[0], (cmd[0], said)
        assert not any("weights_only" in m for m in said), (cmd[0], said)
    assert not any(tmp_path.iterdir()), "a refused weights file left outputs behind"


def test_refused_official_file_is_never_announced_as_official(tmp_path, repyolo_log, monkeypatch):
    """A file that looks official (YOLOv6 module classes) but also references os.system is refused
    without first logging that an official checkpoint is being converted."""
    names = ["yolov6", "yolov6.models", "yolov6.models.yolo"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    model_cls = type("Model", (), {"__module__": "yolov6.models.yolo"})
    sys.modules["yolov6.models.yolo"].Model = model_cls
    torch.save({"model": model_cls(), "extra": _Evil()}, tmp_path / "yolov6n.pt")
    for name in names:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_model(tmp_path / "yolov6n.pt")
    assert "official" not in repyolo_log.text(logging.DEBUG).lower()
