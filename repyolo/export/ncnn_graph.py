"""A fused repyolo model as an NCNN graph: ``torch.fx`` over the network up to the raw head outputs.

:func:`ncnn_graph` traces :class:`RawOutputs` (backbone -> neck -> per-level head outputs, see
:meth:`~repyolo.nn.head.EffiDeHead.raw_levels`) with ``torch.fx`` and writes one NCNN layer per
node, in NCNN's documented layer vocabulary. Decoding (anchor points, DFL expectation, strides)
stays outside the graph, as in the released YOLOv6-Lite NCNN files: the graph holds no input size
and runs at any size that is a multiple of the largest stride.

The whole vocabulary of the fused models of every family (v3 incl. BiC / ConvTranspose and DFL
heads, P6, v2, base, MBLA, QARepVGG, Lite):

=================================  =============================================================
torch                              NCNN
=================================  =============================================================
``Conv2d`` (groups 1 / > 1)        ``Convolution`` / ``ConvolutionDepthWise`` (ReLU and sigmoid
                                   that only read it are fused: ``9=1`` / ``9=4``)
``ConvTranspose2d`` (groups 1)     ``Deconvolution``
``MaxPool2d``                      ``Pooling`` (max, explicit padding: ``5=1``)
``AdaptiveAvgPool2d(1)``           ``Pooling`` (global average)
``Upsample`` (nearest, scale)      ``Interp``
``ReLU`` ``SiLU`` ``Hardswish``    ``ReLU`` ``Swish`` ``HardSwish`` (alpha 1/6, beta 0.5)
``Hardsigmoid`` ``sigmoid``        ``HardSigmoid`` (alpha 1/6, beta 0.5) ``Sigmoid``
``cat(dim=1)``                     ``Concat`` (axis 0: channels of a ``(C, H, W)`` blob)
``x + y``, ``x * y``, ``a * x``    ``BinaryOp`` add / mul, with a scalar (``1=1 2=a``)
``chunk`` / ``split`` (dim 1)      ``Slice`` on channels
``channel_shuffle``                ``ShuffleChannel``
``Identity``                       (nothing: the blob passes through)
=================================  =============================================================

Anything else raises a one-line :class:`~repyolo.errors.RepyoloError` naming the node. A blob read
by several layers goes through a ``Split`` (:func:`~repyolo.io.ncnn.insert_splits`).
"""
from __future__ import annotations

import operator

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp

from repyolo.errors import RepyoloError
from repyolo.io.ncnn import NcnnGraph, NcnnLayer, insert_splits
from repyolo.nn.lite import channel_shuffle

INPUT_BLOB = "in0"
FUSED_ACTIVATIONS = {"ReLU": 1, "Sigmoid": 4}  # NCNN convolution activation_type (param 9)
CONV_TYPES = ("Convolution", "ConvolutionDepthWise")


class RawOutputs(nn.Module):
    """``(B, 3, H, W) -> tuple`` of per-level ``(B, nc + n_reg, H_i, W_i)`` (see ``raw_levels``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        m = self.model
        return tuple(m.detect.raw_levels(m.neck(m.backbone(x))))


def trace(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """``RawOutputs(model)`` as an fx graph (``channel_shuffle`` kept as one node), every node
    annotated with its output shape for ``example`` (``node.meta['tensor_meta']``)."""
    root = RawOutputs(model).eval()
    try:
        graph = fx.Tracer(autowrap_functions=(channel_shuffle,)).trace(root)
    except Exception as exc:  # fx explains what it cannot trace in its message
        raise RepyoloError(f"NCNN export: torch.fx cannot trace this model ({str(exc).splitlines()[0][:200]})") \
            from None
    gm = fx.GraphModule(root, graph)
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    return gm


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


class _Emitter:
    """Walks the fx graph in order and appends NCNN layers; ``blob[node]`` is the NCNN blob (or
    the Python scalar, for scalar parameters) a node's value lives in."""

    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.graph = NcnnGraph()
        self.weights: dict[str, dict[str, np.ndarray]] = {}
        self.blob: dict[fx.Node, object] = {}
        self.names: set[str] = {"input"}  # the Input layer's name

    # ------------------------------------------------------------------ helpers

    def _name(self, node: fx.Node) -> str:
        base = node.name.removeprefix("model_")
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def _in(self, node: fx.Node, arg) -> str:
        value = self.blob.get(arg)
        if not isinstance(value, str):
            raise RepyoloError(f"NCNN export: node {node.name!r} reads {arg!r}, which is not a tensor of the graph")
        return value

    def _shape(self, node: fx.Node) -> tuple[int, ...]:
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            raise RepyoloError(f"NCNN export: no shape recorded for node {node.name!r}")
        return tuple(meta.shape)

    def add(self, node: fx.Node, type_: str, inputs: list[str], params: dict | None = None,
            weights: dict[str, np.ndarray] | None = None, n_out: int = 1) -> NcnnLayer:
        name = self._name(node)
        outputs = [name] if n_out == 1 else [f"{name}_{i}" for i in range(n_out)]
        layer = self.graph.add(type_, name, inputs, outputs, params or {})
        if weights:
            self.weights[name] = weights
        self.blob[node] = outputs[0] if n_out == 1 else outputs
        return layer

    def unsupported(self, node: fx.Node, what: str) -> RepyoloError:
        return RepyoloError(f"NCNN export: node {node.name!r} ({what}) has no NCNN equivalent in this exporter")

    # ------------------------------------------------------------------ modules

    def conv(self, node: fx.Node, m: nn.Conv2d) -> None:
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise self.unsupported(node, f"Conv2d padding {m.padding!r} / {m.padding_mode}")
        w = _np(m.weight)  # (out, in / groups, kh, kw)
        p = {0: w.shape[0], 1: w.shape[3], 11: w.shape[2], 2: m.dilation[1], 12: m.dilation[0], 3: m.stride[1],
             13: m.stride[0], 4: m.padding[1], 14: m.padding[0], 5: int(m.bias is not None), 6: int(w.size)}
        arrays = {"weight": w}
        if m.bias is not None:
            arrays["bias"] = _np(m.bias)
        type_ = "Convolution"
        if m.groups > 1:
            type_, p[7] = "ConvolutionDepthWise", int(m.groups)
        self.add(node, type_, [self._in(node, node.args[0])], p, arrays)

    def deconv(self, node: fx.Node, m: nn.ConvTranspose2d) -> None:
        if m.groups != 1 or any(m.output_padding) or m.padding_mode != "zeros":
            # the ncnn runtime computes grouped DeconvolutionDepthWise wrong for some widths (io/ncnn.py)
            raise self.unsupported(node, "ConvTranspose2d with groups, output_padding or non-zero padding mode")
        w = _np(m.weight)  # (in, out, kh, kw)
        p = {0: w.shape[1], 1: w.shape[3], 11: w.shape[2], 2: m.dilation[1], 12: m.dilation[0], 3: m.stride[1],
             13: m.stride[0], 4: m.padding[1], 14: m.padding[0], 5: int(m.bias is not None), 6: int(w.size)}
        arrays = {"weight": w, **({"bias": _np(m.bias)} if m.bias is not None else {})}
        self.add(node, "Deconvolution", [self._in(node, node.args[0])], p, arrays)

    def pool(self, node: fx.Node, m: nn.Module) -> None:
        x = self._in(node, node.args[0])
        if isinstance(m, nn.MaxPool2d):
            k, s, pad = (v if isinstance(v, tuple) else (v, v) for v in (m.kernel_size, m.stride, m.padding))
            if m.ceil_mode or m.dilation not in (1, (1, 1)):
                raise self.unsupported(node, "MaxPool2d with ceil_mode or dilation")
            self.add(node, "Pooling", [x], {0: 0, 1: k[1], 11: k[0], 2: s[1], 12: s[0], 3: pad[1], 13: pad[0],
                                            14: pad[1], 15: pad[0], 5: 1})
        elif isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1)):
            self.add(node, "Pooling", [x], {0: 1, 4: 1})
        else:
            raise self.unsupported(node, type(m).__name__)

    def upsample(self, node: fx.Node, m: nn.Upsample) -> None:
        scale = m.scale_factor
        if m.mode != "nearest" or scale is None:
            raise self.unsupported(node, f"Upsample mode {m.mode!r} / size {m.size}")
        sh, sw = (scale, scale) if not isinstance(scale, tuple) else scale
        self.add(node, "Interp", [self._in(node, node.args[0])], {0: 1, 1: float(sh), 2: float(sw)})

    def activation(self, node: fx.Node, kind: str) -> None:
        params = {0: 1.0 / 6.0, 1: 0.5} if kind in ("HardSwish", "HardSigmoid") else {}
        self.add(node, kind, [self._in(node, node.args[0])], params)

    def call_module(self, node: fx.Node) -> None:
        m = self.gm.get_submodule(node.target)
        if isinstance(m, nn.Identity):
            self.blob[node] = self._in(node, node.args[0])
        elif isinstance(m, nn.Conv2d):
            self.conv(node, m)
        elif isinstance(m, nn.ConvTranspose2d):
            self.deconv(node, m)
        elif isinstance(m, (nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
            self.pool(node, m)
        elif isinstance(m, nn.Upsample):
            self.upsample(node, m)
        elif type(m) in _ACTIVATION_MODULES:
            self.activation(node, _ACTIVATION_MODULES[type(m)])
        else:
            raise self.unsupported(node, f"module {node.target} of type {type(m).__name__}")

    # ------------------------------------------------------------------ functions and methods

    def binary(self, node: fx.Node, op: int) -> None:
        a, b = (self.blob.get(x, x) if isinstance(x, fx.Node) else x for x in node.args[:2])
        if isinstance(a, str) and isinstance(b, str):
            self.add(node, "BinaryOp", [a, b], {0: op})
            return
        tensor, scalar = (a, b) if isinstance(a, str) else (b, a)
        if not isinstance(tensor, str) or not isinstance(scalar, (int, float)):
            raise self.unsupported(node, f"{node.target} of {type(a).__name__} and {type(b).__name__}")
        self.add(node, "BinaryOp", [tensor], {0: op, 1: 1, 2: float(scalar)})

    def slice_channels(self, node: fx.Node, sizes: list[int]) -> None:
        self.add(node, "Slice", [self._in(node, node.args[0])], {0: sizes, 1: 0}, n_out=len(sizes))

    def _dim(self, node: fx.Node, position: int, default: int = 0) -> int:
        dim = node.kwargs.get("dim", node.args[position] if len(node.args) > position else default)
        return dim + len(self._shape(node.args[0])) if dim < 0 else dim

    def call(self, node: fx.Node) -> None:
        fn = node.target
        if fn in (torch.cat, "cat"):
            tensors = node.args[0]
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            if dim not in (1, -3):
                raise self.unsupported(node, f"cat along dim {dim}")
            self.add(node, "Concat", [self._in(node, t) for t in tensors], {0: 0})
        elif fn in (operator.add, torch.add, "add"):
            self.binary(node, 0)
        elif fn in (operator.mul, torch.mul, "mul"):
            self.binary(node, 2)
        elif fn in (torch.sigmoid, "sigmoid"):
            self.activation(node, "Sigmoid")
        elif fn == "chunk":
            n = node.kwargs.get("chunks", node.args[1] if len(node.args) > 1 else None)
            if self._dim(node, 2) != 1:
                raise self.unsupported(node, "chunk along a dim other than channels")
            channels = self._shape(node.args[0])[1]
            if channels % n:
                raise self.unsupported(node, f"chunk of {channels} channels into {n}")
            self.slice_channels(node, [-233] * n)
        elif fn == "split":
            size = node.kwargs.get("split_size", node.args[1] if len(node.args) > 1 else None)
            if self._dim(node, 2) != 1:
                raise self.unsupported(node, "split along a dim other than channels")
            channels = self._shape(node.args[0])[1]
            sizes = list(size) if isinstance(size, (list, tuple)) else \
                [size] * (channels // size) + ([channels % size] if channels % size else [])
            self.slice_channels(node, [int(s) for s in sizes])
        elif fn is operator.getitem:
            outs = self.blob.get(node.args[0])
            if not isinstance(outs, list) or not isinstance(node.args[1], int):
                raise self.unsupported(node, "indexing other than picking a chunk")
            self.blob[node] = outs[node.args[1]]
        elif fn is channel_shuffle:
            groups = node.kwargs.get("groups", node.args[1] if len(node.args) > 1 else None)
            self.add(node, "ShuffleChannel", [self._in(node, node.args[0])], {0: int(groups)})
        else:
            raise self.unsupported(node, f"{node.op} {getattr(fn, '__name__', fn)}")

    # ------------------------------------------------------------------ walk

    def run(self) -> tuple[NcnnGraph, dict[str, dict[str, np.ndarray]], list[str]]:
        outputs: list[str] = []
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.graph.add("Input", "input", [], [INPUT_BLOB], {})
                self.blob[node] = INPUT_BLOB
            elif node.op == "get_attr":
                value = self.gm
                for part in node.target.split("."):
                    value = getattr(value, part, None)
                if not isinstance(value, torch.Tensor) or value.numel() != 1:
                    raise self.unsupported(node, f"tensor constant {node.target}")
                self.blob[node] = float(value.detach().reshape(-1)[0])
            elif node.op == "call_module":
                self.call_module(node)
            elif node.op in ("call_function", "call_method"):
                self.call(node)
            elif node.op == "output":
                outputs = [self._in(node, o) for o in node.args[0]]
        return self.graph, self.weights, outputs


_ACTIVATION_MODULES = {nn.ReLU: "ReLU", nn.SiLU: "Swish", nn.Hardswish: "HardSwish", nn.Hardsigmoid: "HardSigmoid",
                       nn.Sigmoid: "Sigmoid"}


def fuse_activations(graph: NcnnGraph) -> NcnnGraph:
    """Fold a ``ReLU`` / ``Sigmoid`` layer into the convolution before it (``9=1`` / ``9=4``) when it
    is that convolution's only reader; the convolution takes over the activation's output blob."""
    producer = graph.producers()
    readers = graph.consumers()
    dropped = set()
    for layer in graph.layers:
        conv = producer.get(layer.inputs[0]) if len(layer.inputs) == 1 else None
        if (layer.type in FUSED_ACTIVATIONS and not layer.params and conv is not None and conv.type in CONV_TYPES
                and len(readers.get(layer.inputs[0], [])) == 1 and not conv.get(9, 0)):
            conv.params[9] = FUSED_ACTIVATIONS[layer.type]
            conv.outputs = list(layer.outputs)
            for b in layer.outputs:
                producer[b] = conv
            dropped.add(id(layer))
    graph.layers = [layer for layer in graph.layers if id(layer) not in dropped]
    return graph


def _rename_blobs(graph: NcnnGraph, names: dict[str, str]) -> None:
    for layer in graph.layers:
        layer.inputs = [names.get(b, b) for b in layer.inputs]
        layer.outputs = [names.get(b, b) for b in layer.outputs]


def ncnn_graph(model: nn.Module, example: torch.Tensor) -> tuple[NcnnGraph, dict[str, dict[str, np.ndarray]],
                                                                   list[str]]:
    """The NCNN graph of a fused model's raw outputs.

    Args:
        model: a fused, eval-mode :class:`~repyolo.nn.model.YOLOv6` (float32, CPU).
        example: a ``(1, 3, H, W)`` input, used only to record channel counts (the graph is size-agnostic).
    Returns:
        ``(graph, weights, outputs)``: the graph (input blob ``in0``, ``Split`` layers inserted),
        ``{layer: {array: ndarray}}`` in the layouts :func:`repyolo.io.ncnn.write_ncnn` takes, and the
        output blobs ``out0, out1, ...``, one per level, finest first.
    """
    gm = trace(model, example)
    graph, weights, outputs = _Emitter(gm).run()
    if len(set(outputs)) != len(outputs) or INPUT_BLOB in outputs:
        raise RepyoloError("NCNN export: two head levels share an output blob")
    graph = fuse_activations(graph)
    names = {b: f"out{i}" for i, b in enumerate(outputs)}
    _rename_blobs(graph, names)
    return insert_splits(graph), weights, [names[b] for b in outputs]
