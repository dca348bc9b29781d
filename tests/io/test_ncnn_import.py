"""Released YOLOv6-Lite NCNN pairs -> repyolo checkpoints: the config picked by shapes, outputs equal to
the ``ncnn`` runtime's, fp16 and fp32 storage, one-line errors naming the file and the first bad layer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_ncnn_format import SIZES, lite_pair, one_line_error

from repyolo.data.coco import COCO_NAMES
from repyolo.errors import CheckpointError
from repyolo.io.checkpoint import load_model, model_from_checkpoint, read_checkpoint, save_checkpoint
from repyolo.io.ncnn import NcnnFormatError, NcnnGraph, read_ncnn, write_ncnn
from repyolo.io.ncnn_import import convert_ncnn, looks_ncnn
from repyolo.nn.model import BN_EPS


@pytest.fixture(scope="module")
def lite_models():
    """``{size: (checkpoint dict, model)}``, converted once per module (about 1 s each)."""
    cache = {}

    def get(size):
        if size not in cache:
            ckpt = convert_ncnn(lite_pair(size)[0])
            cache[size] = ckpt, model_from_checkpoint(ckpt)
        return cache[size]

    return get


def raw_levels(model, x: np.ndarray) -> list[np.ndarray]:
    """The model's per-level ``(nc + 4, H, W)`` outputs (sigmoid scores, distances in grid units)."""
    with torch.no_grad():
        return [o[0].numpy() for o in model.detect.raw_levels(model.neck(model.backbone(torch.from_numpy(x))))]


@pytest.mark.parametrize("size", SIZES)
def test_import_equals_the_ncnn_runtime(size, lite_models):
    """Scores and box distances (grid units) of the imported model equal NCNN's within 1e-3 on the same
    inputs (measured over S/M/L: scores <= 4e-6, distances <= 6e-4 grid units: fp32 summation order)."""
    pytest.importorskip("ncnn", reason="the ncnn runtime is an optional extra: pip install repyolo[ncnn]")
    from repyolo.io.ncnn import NcnnNet

    ckpt, model = lite_models(size)
    assert ckpt["model_cfg"]["name"] == f"yolov6lite-{size}" and ckpt["names"] == COCO_NAMES
    assert not ckpt["fused"] and not model.is_fused
    net = NcnnNet(lite_pair(size)[0], num_threads=1)
    rng = np.random.default_rng(0)
    photo_like = rng.uniform(0, 1, (1, 3, 320, 320)).astype(np.float32)
    other_size = rng.uniform(0, 1, (1, 3, 256, 384)).astype(np.float32)  # graphs and model are size-agnostic
    for x in (photo_like, other_size):
        ours = raw_levels(model, x)
        theirs = net(x, ["out0", "out1", "out2", "out3"])
        for i, o in enumerate(ours):
            t = theirs[f"out{i}"]
            assert o.shape == t.shape == (84, x.shape[2] // 2 ** (i + 3), x.shape[3] // 2 ** (i + 3))
            assert np.abs(o[:80] - t[:80]).max() < 1e-3, f"level {i} scores"
            assert np.abs(o[80:] - t[80:]).max() < 1e-3, f"level {i} distances"


def test_training_form_with_identity_batchnorms(lite_models):
    ckpt, model = lite_models("s")
    state = ckpt["model"]
    assert state["backbone.conv_0.bn.weight"].eq(1).all() and state["backbone.conv_0.bn.running_mean"].eq(0).all()
    assert torch.all(state["backbone.conv_0.bn.running_var"] + BN_EPS == 1.0)
    bn = model.backbone.conv_0.bn
    assert bn.eps == BN_EPS and bn.momentum == 0.03  # fine-tunes like any repyolo model
    assert all(v.dtype == torch.float32 for k, v in state.items() if not k.endswith("num_batches_tracked"))
    fused = model_from_checkpoint(ckpt).fuse()  # folding the identity BNs back gives the same outputs
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 128, 128)).astype(np.float32)
    for a, b in zip(raw_levels(model, x), raw_levels(fused, x)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # fp32 sums in another order


def test_checkpoint_file_and_load_model(lite_models, tmp_path):
    ckpt, model = lite_models("s")
    path = save_checkpoint(ckpt, tmp_path / "lite_s.pt")
    loaded = load_model(path)
    assert loaded.cfg["name"] == "yolov6lite-s" and loaded.names == COCO_NAMES and not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert looks_ncnn(lite_pair("s")[0]) and not looks_ncnn(path)
    direct = load_model(lite_pair("s")[0])  # a .param converts on the fly, like an official .pt
    assert direct.cfg["name"] == "yolov6lite-s"


def test_fp32_storage_imports_the_same_weights(lite_models, tmp_path):
    param, bin_ = lite_pair("s")
    m = read_ncnn(param, bin_)
    p32, b32 = write_ncnn(m.graph, m.weights, tmp_path / "lite32.param", storage="fp32")
    assert b32.stat().st_size > 1.9 * bin_.stat().st_size
    ckpt32 = convert_ncnn(p32)
    assert ckpt32["args"]["import"]["dtypes"] == ["fp32"]
    ckpt16, _ = lite_models("s")
    assert ckpt16["args"]["import"]["dtypes"] == ["fp16"]
    for k, v in ckpt16["model"].items():
        assert torch.equal(v, ckpt32["model"][k]), k  # fp16 -> fp32 is exact


def test_cli_import_weights(tmp_path, capsys):
    from repyolo.cli import main

    param, _ = lite_pair("s")
    out = tmp_path / "lite_s.pt"
    assert main(["import-weights", str(param), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "yolov6lite-s (inferred)" in text and "80 (COCO names)" in text and "fp16" in text
    assert read_checkpoint(out)["model_cfg"]["name"] == "yolov6lite-s"


# ------------------------------------------------------------------------------------------
# bad or mismatched files: one line naming the file and the first mismatching layer


def test_truncated_bin(tmp_path):
    param, bin_ = lite_pair("s")
    (tmp_path / "t.param").write_bytes(param.read_bytes())
    (tmp_path / "t.bin").write_bytes(bin_.read_bytes()[:600_000])
    with pytest.raises(CheckpointError) as excinfo:
        convert_ncnn(tmp_path / "t.param")
    msg = one_line_error(excinfo)
    assert msg.startswith(f"{tmp_path / 't.bin'}: file too short while reading layer ")


def test_param_of_another_model(tmp_path):
    """The Lite-M graph with the Lite-S weights: the first layer whose sizes differ is named."""
    param_m, _ = lite_pair("m")
    _, bin_s = lite_pair("s")
    with pytest.raises(NcnnFormatError) as excinfo:
        convert_ncnn(param_m, bin_s)
    msg = one_line_error(excinfo)
    assert str(bin_s) in msg and str(param_m) in msg
    assert "first mismatching layer 'conv_35' (Convolution, param line 28)" in msg


def test_garbled_param_line(tmp_path):
    param, bin_ = lite_pair("s")
    lines = param.read_text().splitlines()
    lines[9] = lines[9].replace("=", " ", 1)  # a layer line loses a '='
    (tmp_path / "g.param").write_text("\n".join(lines) + "\n")
    (tmp_path / "g.bin").write_bytes(bin_.read_bytes())
    with pytest.raises(NcnnFormatError) as excinfo:
        convert_ncnn(tmp_path / "g.param")
    assert one_line_error(excinfo).startswith(f"{tmp_path / 'g.param'}:10: layer ")


def test_graph_that_is_not_lite(tmp_path):
    g = NcnnGraph()
    g.add("Input", "input", [], ["in0"])
    g.add("Convolution", "conv", ["in0"], ["out0"], {0: 4, 1: 3, 5: 1, 6: 108})
    rng = np.random.default_rng(0)
    param, _ = write_ncnn(g, {"conv": {"weight": rng.normal(size=(4, 3, 3, 3)), "bias": np.zeros(4)}},
                          tmp_path / "other.param")
    with pytest.raises(NcnnFormatError) as excinfo:
        convert_ncnn(param)
    assert one_line_error(excinfo).startswith(f"{param}: not a YOLOv6-Lite graph: backbone.conv_0.block.conv act")


def test_missing_bin(tmp_path):
    param, _ = lite_pair("s")
    (tmp_path / "alone.param").write_bytes(param.read_bytes())
    with pytest.raises(CheckpointError, match=r"alone.bin: the weights file of alone.param is missing"):
        convert_ncnn(tmp_path / "alone.param")
