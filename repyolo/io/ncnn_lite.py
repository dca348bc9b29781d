"""Map the released YOLOv6-Lite NCNN graphs (S / M / L) onto the official module names.

The NCNN files hold the deploy form: every Conv + BatchNorm pair folded into one
``Convolution`` / ``ConvolutionDepthWise`` with a bias, activations as separate ``HardSwish``
layers (SE's ReLU and the class branch's sigmoid fused into their convolution, ``9=1`` /
``9=4``). :func:`map_lite_graph` walks the graph with the official architecture in hand
(dataflow, not layer names or file order) and says which NCNN convolution is which official
module; :func:`lite_state_dict_from_ncnn` turns the weights into the official state dict:

- ``X.block.conv.weight`` <- the folded weight; ``X.block.bn`` becomes an identity BatchNorm
  carrying the folded bias: ``weight 1``, ``bias b``, ``running_mean 0``, ``running_var 1 - eps``
  (``var + eps`` is exactly 1 in float32, so eval BN is ``x + b`` bit for bit);
- DPBlocks (``conv_dw_1`` + ``bn_1``, ``conv_pw_1`` + ``bn_2``, convs with ``bias=True``):
  conv bias 0 and the folded bias in the BN bias, as above (the BN bias survives fine-tuning,
  a conv bias before a training-mode BN would be cancelled);
- SE ``conv1`` / ``conv2`` and the head's ``cls_preds`` / ``reg_preds``: copied as they are.

Walk of one model (official forward, facts from the published architecture):
backbone ``conv_0`` then 4 stages ``lite_effiblock_k``: a stride-2 block (``conv_dw_1`` ->
``conv_1`` | ``conv_pw_2`` -> ``conv_dw_2`` -> SE -> ``conv_2``; concat; ``conv_dw_3`` ->
``conv_pw_3``) and stride-1 blocks (channel halves; the second half through ``conv_pw_1`` ->
``conv_dw_1`` -> SE -> ``conv_1``; concat; shuffle 2). The neck reduces C5/C4/C3, fuses top-down
(2x nearest upsampling + CSP blocks ``Csp_p4``, ``Csp_p3``) and bottom-up (``downsample2``,
``Csp_n3``, ``downsample1``, ``Csp_n4``) and makes P6 as ``p6_conv_1(C5') + p6_conv_2(P5)``. The
head runs per level ``stems`` -> (``cls_convs`` -> ``cls_preds`` -> sigmoid | ``reg_convs`` ->
``reg_preds``) and concatenates ``[80 class scores, 4 distances]``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from repyolo.io.ncnn import NcnnFormatError, NcnnGraph, NcnnLayer
from repyolo.nn.model import BN_EPS

ACTIVATION_TYPES = {0: None, 1: "ReLU", 2: "LeakyReLU", 3: "Clip", 4: "Sigmoid", 5: "Mish", 6: "HardSwish"}
CONV_TYPES = ("Convolution", "ConvolutionDepthWise")


@dataclass
class LiteConv:
    """One folded NCNN convolution and where it goes.

    ``conv``: official module path of the convolution (``backbone.conv_0.block.conv``);
    ``bn``: path of the BatchNorm folded into it (``None`` for SE and prediction convs);
    ``layer``: NCNN layer name; ``act``: the activation NCNN applies to its output
    (``"HardSwish"`` layer, a fused ``"ReLU"`` / ``"Sigmoid"``, or ``None``).
    """

    conv: str
    bn: str | None
    layer: str
    act: str | None = None


@dataclass
class LiteMapping:
    """Result of :func:`map_lite_graph`.

    ``convs``: every convolution, in walk order; ``outputs``: output blob of each level
    (strides 8, 16, 32, 64); ``input``: the image blob; ``visited``: names of every layer the
    walk explained (all but ``Input`` / ``Split`` ones, when the graph is a Lite model).
    """

    convs: list[LiteConv] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    input: str = ""
    visited: set[str] = field(default_factory=set)

    def by_layer(self) -> dict[str, LiteConv]:
        return {c.layer: c for c in self.convs}


def _stride(layer: NcnnLayer) -> int:
    return int(layer.get(3, 1))


class _Walker:
    """Follows the dataflow of an NCNN graph (through ``Split`` layers) and records the mapping."""

    def __init__(self, graph: NcnnGraph):
        self.graph = graph
        self.producer = graph.producers()
        self.readers = graph.consumers()
        self.mapping = LiteMapping()
        self.mapped: set[str] = set()

    # ------------------------------------------------------------------ graph navigation

    def canon(self, blob: str) -> str:
        """The blob a ``Split`` output copies (Split outputs are the same tensor)."""
        layer = self.producer.get(blob)
        while layer is not None and layer.type == "Split":
            blob = layer.inputs[0]
            layer = self.producer.get(blob)
        return blob

    def readers_of(self, blob: str) -> list[NcnnLayer]:
        """Layers reading ``blob``, looking through ``Split`` layers."""
        out = []
        for layer in self.readers.get(blob, []):
            if layer.type == "Split":
                for b in layer.outputs:
                    out += self.readers_of(b)
            else:
                out.append(layer)
        return out

    def one(self, blob: str, type_: str, what: str, pred: Callable[[NcnnLayer], bool] | None = None) -> NcnnLayer:
        """The single not-yet-mapped ``type_`` reader of ``blob`` that satisfies ``pred``."""
        found = [l for l in self.readers_of(blob)
                 if l.type == type_ and l.name not in self.mapped and (pred is None or pred(l))]
        if len(found) != 1:
            raise NcnnFormatError(f"{self.graph.source}: not a YOLOv6-Lite graph: {what}: expected one {type_} "
                                  f"reading blob {blob!r}, found {[l.name for l in found]}")
        self.mapping.visited.add(found[0].name)
        return found[0]

    def follow(self, layer: NcnnLayer, types: list[str]) -> NcnnLayer | None:
        """The layer reached from ``layer`` through single readers of ``types`` (None if the chain breaks)."""
        for t in types:
            nxt = [l for l in self.readers_of(layer.outputs[0]) if l.type == t]
            if len(nxt) != 1:
                return None
            layer = nxt[0]
        return layer

    def check_inputs(self, layer: NcnnLayer, blobs: list[str], what: str) -> None:
        """``layer`` reads exactly ``blobs`` in this order (Split copies count as the same blob)."""
        got = [self.canon(b) for b in layer.inputs]
        if got != [self.canon(b) for b in blobs]:
            raise NcnnFormatError(f"{self.graph.source}: not a YOLOv6-Lite graph: {what}: layer {layer.name!r} "
                                  f"reads {layer.inputs}, expected {blobs}")

    def join(self, type_: str, blobs: list[str], what: str, params: dict[int, int]) -> str:
        """The ``type_`` layer reading ``blobs`` in this order with these ``params`` (a Concat on
        channels ``{0: 0}``, a BinaryOp add ``{0: 0}`` or multiply ``{0: 2}``); its output."""
        layer = self.one(blobs[0], type_, what,
                         lambda l: all(l.get(k, 0) == v for k, v in params.items()) and len(l.inputs) == len(blobs))
        self.check_inputs(layer, blobs, what)
        return layer.outputs[0]

    # ------------------------------------------------------------------ convolutions

    def conv(self, x: str, conv_path: str, bn_path: str | None, type_: str, hswish: bool,
             pred: Callable[[NcnnLayer], bool] | None = None) -> str:
        """Map the ``type_`` reader of ``x`` to ``conv_path`` (+ folded ``bn_path``); returns its
        output, after the ``HardSwish`` layer when ``hswish``."""
        layer = self.one(x, type_, conv_path, pred)
        self.mapped.add(layer.name)
        entry = LiteConv(conv_path, bn_path, layer.name, ACTIVATION_TYPES.get(int(layer.get(9, 0))))
        self.mapping.convs.append(entry)
        out = layer.outputs[0]
        if hswish:
            if entry.act is not None:
                raise NcnnFormatError(f"{self.graph.source}: {conv_path}: layer {layer.name!r} has a fused "
                                      f"{entry.act}, expected a HardSwish layer")
            out = self.one(out, "HardSwish", conv_path + " act").outputs[0]
            entry.act = "HardSwish"
        return out

    def conv_bn_hs(self, x: str, path: str, pred=None) -> str:
        """Official ``ConvBNHS`` (Conv -> BN -> HardSwish), 1x1 or 3x3."""
        return self.conv(x, f"{path}.block.conv", f"{path}.block.bn", "Convolution", True, pred)

    def dw_bn(self, x: str, path: str, hswish: bool, stride: int) -> str:
        """Official depthwise ``ConvBN`` (``ConvBNHS`` when ``hswish``) with the given stride."""
        return self.conv(x, f"{path}.block.conv", f"{path}.block.bn", "ConvolutionDepthWise", hswish,
                         lambda layer: _stride(layer) == stride)

    def dpblock(self, x: str, path: str, stride: int, pred=None) -> str:
        """Official ``DPBlock``: depthwise (``conv_dw_1`` + ``bn_1`` + HS), pointwise
        (``conv_pw_1`` + ``bn_2`` + HS)."""
        def first(layer):
            return _stride(layer) == stride and (pred is None or pred(layer))

        y = self.conv(x, f"{path}.conv_dw_1", f"{path}.bn_1", "ConvolutionDepthWise", True, first)
        return self.conv(y, f"{path}.conv_pw_1", f"{path}.bn_2", "Convolution", True)

    def se(self, x: str, path: str) -> str:
        """Official ``SEBlock``: global average pool -> conv1 + ReLU -> conv2 -> HardSigmoid -> x * s."""
        pool = self.one(x, "Pooling", path + ".avg_pool", lambda l: l.get(0) == 1 and l.get(4) == 1)
        s = self.conv(pool.outputs[0], f"{path}.conv1", None, "Convolution", False)
        s = self.conv(s, f"{path}.conv2", None, "Convolution", False)
        s = self.one(s, "HardSigmoid", path + ".hardsigmoid").outputs[0]
        return self.join("BinaryOp", [x, s], path + " multiply", {0: 2})

    # ------------------------------------------------------------------ backbone

    def _feeds(self, layer: NcnnLayer, types: list[str], last: Callable[[NcnnLayer], bool]) -> bool:
        end = self.follow(layer, types)
        return end is not None and last(end)

    def block_stride2(self, x: str, path: str) -> str:
        """Stride-2 ``Lite_EffiBlockS2``: two branches, concat, depthwise 3x3 + pointwise."""
        a = self.dw_bn(x, f"{path}.conv_dw_1", hswish=False, stride=2)
        a = self.conv_bn_hs(a, f"{path}.conv_1")
        def into_dw_s2(layer):
            return self._feeds(layer, ["HardSwish", "ConvolutionDepthWise"], lambda d: _stride(d) == 2)

        b = self.conv_bn_hs(x, f"{path}.conv_pw_2", into_dw_s2)
        b = self.dw_bn(b, f"{path}.conv_dw_2", hswish=False, stride=2)
        b = self.se(b, f"{path}.se")
        b = self.conv_bn_hs(b, f"{path}.conv_2")
        y = self.join("Concat", [a, b], path + " concat", {0: 0})
        y = self.dw_bn(y, f"{path}.conv_dw_3", hswish=True, stride=1)
        return self.conv_bn_hs(y, f"{path}.conv_pw_3")

    def block_stride1(self, x: str, path: str) -> str:
        """Stride-1 ``Lite_EffiBlockS1``: split channels in halves, second half through the
        branch, concat ``[first half, branch]``, channel shuffle (2 groups)."""
        sl = self.one(x, "Slice", path + " split", lambda l: len(l.outputs) == 2 and l.get(1, 0) == 0)
        x1, x2 = sl.outputs
        b = self.conv_bn_hs(x2, f"{path}.conv_pw_1")
        b = self.dw_bn(b, f"{path}.conv_dw_1", hswish=False, stride=1)
        b = self.se(b, f"{path}.se")
        b = self.conv_bn_hs(b, f"{path}.conv_1")
        y = self.join("Concat", [x1, b], path + " concat", {0: 0})
        return self.one(y, "ShuffleChannel", path + " shuffle", lambda l: l.get(0) == 2).outputs[0]

    def backbone(self, image: str) -> list[str]:
        """``Lite_EffiBackbone``: returns the outputs of the 4 stages (strides 4, 8, 16, 32)."""
        x = self.conv_bn_hs(image, "backbone.conv_0")
        outs = []
        for k in range(1, 5):
            x = self.block_stride2(x, f"backbone.lite_effiblock_{k}.0")
            j = 1
            while any(l.type == "Slice" for l in self.readers_of(x)):
                x = self.block_stride1(x, f"backbone.lite_effiblock_{k}.{j}")
                j += 1
            outs.append(x)
        return outs

    # ------------------------------------------------------------------ neck and head

    def csp(self, x: str, path: str) -> str:
        """``CSPBlock`` of the Lite neck: ``conv_3(cat[blocks(conv_1(x)), conv_2(x)])``,
        ``blocks`` = ConvBNHS 1x1 then a DPBlock."""
        def into_conv(layer):
            return self._feeds(layer, ["HardSwish", "Convolution"], lambda c: True)

        h = self.conv_bn_hs(x, f"{path}.conv_1", into_conv)
        h = self.conv_bn_hs(h, f"{path}.blocks.conv_1")
        h = self.dpblock(h, f"{path}.blocks.conv_2", stride=1)
        s = self.conv_bn_hs(x, f"{path}.conv_2")
        y = self.join("Concat", [h, s], path + " concat", {0: 0})
        return self.conv_bn_hs(y, f"{path}.conv_3")

    def upsample(self, x: str, what: str) -> str:
        """2x nearest ``Interp``."""
        return self.one(x, "Interp", what, lambda l: l.get(0) == 1 and l.get(1) == 2.0 and l.get(2) == 2.0).outputs[0]

    def neck(self, c3: str, c4: str, c5: str) -> list[str]:
        """``Lite_EffiNeck``: returns P3, P4, P5, P6 (strides 8, 16, 32, 64)."""
        fpn0 = self.conv_bn_hs(c5, "neck.reduce_layer0")
        r1 = self.conv_bn_hs(c4, "neck.reduce_layer1")
        r2 = self.conv_bn_hs(c3, "neck.reduce_layer2")
        f1 = self.csp(self.join("Concat", [self.upsample(fpn0, "neck.upsample0"), r1], "neck cat p4", {0: 0}),
                      "neck.Csp_p4")
        p3 = self.csp(self.join("Concat", [self.upsample(f1, "neck.upsample1"), r2], "neck cat p3", {0: 0}),
                      "neck.Csp_p3")
        d2 = self.dpblock(p3, "neck.downsample2", stride=2)
        p4 = self.csp(self.join("Concat", [d2, f1], "neck cat n3", {0: 0}), "neck.Csp_n3")
        d1 = self.dpblock(p4, "neck.downsample1", stride=2)
        p5 = self.csp(self.join("Concat", [d1, fpn0], "neck cat n4", {0: 0}), "neck.Csp_n4")
        top = self.dpblock(fpn0, "neck.p6_conv_1", stride=2)
        p6 = self.join("BinaryOp", [top, self.dpblock(p5, "neck.p6_conv_2", stride=2)], "neck p6 add", {0: 0})
        return [p3, p4, p5, p6]

    def _pred_channels(self, dw: NcnnLayer) -> int:
        """Output channels of the prediction conv a head branch (starting at ``dw``) ends in."""
        end = self.follow(dw, ["HardSwish", "Convolution", "HardSwish", "Convolution"])
        return int(end.get(0, 0)) if end is not None else -1

    def head_level(self, x: str, i: int) -> str:
        """``Lite_EffideHead`` level ``i``: returns the blob ``concat[sigmoid(cls), reg]``."""
        s = self.dpblock(x, f"detect.stems.{i}", stride=1)
        cls = self.dpblock(s, f"detect.cls_convs.{i}", 1, lambda l: self._pred_channels(l) not in (4, -1))
        reg = self.dpblock(s, f"detect.reg_convs.{i}", 1, lambda l: self._pred_channels(l) == 4)
        cls = self.conv(cls, f"detect.cls_preds.{i}", None, "Convolution", False)
        if self.mapping.convs[-1].act is None:  # an unfused sigmoid
            cls = self.one(cls, "Sigmoid", f"detect.cls_preds.{i} sigmoid").outputs[0]
            self.mapping.convs[-1].act = "Sigmoid"
        reg = self.conv(reg, f"detect.reg_preds.{i}", None, "Convolution", False)
        return self.join("Concat", [cls, reg], f"detect level {i} concat", {0: 0})


def map_lite_graph(graph: NcnnGraph) -> LiteMapping:
    """Which NCNN layer is which official YOLOv6-Lite module (see the module docstring).

    Raises:
        NcnnFormatError: the graph is not shaped like a YOLOv6-Lite model (names the step).
    """
    walker = _Walker(graph)
    inputs = graph.input_blobs
    if len(inputs) != 1:
        raise NcnnFormatError(f"{graph.source}: not a YOLOv6-Lite graph: {len(inputs)} Input layers")
    walker.mapping.input = inputs[0]
    _, c3, c4, c5 = walker.backbone(inputs[0])
    levels = walker.neck(c3, c4, c5)
    walker.mapping.outputs = [walker.head_level(x, i) for i, x in enumerate(levels)]
    convs = {l.name for l in graph.layers if l.type in CONV_TYPES}
    missed = sorted(convs - walker.mapped)
    if missed:
        raise NcnnFormatError(f"{graph.source}: not a YOLOv6-Lite graph: convolutions outside the "
                              f"architecture: {missed[:5]}")
    return walker.mapping


# =============================================================================================
# state dict


def identity_bn(bias: np.ndarray, eps: float = BN_EPS) -> dict[str, np.ndarray]:
    """BatchNorm buffers whose eval output is exactly ``x + bias`` (float32), for this ``eps``.

    ``running_var = 1 - eps`` rounded so that ``float32(var + eps) == 1``.
    """
    c = bias.shape[0]
    var = np.float32(1.0) - np.float32(eps)
    for _ in range(4):  # nudge by one ulp until var + eps is exactly 1
        total = np.float32(var) + np.float32(eps)
        if total == np.float32(1.0):
            break
        var = np.nextafter(var, np.float32(0 if total > 1 else 2), dtype=np.float32)
    return {"weight": np.ones(c, np.float32), "bias": bias.astype(np.float32),
            "running_mean": np.zeros(c, np.float32), "running_var": np.full(c, var, np.float32),
            "num_batches_tracked": np.array(0, dtype=np.int64)}


def lite_state_dict_from_ncnn(graph: NcnnGraph, weights: dict[str, dict[str, np.ndarray]],
                              bn_eps: float = BN_EPS) -> dict[str, np.ndarray]:
    """The official YOLOv6-Lite state dict (official key names) equivalent to an NCNN Lite model.

    Args:
        graph, weights: from :func:`repyolo.io.ncnn.read_ncnn`.
        bn_eps: the eps of the BatchNorm layers the weights will be loaded into (repyolo's
            :data:`~repyolo.nn.model.BN_EPS`, the official models' value, by default).
    Returns:
        ``{official key: array}`` in walk order: conv weights ``(out, in/groups, kh, kw)`` float32,
        identity BatchNorms carrying the folded biases (see :func:`identity_bn`), conv biases
        (0 for DPBlock convs, whose bias lives in the BN), ``num_batches_tracked`` int64 scalars.
    """
    state: dict[str, np.ndarray] = {}
    for entry in map_lite_graph(graph).convs:
        arrays = weights.get(entry.layer)
        if arrays is None or "weight" not in arrays:
            raise NcnnFormatError(f"{graph.source}: layer {entry.layer!r} has no weights in the .bin")
        w = arrays["weight"].astype(np.float32)
        b = arrays.get("bias", np.zeros(w.shape[0], np.float32)).astype(np.float32)
        state[f"{entry.conv}.weight"] = w
        if entry.bn is None:
            state[f"{entry.conv}.bias"] = b
            continue
        if not entry.conv.endswith(".block.conv"):  # DPBlock convs have bias=True
            state[f"{entry.conv}.bias"] = np.zeros_like(b)
        for k, v in identity_bn(b, bn_eps).items():
            state[f"{entry.bn}.{k}"] = v
    return state
