"""``export --format ncnn`` (our own writer) for every family, the NCNN backend, and the released Lite files.

The NCNN folder holds the graph up to the raw head outputs; the backend decodes them. Outputs must
equal the fused PyTorch model's like the ONNX / OpenVINO exports (``assert_parity``), at any input
size (the graph holds none) and through val / predict / bench.
"""
from __future__ import annotations

import copy
import json
import sys

import pytest
import torch
from export_helpers import perturb
from test_export_parity import assert_parity

from repyolo.cli import main
from repyolo.errors import CheckpointError, RepyoloError
from repyolo.export import export_model
from repyolo.nn.model import build_model, load_model_config
from repyolo.runtime import load_backend

pytest.importorskip("ncnn", reason="the ncnn runtime is an optional extra: pip install repyolo[ncnn]")

# one small member of every family: v3 (BiC, ConvTranspose), v3 DFL (CSP), P6, v2, base, MBLA, QARepVGG, Lite
FAMILIES = {"yolov6n": 0.25, "yolov6m": 0.25, "yolov6n6": 0.25, "yolov6n-v2": 0.25, "yolov6n-base": 0.25,
            "yolov6s-mbla": 0.25, "yolov6n-qa": 0.25, "yolov6lite-s": None}


def small_model(name: str, width: float | None, nc: int = 5) -> torch.nn.Module:
    cfg = load_model_config(name)
    if width is not None:
        cfg.update(width_multiple=width, depth_multiple=min(cfg.get("depth_multiple", 1.0), 0.33))
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=nc)
    model = perturb(model, seed=1, size=3 * model.max_stride)
    model.names = [f"c{i}" for i in range(nc)]
    return model


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_matches_pytorch(name, tmp_path):
    model = small_model(name, FAMILIES[name])
    out = export_model(model, "ncnn", img_size=2 * model.max_stride, output=tmp_path / "m_ncnn_model")
    files = sorted(p.name for p in out.iterdir())
    assert files == ["metadata.json", f"{model.cfg['name']}.bin", f"{model.cfg['name']}.param"]
    backend = load_backend(out, threads=1)
    assert backend.kind == "ncnn" and backend.names == model.names and backend.stride == model.max_stride
    assert backend.img_size is None and backend.batch is None  # any size, one image per ncnn run
    assert backend.use_dfl == model.detect.use_dfl
    fused = copy.deepcopy(model).fuse()
    s = model.max_stride
    x = torch.rand(2, 3, 3 * s, 4 * s, generator=torch.Generator().manual_seed(2))  # not the export size
    with torch.no_grad():
        ref = fused(x)
    got = backend(x)
    assert_parity(got, ref)
    # (detections after NMS: the perturbed models tie scores along image borders, so NMS may keep another of
    # two equal boxes; the data set check in test_predict_and_val_take_the_folder compares detections)


def test_metadata_and_fp16_storage(tmp_path):
    model = small_model("yolov6m", 0.25)  # DFL head: bins decoded outside the graph
    out = export_model(model, "ncnn", img_size=96, half=True, output=tmp_path / "h_ncnn_model")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["format"] == "repyolo" and meta["use_dfl"] is True and meta["reg_max"] == 16
    assert meta["ncnn"] == {"input": "in0", "outputs": ["out0", "out1", "out2"], "storage": "fp16"}
    assert meta["img_size"] == [96, 96] and meta["letterbox"] == {"pad_value": 114, "center": True}
    assert meta["strides"] == [8, 16, 32] and meta["dynamic"] is True
    fp32 = export_model(model, "ncnn", img_size=96, output=tmp_path / "f_ncnn_model")
    bin16, bin32 = (next(d.glob("*.bin")).stat().st_size for d in (out, fp32))
    assert bin16 < 0.6 * bin32
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = copy.deepcopy(model).fuse()(x)
    assert_parity(load_backend(out / f"{model.cfg['name']}.param")(x), ref, rel=1e-2)  # fp16 weights


def test_released_lite_param_runs_as_a_backend(lite_weights, lite_s_checkpoint):
    """No metadata.json: the released Lite graph is recognized; outputs equal the imported model's."""
    from repyolo.data.coco import COCO_NAMES
    from repyolo.io.checkpoint import load_model

    backend = load_backend(lite_weights / "yolov6-lite-s.param", threads=1)
    assert backend.names == COCO_NAMES and backend.strides == [8, 16, 32, 64] and not backend.use_dfl
    x = torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = load_model(lite_s_checkpoint)(x)
    got = backend(x)
    assert (got[..., 4:] - ref[..., 4:]).abs().max() < 1e-3  # scores
    strides = torch.tensor([8.0] * 1600 + [16.0] * 400 + [32.0] * 100 + [64.0] * 25)[:, None]
    assert ((got[0, :, :4] - ref[0, :, :4]) / strides).abs().max() < 1e-3  # boxes in grid units


def test_cli_export_predict_val_bench(yolov6n_ckpt, tmp_path, capsys):
    out = tmp_path / "n_ncnn_model"
    assert main(["export", "--weights", yolov6n_ckpt, "--format", "ncnn", "--img", "64", "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    result = tmp_path / "bench.json"
    assert main(["bench", "--weights", str(out), "--img", "64", "--warmup", "1", "--runs", "2",
                 "--json", str(result)]) == 0
    bench = json.loads(result.read_text())
    assert list(bench["results"]) == ["ncnn"] and bench["gflops"] is None
    assert main(["bench", "--weights", yolov6n_ckpt, "--img", "64", "--backends", "torch,ncnn", "--warmup", "1",
                 "--runs", "2", "--threads", "1", "--json", str(result)]) == 0
    assert list(json.loads(result.read_text())["results"]) == ["torch", "ncnn"]
    assert "| ncnn |" in capsys.readouterr().out


def test_predict_and_val_take_the_folder(tmp_path):
    from repyolo.data.synthetic import generate_synthetic
    from repyolo.engine.evaluator import Evaluator
    from repyolo.engine.predictor import Predictor

    data = generate_synthetic(tmp_path / "syn", n_train=2, n_val=4, img_size=64, seed=0)
    names = json.loads(json.dumps(__import__("yaml").safe_load(data.read_text())["names"]))
    model = small_model("yolov6n", 0.25, nc=len(names))
    out = export_model(model, "ncnn", img_size=64, output=tmp_path / "s_ncnn_model")
    common = dict(img_size=64, batch_size=2, workers=0, plots=False, conf_thres=0.001)
    ours, ref = (Evaluator(data=data, **common)(w) for w in (out, copy.deepcopy(model)))
    assert ours["map"] == pytest.approx(ref["map"], abs=1e-3) and ours["n_detections"] == ref["n_detections"]
    image = next((tmp_path / "syn").rglob("*.jpg"), None) or next((tmp_path / "syn").rglob("*.png"))
    results = list(Predictor(out, img_size=64, conf_thres=0.001).stream([image]))
    assert len(results) == 1


# ------------------------------------------------------------------------------------------
# errors


def test_unsupported_and_bad_inputs(tmp_path, yolov6n_model):
    with pytest.raises(RepyoloError, match="--nms is available for onnx and openvino"):
        export_model(yolov6n_model, "ncnn", img_size=64, nms=True, output=tmp_path / "x")
    from repyolo.quant import export_int8

    with pytest.raises(RepyoloError, match="--int8 is available for onnx and openvino exports, not ncnn"):
        export_int8(yolov6n_model, "ncnn", data="unused.yaml", img_size=64)
    out = export_model(yolov6n_model, "ncnn", img_size=64, output=tmp_path / "a_ncnn_model")
    (out / "metadata.json").unlink()  # a graph we wrote, without its description, is not a Lite graph
    with pytest.raises(CheckpointError, match=r"no metadata.json beside it and not a released YOLOv6-Lite graph"):
        load_backend(out)
    (out / "yolov6n.bin").unlink()
    with pytest.raises(CheckpointError, match=r"yolov6n.param: the weights file yolov6n.bin is missing"):
        load_backend(out / "yolov6n.param")
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.param").write_text("7767517\n")
    (two / "b.param").write_text("7767517\n")
    with pytest.raises(CheckpointError, match="expected one NCNN .param in the folder, found 2"):
        load_backend(two)


def test_missing_ncnn_package_is_one_line(yolov6n_model, tmp_path, monkeypatch):
    out = export_model(yolov6n_model, "ncnn", img_size=64, output=tmp_path / "m_ncnn_model")
    monkeypatch.setitem(sys.modules, "ncnn", None)  # import ncnn -> ImportError
    with pytest.raises(RepyoloError, match=r"^running NCNN models needs the 'ncnn' package: pip install repyolo\["):
        load_backend(out)
