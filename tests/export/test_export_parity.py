"""Exported models (ONNX Runtime, OpenVINO, TorchScript) give the PyTorch fused model's raw outputs."""
from __future__ import annotations

import copy

import pytest
import torch
from export_helpers import assert_parity

from repyolo.export import export_model
from repyolo.runtime import load_backend
from repyolo.runtime.onnx import OnnxBackend
from repyolo.runtime.openvino import OpenVinoBackend
from repyolo.runtime.torchscript import TorchScriptBackend


def _inputs(batch: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("which", ["yolov6n_model", "csp_model"])
def test_onnx_and_openvino_match_fused_torch(which, request, tmp_path):
    model = request.getfixturevalue(which)
    fused = copy.deepcopy(model).fuse()
    x = _inputs(3, 192, 256)
    with torch.no_grad():
        ref = fused(x)
        assert_parity(model(x), ref)  # fusing itself is exact (sanity)
    assert ref[..., 4:].std() > 1e-3, "perturbed head should give non-constant scores"

    onnx_path = export_model(model, "onnx", img_size=(192, 256), batch=2, output=tmp_path / "m.onnx")
    ort = OnnxBackend(onnx_path, threads=2)
    assert (ort.batch, ort.img_size, ort.stride, ort.names) == (2, (192, 256), 32, list(model.names))
    assert_parity(ort(x), ref)  # 3 images through a batch-2 model: split + padded chunk

    ov_dir = export_model(model, "openvino", img_size=(192, 256), batch=2, output=tmp_path / "m_openvino_model")
    assert (ov_dir / "m.xml").is_file() and (ov_dir / "m.bin").is_file() and (ov_dir / "metadata.yaml").is_file()
    ov = OpenVinoBackend(ov_dir, threads=2)
    assert (ov.batch, ov.img_size, ov.names) == (2, (192, 256), list(model.names))
    assert_parity(ov(x), ref)


def test_dynamic_exports_take_any_batch_and_size(yolov6n_model, tmp_path):
    fused = copy.deepcopy(yolov6n_model).fuse()
    onnx_path = export_model(yolov6n_model, "onnx", img_size=160, dynamic=True, output=tmp_path / "d.onnx")
    ov_dir = export_model(yolov6n_model, "openvino", img_size=160, dynamic=True, output=tmp_path / "d_openvino_model")
    backends = [load_backend(onnx_path, threads=2), load_backend(ov_dir, threads=2)]
    for b in backends:
        assert b.batch is None and b.img_size is None and b.metadata["dynamic"] is True
    for batch, h, w in ((1, 160, 160), (3, 128, 224)):
        x = _inputs(batch, h, w, seed=h)
        with torch.no_grad():
            ref = fused(x)
        for b in backends:
            assert_parity(b(x), ref)


def test_torchscript_matches_and_carries_metadata(yolov6n_model, tmp_path):
    fused = copy.deepcopy(yolov6n_model).fuse()
    path = export_model(yolov6n_model, "torchscript", img_size=160, output=tmp_path / "m.torchscript")
    b = load_backend(path)
    assert isinstance(b, TorchScriptBackend) and b.names == list(yolov6n_model.names) and b.stride == 32
    for batch, h, w in ((1, 160, 160), (2, 96, 128)):  # a trace is shape-generic
        x = _inputs(batch, h, w)
        with torch.no_grad():
            assert_parity(b(x), fused(x))


def test_half_onnx_is_fp16_and_close(yolov6n_model, tmp_path):
    path = export_model(yolov6n_model, "onnx", img_size=128, half=True, output=tmp_path / "h.onnx")
    b = load_backend(path)
    assert b.metadata["half"] is True and b.metadata["input"]["dtype"] == "float16"
    x = _inputs(1, 128, 128)
    with torch.no_grad():
        ref = copy.deepcopy(yolov6n_model).fuse()(x)
    assert_parity(b(x), ref, rel=1e-2)  # fp16 arithmetic


def test_static_model_rejects_other_input_size(yolov6n_model, tmp_path):
    from repyolo.errors import RepyoloError

    b = load_backend(export_model(yolov6n_model, "onnx", img_size=128, output=tmp_path / "s.onnx"))
    with pytest.raises(RepyoloError, match="exported for 128x128"):
        b(_inputs(1, 160, 160))
