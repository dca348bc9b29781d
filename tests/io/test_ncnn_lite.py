"""YOLOv6-Lite NCNN graphs -> official state dict: every key of the official listing, right shapes,
activations as listed, identity BatchNorms that are exact."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_ncnn_format import SIZES, lite_pair

from repyolo.io.ncnn import NcnnFormatError, read_ncnn
from repyolo.io.ncnn_lite import identity_bn, lite_state_dict_from_ncnn, map_lite_graph

LISTINGS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "official_models"


def official_listing(size: str) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """``({state_dict key: shape}, {leaf module: description})`` of ``yolov6lite-{size}.txt``."""
    path = LISTINGS / f"yolov6lite-{size}.txt"
    if not path.is_file():
        pytest.skip(f"official model listing not found at {path}")
    text = path.read_text()
    state_part = text.split("## state_dict (key, shape)\n")[1].split("\n## ")[0]
    keys = {}
    for line in state_part.strip().splitlines():
        key, shape = line.split("\t")
        keys[key] = tuple(int(v) for v in re.findall(r"\d+", shape))
    leaves = dict(line.split("\t", 1) for line in text.split("## leaf modules")[1].splitlines()[1:] if "\t" in line)
    return keys, leaves


@pytest.mark.parametrize("size", SIZES)
def test_every_official_key_with_its_shape(size):
    param, bin_ = lite_pair(size)
    keys, _ = official_listing(size)
    model = read_ncnn(param, bin_)
    state = lite_state_dict_from_ncnn(model.graph, model.weights)
    assert set(state) == set(keys)
    assert {k: tuple(v.shape) for k, v in state.items()} == keys
    assert all(v.dtype == np.float32 for k, v in state.items() if not k.endswith("num_batches_tracked"))


@pytest.mark.parametrize("size", SIZES)
def test_walk_explains_every_layer_and_matches_the_listing(size):
    param, _ = lite_pair(size)
    _, leaves = official_listing(size)
    model = read_ncnn(param, param.with_suffix(".bin"))
    mapping = map_lite_graph(model.graph)
    assert mapping.input == "in0" and mapping.outputs == ["out0", "out1", "out2", "out3"]
    unexplained = [l.name for l in model.graph.layers if l.name not in mapping.visited
                   and l.type not in ("Input", "Split")]
    assert unexplained == []
    for conv in mapping.convs:
        layer = model.graph.layer(conv.layer)
        geometry = re.search(r"k=(\d+) s=(\d+) p=(\d+) g=(\d+)", leaves[conv.conv]).groups()
        groups = layer.get(7, 1) if layer.type == "ConvolutionDepthWise" else 1
        assert tuple(map(int, geometry)) == (layer.params[1], layer.get(3, 1), layer.get(4, 0), groups), conv
        module = conv.conv.rsplit(".", 2)[0] if conv.conv.endswith(".block.conv") else conv.conv.rsplit(".", 1)[0]
        if conv.conv.endswith(".block.conv"):
            listed = leaves.get(f"{module}.block.act")
        elif conv.bn is not None:
            listed = leaves[f"{module}.act_{conv.bn[-1]}"]
        else:
            listed = {"conv1": "ReLU", "conv2": None}.get(conv.conv.rsplit(".", 1)[1], "Sigmoid" if "cls_preds"
                                                          in conv.conv else None)
        assert conv.act == {"Hardswish": "HardSwish"}.get(listed, listed), conv


def test_identity_bn_is_exact_in_torch():
    torch = pytest.importorskip("torch")
    bias = np.random.default_rng(0).normal(size=16).astype(np.float32)
    bn = torch.nn.BatchNorm2d(16, eps=1e-3).eval()
    bn.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in identity_bn(bias, 1e-3).items()})
    x = torch.randn(2, 16, 7, 5) * 100
    with torch.no_grad():
        assert torch.equal(bn(x), x + torch.from_numpy(bias)[:, None, None])
    for eps in (1e-5, 1e-3, 0.1):
        var = identity_bn(bias, eps)["running_var"][0]
        assert np.float32(var) + np.float32(eps) == np.float32(1.0)


def test_folded_bias_goes_to_the_bn():
    param, bin_ = lite_pair("s")
    model = read_ncnn(param, bin_)
    state = lite_state_dict_from_ncnn(model.graph, model.weights)
    np.testing.assert_array_equal(state["backbone.conv_0.block.conv.weight"], model.weights["conv_28"]["weight"])
    np.testing.assert_array_equal(state["backbone.conv_0.block.bn.bias"], model.weights["conv_28"]["bias"])
    assert not state["neck.downsample2.conv_dw_1.bias"].any()  # DPBlock conv bias 0, folded bias in bn_1
    assert state["neck.downsample2.bn_1.bias"].any()
    np.testing.assert_array_equal(state["detect.cls_preds.0.bias"], model.weights["convsigmoid_17"]["bias"])


def test_not_a_lite_graph_is_refused():
    param, bin_ = lite_pair("s")
    model = read_ncnn(param, bin_)
    model.graph.layers = [l for l in model.graph.layers if l.name != "hswish_154"]  # drop the stem activation
    with pytest.raises(NcnnFormatError, match="not a YOLOv6-Lite graph: backbone.conv_0.block.conv act"):
        map_lite_graph(model.graph)
