"""NCNN ``.param`` / ``.bin`` reader and writer: the shipped YOLOv6-Lite files, round trips, the
``ncnn`` runtime on graphs we write, and one-line errors for truncated or garbled files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from repyolo.errors import CheckpointError
from repyolo.io.ncnn import (
    NcnnFormatError,
    NcnnGraph,
    format_bin,
    format_param,
    insert_splits,
    parse_bin,
    parse_param,
    read_ncnn,
    read_param,
    write_ncnn,
)

REPO = Path(__file__).resolve().parents[2]
SHARED_WEIGHTS = Path(os.environ.get("REPYOLO_SHARED_WEIGHTS", REPO.parent / "shared" / "weights"))
LITE = SHARED_WEIGHTS / "yolov6-lite"
SIZES = ("s", "m", "l")


def lite_pair(size: str) -> tuple[Path, Path]:
    """``(param, bin)`` of a shipped Lite model, or a skip with the reason."""
    param, bin_ = LITE / f"yolov6-lite-{size}.param", LITE / f"yolov6-lite-{size}.bin"
    if not (param.is_file() and bin_.is_file()):
        pytest.skip(f"YOLOv6-Lite NCNN weights not found at {LITE} (CI has ../shared/weights; a user clone may "
                    f"not; set REPYOLO_SHARED_WEIGHTS)")
    return param, bin_


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and isinstance(excinfo.value, CheckpointError)
    return msg


# ------------------------------------------------------------------------------------------
# the shipped models


@pytest.mark.parametrize("size", SIZES)
def test_parse_shipped_lite_models(size):
    param, bin_ = lite_pair(size)
    model = read_ncnn(param, bin_)
    graph = model.graph
    assert len(graph.layers) == 377 and len(graph.blobs) == 421
    assert graph.input_blobs == ["in0"] and sorted(graph.output_blobs) == ["out0", "out1", "out2", "out3"]
    convs = [l for l in graph.layers if l.type in ("Convolution", "ConvolutionDepthWise")]
    assert len(convs) == len(model.weights) == 154
    assert set(model.storage.values()) == {"fp16"}
    stem = graph.layer("conv_28")
    assert stem.params[6] == 648 and stem.params[13] == 2 and stem.line == 4
    assert model.weights["conv_28"]["weight"].shape == (24, 3, 3, 3)  # torch layout (out, in, kh, kw)
    assert model.weights["conv_28"]["weight"].dtype == np.float32
    for layer in convs:
        w = model.weights[layer.name]["weight"]
        groups = layer.get(7, 1) if layer.type == "ConvolutionDepthWise" else 1
        assert w.shape[0] == layer.params[0] and w.size == layer.params[6]
        assert w.shape[2:] == (layer.get(11, layer.params[1]), layer.params[1]) and groups >= 1
        assert model.weights[layer.name]["bias"].shape == (layer.params[0],)
    hsw = next(l for l in graph.layers if l.type == "HardSwish")
    assert hsw.params == {0: pytest.approx(1 / 6, rel=1e-6), 1: 0.5}
    sl = next(l for l in graph.layers if l.type == "Slice")
    assert isinstance(sl.params[0], list) and len(sl.params[0]) == 2 and sl.params[1] == 0


@pytest.mark.parametrize("size", SIZES)
def test_bin_is_consumed_exactly_and_round_trips(size, tmp_path):
    param, bin_ = lite_pair(size)
    model = read_ncnn(param, bin_)
    data = bin_.read_bytes()
    # parse_bin refuses leftovers, so reading at all means every byte was consumed; one byte more is refused
    with pytest.raises(NcnnFormatError, match="4 bytes left after the last layer"):
        parse_bin(data + b"\0" * 4, model.graph, "x.bin")
    assert format_bin(model.graph, model.weights, "fp16") == data  # fp16 -> float32 -> fp16 is exact
    p2, b2 = write_ncnn(model.graph, model.weights, tmp_path / "copy.param", storage="fp32")
    again = read_ncnn(p2, b2)
    assert [(l.type, l.name, l.inputs, l.outputs, l.params) for l in again.graph.layers] == \
        [(l.type, l.name, l.inputs, l.outputs, l.params) for l in model.graph.layers]
    assert set(again.storage.values()) == {"fp32"}
    for name, arrays in model.weights.items():
        for key, a in arrays.items():
            np.testing.assert_array_equal(again.weights[name][key], a)


# ------------------------------------------------------------------------------------------
# param syntax


def test_param_values_and_arrays():
    text = ("7767517\n3 4\n"
            "Input in 0 1 data 0=8 1=8 2=3\n"
            "Slice sl 1 2 data a b -23300=2,1,-233 1=0 2=2.5e-01 3=1.,2.,3.5\n"
            "Noop n 1 1 a c 4=hello 5=\"two words\" 6=-7 7=1E+2 8=-23305 -23309=2,0.5,1e-3\n")
    g = parse_param(text, "t.param")
    layer = g.layer("sl")
    assert layer.params == {0: [1, -233], 1: 0, 2: 0.25, 3: [1.0, 2.0, 3.5]}
    assert isinstance(layer.params[0][0], int) and isinstance(layer.params[3][0], float)
    noop = g.layer("n")
    assert noop.params == {4: "hello", 5: "two words", 6: -7, 7: 100.0, 8: -23305, 9: [0.5, pytest.approx(1e-3)]}
    assert g.input_blobs == ["data"] and g.output_blobs == ["b", "c"]
    again = parse_param(format_param(g), "again.param")
    assert [l.params for l in again.layers] == [l.params for l in g.layers]


def test_written_floats_are_exact_and_short():
    g = NcnnGraph()
    values = [1 / 6, 0.1, 1.0, -3.4028235e38, 1e-45, 65504.0, 2.5]
    g.add("Noop", "n", [], ["x"], {k: v for k, v in enumerate(values)})
    text = format_param(g)
    tokens = text.split()[-len(values):]
    assert all(len(t.split("=")[1]) <= 15 and "e" in t for t in tokens)  # ncnn scans %15s; 'e' marks a float
    got = parse_param(text).layer("n").params
    assert [np.float32(got[k]) for k in range(len(values))] == [np.float32(v) for v in values]


@pytest.mark.parametrize("text, match", [
    ("", "empty param file"),
    ("7767518\n1 1\nInput in 0 1 data\n", r"t.param:1: bad magic '7767518'"),
    ("7767517\n1\nInput in 0 1 data\n", r"t.param:2: expected '<layer count> <blob count>'"),
    ("7767517\n2 2\nInput in 0 1 data\n", r"t.param:2: header declares 2 layers but the file has 1"),
    ("7767517\n1 1\nInput in 0 x data\n", r"t.param:3: layer 'in': blob counts '0' 'x' are not integers"),
    ("7767517\n1 1\nInput in 0 2 data 0=1\n", r"t.param:3: layer 'in': expected 0 input and 2 output blob names"),
    ("7767517\n1 1\nInput in 0 1 data 0=1,x\n", r"t.param:3: layer 'in': bad param '0=1,x'"),
    ("7767517\n1 1\nInput in 0 1 data 0=1.5.2\n", r"t.param:3: layer 'in': bad param '0=1.5.2'"),
    ("7767517\n1 1\nInput in 0 1 data x=1\n", r"t.param:3: layer 'in': bad param 'x=1'"),
    ("7767517\n1 1\nInput in 0 1 data 0=1 0=2\n", r"t.param:3: layer 'in': param 0 given twice"),
    ("7767517\n1 1\nInput in 0 1 data -23300=3,1,2\n", r"array declares 3 elements but has 2"),
    ("7767517\n2 1\nInput a 0 1 data\nInput b 0 1 data\n", r"t.param:4: layer 'b': blob 'data' is produced twice"),
    ("7767517\n2 1\nInput a 0 1 x\nReLU r 1 1 x y\n", r"t.param:2: header declares 1 blobs but the layers use 2"),
])
def test_bad_param_text_is_one_line_error(text, match):
    with pytest.raises(NcnnFormatError, match=match) as excinfo:
        parse_param(text, "t.param")
    one_line_error(excinfo)


def test_repeated_layer_names(repyolo_log):
    """pnnx writes two ``splitncnn_0`` in some graphs (the runtime accepts it): read with a warning,
    refused when weights would collide, never written."""
    text = "7767517\n3 4\nInput a 0 1 x\nSplit s 1 2 x y z\nSplit s 1 1 y w\n"
    g = parse_param(text, "dup.param")
    assert [l.name for l in g.layers] == ["a", "s", "s"] and "used twice" in repyolo_log.text()
    with pytest.raises(NcnnFormatError, match="layer name 's' used twice"):
        format_param(g)
    text = "7767517\n3 3\nInput a 0 1 x\nPReLU p 1 1 x y 0=1\nPReLU p 1 1 y z 0=1\n"
    with pytest.raises(NcnnFormatError, match=r"dup.param:5: layer name 'p' used twice by layers with weights"):
        parse_bin(b"\0" * 8, parse_param(text, "dup.param"), "dup.bin")


def test_read_param_errors_name_the_file(tmp_path):
    with pytest.raises(NcnnFormatError, match="cannot read") as excinfo:
        read_param(tmp_path / "missing.param")
    assert "missing.param" in one_line_error(excinfo)
    binary = tmp_path / "binary.param"
    binary.write_bytes(b"7767517\n1 1\n\xff\xfe\x00")
    with pytest.raises(NcnnFormatError, match=r"binary.param:3: not text"):
        read_param(binary)


def test_garbled_param_never_raises_anything_else():
    """Random byte damage to a real-looking param gives a graph or a one-line NcnnFormatError."""
    base = (b"7767517\n4 4\nInput in 0 1 data 0=8 1=8 2=3\n"
            b"Convolution conv 1 1 data c 0=4 1=3 4=1 5=1 6=108 9=1\n"
            b"Slice sl 1 2 c a b -23300=2,2,2 1=0\n"
            b"HardSwish hs 1 1 a y 0=1.666667e-01 1=5.000000e-01\n")
    rng = np.random.default_rng(0)
    for _ in range(300):
        data = bytearray(base)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(len(data)))] = int(rng.choice(list(b"0123456789=,.- \n-eax\"")))
        try:
            parse_param(data.decode("latin-1"), "fuzz.param")
        except NcnnFormatError as e:
            assert "\n" not in str(e) and str(e).startswith("fuzz.param")


# ------------------------------------------------------------------------------------------
# bin errors


def test_truncated_bin_names_the_layer(tmp_path):
    param, bin_ = lite_pair("s")
    graph = read_param(param)
    data = bin_.read_bytes()
    with pytest.raises(NcnnFormatError) as excinfo:
        parse_bin(data[:-100], graph, "lite-s.bin")
    msg = one_line_error(excinfo)
    assert msg.startswith("lite-s.bin: file too short while reading layer convsigmoid_17 (Convolution bias")
    with pytest.raises(NcnnFormatError, match="file too short while reading layer conv_28 "
                                              r"\(Convolution weight storage tag"):
        parse_bin(b"", graph, "empty.bin")
    short = tmp_path / "short.bin"
    short.write_bytes(data[:5000])
    with pytest.raises(NcnnFormatError, match=r"short.bin: file too short while reading layer \w+"):
        read_ncnn(param, short)


def test_bin_of_another_model_is_refused():
    param_s, _ = lite_pair("s")
    _, bin_m = lite_pair("m")
    with pytest.raises(NcnnFormatError) as excinfo:
        read_ncnn(param_s, bin_m)
    assert "yolov6-lite-m.bin" in one_line_error(excinfo)


def test_garbled_storage_tag_is_caught():
    param, bin_ = lite_pair("s")
    graph = read_param(param)
    data = bytearray(bin_.read_bytes())
    data[0:4] = b"\x13\x37\x00\x00"  # not a known tag: NCNN reads a 256-entry table + indices
    with pytest.raises(NcnnFormatError) as excinfo:
        parse_bin(bytes(data), graph, "garbled.bin")
    one_line_error(excinfo)


def test_weight_size_must_match_the_kernel():
    g = parse_param("7767517\n2 2\nInput in 0 1 x\nConvolution c 1 1 x y 0=4 1=3 5=1 6=100\n", "k.param")
    with pytest.raises(NcnnFormatError, match=r"k.param:4: layer 'c' \(Convolution\): weight_data_size 100 is not "
                                              r"a positive multiple of 36"):
        parse_bin(b"", g, "k.bin")
    g = parse_param("7767517\n2 2\nInput in 0 1 x\nMysteryOp m 1 1 x y 0=1\n", "u.param")
    with pytest.raises(NcnnFormatError, match="u.param:4: layer 'm' \\(MysteryOp\\): unsupported layer type"):
        parse_bin(b"", g, "u.bin")


# ------------------------------------------------------------------------------------------
# graphs we write run in the ncnn runtime


def np_conv2d(x, w, b, stride=1, pad=0, groups=1):
    """Reference convolution: ``x (C, H, W)``, ``w (O, C/groups, kh, kw)`` -> ``(O, H', W')``."""
    _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((o, oh, ow), np.float64)
    og = o // groups
    for g in range(groups):
        xs = xp[g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
                out[g * og:(g + 1) * og] += np.einsum("oc,chw->ohw", w[g * og:(g + 1) * og, :, i, j], patch)
    return (out + b[:, None, None]).astype(np.float32)


def hardswish(x):
    return x * np.clip(x / 6 + 0.5, 0, 1)


def small_graph(rng):
    """Input (4, 12, 10) -> conv 3x3 + bias -> HardSwish -> split -> [dwconv s2 -> BatchNorm,
    global avg pool -> InnerProduct] outputs; returns graph, weights, numpy reference."""
    x = rng.uniform(-1, 1, (4, 12, 10)).astype(np.float32)
    w1, b1 = rng.normal(0, 0.5, (6, 4, 3, 3)).astype(np.float32), rng.normal(0, 0.1, 6).astype(np.float32)
    wd, bd = rng.normal(0, 0.5, (6, 1, 3, 3)).astype(np.float32), rng.normal(0, 0.1, 6).astype(np.float32)
    bn = {"slope": rng.uniform(0.5, 2, 6), "mean": rng.normal(0, 0.1, 6), "var": rng.uniform(0.5, 2, 6),
          "bias": rng.normal(0, 0.1, 6)}
    bn = {k: v.astype(np.float32) for k, v in bn.items()}
    wf, bf = rng.normal(0, 0.5, (5, 6)).astype(np.float32), rng.normal(0, 0.1, 5).astype(np.float32)
    g = NcnnGraph()
    g.add("Input", "input", [], ["in0"], {0: 10, 1: 12, 2: 4})
    g.add("Convolution", "conv", ["in0"], ["c"], {0: 6, 1: 3, 4: 1, 5: 1, 6: w1.size})
    g.add("HardSwish", "hs", ["c"], ["h"], {0: 1 / 6, 1: 0.5})
    g.add("ConvolutionDepthWise", "dw", ["h"], ["d"], {0: 6, 1: 3, 3: 2, 4: 1, 5: 1, 6: wd.size, 7: 6})
    g.add("BatchNorm", "bn", ["d"], ["out0"], {0: 6, 1: 1e-3})
    g.add("Pooling", "gap", ["h"], ["p"], {0: 1, 4: 1})
    g.add("InnerProduct", "fc", ["p"], ["out1"], {0: 5, 1: 1, 2: wf.size})
    weights = {"conv": {"weight": w1, "bias": b1}, "dw": {"weight": wd, "bias": bd}, "bn": bn,
               "fc": {"weight": wf, "bias": bf}}
    h = hardswish(np_conv2d(x, w1, b1, pad=1))
    d = np_conv2d(h, wd, bd, stride=2, pad=1, groups=6)
    out0 = (d - bn["mean"][:, None, None]) / np.sqrt(bn["var"][:, None, None] + 1e-3) * bn["slope"][:, None, None] \
        + bn["bias"][:, None, None]
    out1 = wf @ h.mean((1, 2)) + bf
    return g, weights, x, {"out0": out0, "out1": out1}


@pytest.mark.parametrize("storage, tol", [("fp32", 1e-5), ("fp16", 2e-2)])
def test_written_graph_runs_in_ncnn(tmp_path, storage, tol):
    pytest.importorskip("ncnn")
    from repyolo.io.ncnn import run_ncnn

    g, weights, x, ref = small_graph(np.random.default_rng(1))
    with pytest.raises(NcnnFormatError, match="blob 'h' is read by 2 layers"):
        format_param(g)  # the runtime crashes on a blob with two readers: the writer refuses
    g = insert_splits(g)
    assert [l.type for l in g.layers].count("Split") == 1
    param, bin_ = write_ncnn(g, weights, tmp_path / "small.param", storage=storage)
    out = run_ncnn(param, bin_, x)
    assert set(out) == {"out0", "out1"}
    assert out["out0"].shape == (6, 6, 5) and out["out1"].shape == (5,)
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], atol=tol, rtol=tol)
    back = read_ncnn(param, bin_)
    assert back.storage == {"conv": storage, "dw": storage, "fc": storage}


def test_deconvolution_layout_matches_torch(tmp_path):
    """Deconvolution weights are returned in torch's ConvTranspose2d layout ``(in, out/g, kh, kw)``."""
    pytest.importorskip("ncnn")
    torch = pytest.importorskip("torch")
    from repyolo.io.ncnn import run_ncnn

    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 5, 6)).astype(np.float32)
    g = NcnnGraph()
    g.add("Input", "input", [], ["in0"])
    w1, b1 = rng.normal(size=(8, 3, 2, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    g.add("Deconvolution", "up", ["in0"], ["out0"], {0: 3, 1: 3, 11: 2, 3: 2, 13: 2, 5: 1, 6: w1.size})
    param, bin_ = write_ncnn(g, {"up": {"weight": w1, "bias": b1}}, tmp_path / "deconv.param", storage="fp32")
    ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(x)[None], torch.from_numpy(w1),
                                               torch.from_numpy(b1), stride=2)[0].numpy()
    np.testing.assert_allclose(run_ncnn(param, bin_, x)["out0"], ref, atol=1e-5)
    np.testing.assert_array_equal(read_ncnn(param, bin_).weights["up"]["weight"], w1)


def test_int8_weights_are_dequantized_and_rewritten(tmp_path):
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    scales = (127 / np.abs(w).reshape(4, -1).max(1)).astype(np.float32)
    q = np.rint(w * scales[:, None, None, None]) / scales[:, None, None, None]
    g = NcnnGraph()
    g.add("Input", "input", [], ["x"])
    g.add("Convolution", "c", ["x"], ["y"], {0: 4, 1: 3, 5: 0, 6: w.size, 8: 1})
    arrays = {"weight": w, "weight_int8_scales": scales, "input_int8_scales": np.array([20.0], np.float32)}
    param, bin_ = write_ncnn(g, {"c": arrays}, tmp_path / "q.param")
    back = read_ncnn(param, bin_)
    assert back.storage == {"c": "int8"}
    np.testing.assert_allclose(back.weights["c"]["weight"], q, rtol=1e-6)
    assert format_bin(back.graph, back.weights) == bin_.read_bytes()


def test_lite_s_runs_in_ncnn():
    """The runtime helper on a shipped model: the four head outputs for strides 8 .. 64 at 320."""
    pytest.importorskip("ncnn")
    from repyolo.io.ncnn import NcnnNet

    param, bin_ = lite_pair("s")
    net = NcnnNet(param, bin_, num_threads=1)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 320, 320)).astype(np.float32)
    out = net(x, ["out0", "out1", "out2", "out3"])
    assert [out[f"out{i}"].shape for i in range(4)] == [(84, 40, 40), (84, 20, 20), (84, 10, 10), (84, 5, 5)]
    for a in out.values():
        assert np.isfinite(a).all() and 0 <= a[:80].min() and a[:80].max() <= 1  # sigmoid class scores first
    again = net(x[0], ["out0"])["out0"]
    np.testing.assert_array_equal(again, out["out0"])  # deterministic with one thread


def test_raw_weight_layer_types_run_in_ncnn(tmp_path):
    """Scale, PReLU, MemoryData, Padding (per-channel values), InnerProduct on a feature map: the
    writer's raw-fp32 arrays land where the runtime reads them."""
    pytest.importorskip("ncnn")
    from repyolo.io.ncnn import run_ncnn

    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 4, 5)).astype(np.float32)
    scale, bias, slope = (rng.normal(size=3).astype(np.float32) for _ in range(3))
    const = rng.normal(size=(3, 4, 5)).astype(np.float32)
    pad_values = rng.normal(size=3).astype(np.float32)
    g = NcnnGraph()
    g.add("Input", "input", [], ["in0"])
    g.add("Scale", "scale", ["in0"], ["s"], {0: 3, 1: 1})
    g.add("PReLU", "prelu", ["s"], ["p"], {0: 3})
    g.add("MemoryData", "const", [], ["c"], {0: 5, 1: 4, 2: 3})
    g.add("BinaryOp", "add", ["p", "c"], ["a"], {0: 0})
    g.add("Padding", "pad", ["a"], ["out0"], {0: 1, 1: 0, 2: 0, 3: 2, 6: 3})
    weights = {"scale": {"scale": scale, "bias": bias}, "prelu": {"slope": slope}, "const": {"data": const},
               "pad": {"pad_values": pad_values}}
    param, bin_ = write_ncnn(g, weights, tmp_path / "raw.param", storage="fp32")
    s = x * scale[:, None, None] + bias[:, None, None]
    a = np.where(s > 0, s, s * slope[:, None, None]) + const
    ref = np.broadcast_to(pad_values[:, None, None], (3, 5, 7)).copy()
    ref[:, 1:, :5] = a
    np.testing.assert_allclose(run_ncnn(param, bin_, x)["out0"], ref, atol=1e-6)
    back = read_ncnn(param, bin_)
    np.testing.assert_array_equal(back.weights["const"]["data"], const)
    assert back.storage == {}  # no quantizable arrays in this graph
