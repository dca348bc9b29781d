"""Post-training quantization: the INT8 QDQ model runs in onnxruntime and OpenVINO, stays close to
FP32, keeps the export metadata, and honours the options (calibrators, per-tensor, exclusions)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from quant_helpers import IMG, NAMES, run_onnx

from repyolo.errors import RepyoloError
from repyolo.quant import graph as G
from repyolo.quant.calibrate import CalibrationReader
from repyolo.quant.ptq import quantize_ptq
from repyolo.quant.qdq import PTQContext, QuantSettings


def _inputs(ctx, n=4) -> np.ndarray:
    return ctx.images[:n].astype(np.float32) / 255.0


def _close_to_fp32(ref: np.ndarray, out: np.ndarray) -> None:
    """Loose INT8 tolerance: boxes within a few pixels on average, scores within a few hundredths."""
    assert out.shape == ref.shape
    box_err = np.abs(out[..., :4] - ref[..., :4])
    score_err = np.abs(out[..., 4:] - ref[..., 4:])
    assert box_err.mean() < 1.0 and np.percentile(box_err, 99) < 4.0, (box_err.mean(), box_err.max())
    assert score_err.mean() < 0.02 and score_err.max() < 0.2, (score_err.mean(), score_err.max())
    # and it is really quantized: not bit-identical
    assert not np.array_equal(out, ref)


def test_calibration_reader_batches_and_ranges():
    ims = np.arange(5 * 3 * 4 * 4, dtype=np.uint8).reshape(5, 3, 4, 4)
    r = CalibrationReader(ims, "images", batch=2)
    got = list(r)
    assert [g["images"].shape[0] for g in got] == [2, 2, 2]  # last batch padded to the static batch
    assert got[0]["images"].dtype == np.float32 and got[0]["images"].max() <= 1.0
    np.testing.assert_array_equal(got[2]["images"][1], got[2]["images"][0])  # padding repeats the last image
    r.set_range(1, 3)
    assert len(r) == 2 and r.get_next()["images"].shape[0] == 2 and r.get_next() is None
    r.rewind()
    assert r.get_next() is not None


def test_ptq_model_runs_in_onnxruntime_close_to_fp32(ptq_ctx, tmp_path):
    proto = ptq_ctx.build()
    path = ptq_ctx.save(proto, tmp_path / "m_int8.onnx")
    model = onnx.load(str(path))
    counts = G.qdq_counts(model)
    assert counts["QuantizeLinear"] > 20 and counts["DequantizeLinear"] > 40
    assert G.float_convs(model) == [] and len(G.quantized_convs(model)) == len(ptq_ctx.fp.convs)
    # the decoding tail stays FP32: the output is not produced by a DequantizeLinear
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert producers["outputs"] != "DequantizeLinear"
    x = _inputs(ptq_ctx)
    _close_to_fp32(run_onnx(ptq_ctx.fp.path, x), run_onnx(path, x))


def test_ptq_model_runs_in_openvino(ptq_ctx, tmp_path):
    ov = pytest.importorskip("openvino")
    path = ptq_ctx.save(ptq_ctx.build(), tmp_path / "m_int8.onnx")
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = _inputs(ptq_ctx)
    out = np.concatenate([np.asarray(compiled({0: x[i:i + 1]})[compiled.outputs[0]]) for i in range(len(x))])
    _close_to_fp32(run_onnx(ptq_ctx.fp.path, x), out)
    # the same INT8 model in both runtimes: scores agree closely (rounding details may differ)
    assert np.abs(out[..., 4:] - run_onnx(path, x)[..., 4:]).max() < 0.05
    # and as an IR folder with metadata, through repyolo's OpenVINO backend
    from repyolo.quant.qdq import to_openvino
    from repyolo.runtime import load_backend

    backend = load_backend(to_openvino(path, tmp_path / "m_int8_openvino_model"))
    assert backend.kind == "openvino" and backend.names == NAMES and backend.img_size == (IMG, IMG)
    np.testing.assert_allclose(backend(x).numpy(), out, atol=1e-4)


def test_quantize_ptq_keeps_metadata_for_the_onnx_backend(tiny_weights, syn_data, tmp_path):
    from repyolo.engine.evaluator import Evaluator
    from repyolo.runtime import load_backend

    res = quantize_ptq(tiny_weights, syn_data, calib=4, img_size=IMG, output=tmp_path / "q.onnx", keep_fp32=True)
    assert res.path.is_file() and res.fp32_path.is_file() and res.fp32_convs == []
    backend = load_backend(res.path)
    assert backend.names == NAMES and backend.img_size == (IMG, IMG) and backend.stride == 32
    quant = backend.metadata["quantization"]
    assert quant["method"] == "ptq" and quant["calibrator"] == "minmax" and quant["calib_images"] == 4
    assert quant["fp32_convs"] == []
    result = Evaluator(data=syn_data, img_size=IMG, batch_size=2, workers=0, plots=False)(res.path)
    assert 0.0 <= result["map"] <= 1.0 and result["n_images"] == 6


@pytest.mark.parametrize("calibrator", ["percentile", "entropy"])
def test_histogram_calibrators(ptq_ctx, calibrator):
    settings = QuantSettings(calibrator=calibrator, calib=4)
    ctx = PTQContext(ptq_ctx.fp, ptq_ctx.images[:4], settings)
    assert ctx.ranges.calibration_method.name.lower() == calibrator
    lo, hi = ctx.ranges.data["images"].range_value
    assert 0.0 <= float(lo) < float(hi) <= 1.0
    x = _inputs(ptq_ctx)
    _close_to_fp32(run_onnx(ptq_ctx.fp.path, x), run_onnx(ctx.build(), x))


def test_per_tensor_weights_have_one_scale(ptq_ctx):
    ctx = PTQContext(ptq_ctx.fp, ptq_ctx.images, QuantSettings(per_channel=False), ranges=ptq_ctx.ranges)
    per_tensor, per_channel = ctx.build(), ptq_ctx.build()

    def weight_scale_sizes(model):
        inits = {t.name: t for t in model.graph.initializer}
        sizes = []
        for n in model.graph.node:
            if n.op_type == "DequantizeLinear" and n.input[0].endswith("weight_quantized"):
                sizes.append(int(np.prod(onnx.numpy_helper.to_array(inits[n.input[1]]).shape)))
        return sizes

    assert weight_scale_sizes(per_tensor) and set(weight_scale_sizes(per_tensor)) == {1}
    assert max(weight_scale_sizes(per_channel)) > 1


def test_int8_activations_and_quantized_preds_option(ptq_ctx):
    ctx = PTQContext(ptq_ctx.fp, ptq_ctx.images, QuantSettings(quantize_preds=False), ranges=ptq_ctx.ranges)
    model = ctx.build()
    assert G.float_convs(model) == ptq_ctx.fp.preds and len(ptq_ctx.fp.preds) == 6
    s8 = PTQContext(ptq_ctx.fp, ptq_ctx.images, QuantSettings(activation_type="int8"), ranges=ptq_ctx.ranges).build()
    zps = [t for t in s8.graph.initializer if t.name == "images_zero_point"]
    assert zps and zps[0].data_type == onnx.TensorProto.INT8


def test_bad_options_are_one_line_errors(tiny_weights, syn_data, tmp_path):
    with pytest.raises(RepyoloError, match="no node named"):
        quantize_ptq(tiny_weights, syn_data, calib=2, img_size=IMG, exclude=["/not/a/node"],
                     output=tmp_path / "x.onnx")
    with pytest.raises(RepyoloError, match="calibrator"):
        QuantSettings(calibrator="kl")
    with pytest.raises(RepyoloError, match="multiples"):
        quantize_ptq(tiny_weights, syn_data, calib=2, img_size=70, output=tmp_path / "y.onnx")


def test_metadata_values_are_json(ptq_ctx, tmp_path):
    path = ptq_ctx.save(ptq_ctx.build(exclude=[ptq_ctx.fp.convs[0]]), tmp_path / "p.onnx", method="partial-ptq")
    props = G.read_metadata(onnx.load(str(path)))
    assert json.loads(props["names"]) == NAMES
    quant = json.loads(props["quantization"])
    assert quant["fp32_convs"] == [ptq_ctx.fp.convs[0]] and quant["method"] == "partial-ptq"


def test_fp32_onnx_input_is_checked(ptq_ctx, tmp_path):
    from quant_helpers import tiny_model

    from repyolo.errors import CheckpointError
    from repyolo.export import export_model
    from repyolo.quant.qdq import FloatModel

    dyn = export_model(tiny_model(), "onnx", img_size=IMG, dynamic=True, output=tmp_path / "dyn.onnx")
    with pytest.raises(RepyoloError, match="static"):
        FloatModel.load(dyn)
    bare = onnx.load(str(ptq_ctx.fp.path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(CheckpointError, match="not a repyolo export"):
        FloatModel.load(tmp_path / "bare.onnx")
    int8 = ptq_ctx.save(ptq_ctx.build(), tmp_path / "q.onnx")
    with pytest.raises(RepyoloError, match="already quantized"):
        FloatModel.load(int8)
    # an FP32 repyolo export is accepted as is (written to the work folder, the original untouched)
    fp = FloatModel.load(ptq_ctx.fp.path, workdir=tmp_path)
    assert fp.path.parent == tmp_path and fp.convs == ptq_ctx.fp.convs and fp.metadata["format"] == "repyolo"
