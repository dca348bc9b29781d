"""QAT: the fake quantizers reproduce onnxruntime's quantization arithmetic, modules map to ONNX
nodes, and a one-epoch run on a tiny set exports a QDQ model carrying the learned scales."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from quant_helpers import IMG, run_onnx, tiny_model

from repyolo.quant import graph as G
from repyolo.quant.qat import (
    ActFakeQuant,
    QuantConv,
    conv_node_map,
    fake_quant_weight,
    module_of_node,
    prepare_qat,
    quant_points,
    quantize_qat,
    scale_zero_point,
    strip_qat,
)


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # spin-waiting intra-op threads crawl on a shared 2-core machine
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("lo,hi", [(0.0, 6.0), (-1.5, 3.2), (0.2, 0.9), (-4.0, -1.0)])
def test_scale_zero_point_is_onnxruntimes(lo, hi):
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    zp_ref, scale_ref = compute_scale_zp(np.float32(lo), np.float32(hi), np.uint8(0), np.uint8(255))
    scale, zp = scale_zero_point(torch.tensor(lo), torch.tensor(hi), 0, 255)
    assert float(scale) == pytest.approx(float(scale_ref), rel=1e-6) and int(zp) == int(zp_ref)


def test_weight_fake_quant_equals_the_exported_int8_weights(ptq_ctx):
    model = ptq_ctx.build()
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    fp32 = {t.name: numpy_helper.to_array(t) for t in ptq_ctx.fp.proto.graph.initializer}
    checked = 0
    for node in ptq_ctx.fp.proto.graph.node:
        if node.op_type not in G.CONV_TYPES:
            continue
        w = fp32[node.input[1]]
        q, scale = inits[node.input[1] + "_quantized"], inits[node.input[1] + "_scale"]
        axis = 1 if node.op_type == "ConvTranspose" else 0
        shape = [1] * w.ndim
        shape[axis] = -1
        ours = fake_quant_weight(torch.from_numpy(np.array(w)), axis=axis).numpy()
        theirs = q.astype(np.float32) * scale.reshape(shape)
        steps = np.abs(ours - theirs) / scale.reshape(shape)
        # identical up to the odd exact tie (x / scale = k + 0.5) rounded the other way
        assert steps.max() < 1.0 + 1e-3 and (steps > 1e-3).mean() < 1e-3, node.name
        checked += 1
    assert checked == len(ptq_ctx.fp.convs)


def test_act_fake_quant_observes_then_freezes():
    q = ActFakeQuant(0.0, 1.0, momentum=0.5).train()
    x = torch.full((2, 3), 3.0)
    q(x)
    assert float(q.hi) == pytest.approx(2.0)  # 0.5 * 1 + 0.5 * 3
    q.observe = False
    q(torch.full((2, 3), 100.0))
    assert float(q.hi) == pytest.approx(2.0)
    x = torch.linspace(-0.5, 2.5, 101)
    y = q.eval()(x).numpy()
    scale = 2.0 / 255
    steps = y / scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)  # on the 8-bit grid
    inside = (x >= 0) & (x <= 2)
    assert np.abs(y[inside.numpy()] - x[inside].numpy()).max() <= scale / 2 + 1e-6
    assert y.min() == 0.0 and y.max() == pytest.approx(2.0)  # clipped to the range


def test_modules_map_to_onnx_convs(ptq_ctx):
    model = tiny_model().fuse()
    convs = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    mapping = conv_node_map(ptq_ctx.fp.proto, convs)
    assert sorted(node for node, _ in mapping.values()) == sorted(ptq_ctx.fp.convs)
    assert module_of_node("/backbone/ERBlock_2/ERBlock_2.1/block/block.0/rbr_reparam/Conv") == \
        "backbone.ERBlock_2.1.block.0.rbr_reparam"
    assert module_of_node("/detect/cls_preds.2/Conv") == "detect.cls_preds.2"
    # wrapping shares one quantizer per ONNX tensor and is reversible
    qdq = ptq_ctx.build()
    qmodel, quantizers = prepare_qat(model, ptq_ctx.fp.proto, qdq, ptq_ctx.ranges)
    wrapped = [m for m in qmodel.modules() if isinstance(m, QuantConv)]
    assert len(wrapped) == len(ptq_ctx.fp.convs) and len(quantizers) < 2 * len(wrapped)
    # every activation tensor the INT8 model quantizes around a conv has a QAT quantizer
    points = quant_points(ptq_ctx.fp.proto, qdq)
    assert all(p["input"] and p["output"] for p in points.values())
    assert any(p["relu_out"] for p in points.values()) and not all(p["relu_out"] for p in points.values())
    q_tensors = {n.input[0] for n in qdq.graph.node if n.op_type == "QuantizeLinear"}
    assert set(quantizers) <= q_tensors and len(quantizers) >= 0.8 * len(q_tensors)
    x = torch.rand(1, 3, IMG, IMG)
    with torch.no_grad():
        fq = qmodel.eval()(x)
        plain = strip_qat(qmodel)(x)  # in place: qmodel is plain again
    assert not any(isinstance(m, QuantConv) for m in qmodel.modules())
    assert torch.allclose(fq[..., 4:], plain[..., 4:], atol=0.2) and not torch.equal(fq, plain)


def test_qat_one_epoch_exports_qdq_with_learned_scales(tiny_weights, syn_data, tmp_path, one_thread):
    res = quantize_qat(tiny_weights, syn_data, epochs=1, img_size=IMG, batch=4, calib=4, workers=0,
                       output=tmp_path / "qat_int8.onnx", save_pt=True)
    assert res.path.is_file() and len(res.history) == 1 and np.isfinite(res.history[0]["loss"])
    assert res.checkpoint is not None and res.checkpoint.is_file()
    model = onnx.load(str(res.path))
    counts = G.qdq_counts(model)
    assert counts["QuantizeLinear"] > 20 and counts["DequantizeLinear"] > 40
    assert G.float_convs(model) == []
    meta = G.read_metadata(model)
    assert '"method": "qat"' in meta["quantization"] and "names" in meta
    # the activation scales of the exported model are the QAT ones
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    found = 0
    for tensor, (lo, hi) in res.ranges.items():
        if tensor + "_scale" in inits:
            scale, zp = scale_zero_point(torch.tensor(lo), torch.tensor(hi), 0, 255)
            assert float(inits[tensor + "_scale"]) == pytest.approx(float(scale), rel=1e-5), tensor
            assert int(inits[tensor + "_zero_point"]) == int(zp)
            found += 1
    assert found >= 0.8 * len(res.ranges)
    out = run_onnx(res.path, np.random.default_rng(0).random((1, 3, IMG, IMG), dtype=np.float32))
    assert out.shape[0] == 1 and out.shape[-1] == 4 + 5 and np.isfinite(out).all()
