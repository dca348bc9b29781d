"""NCNN ``.bin`` files: which arrays each layer type stores (:func:`slots_of`), reading them into torch
layouts, writing them back (fp32 / fp16 / bf16), and the pair (:func:`read_ncnn`, :func:`write_ncnn`).
The formats are described in :mod:`repyolo.io.ncnn`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repyolo.io.ncnn.param import (
    STORAGES,
    TAG_BF16,
    TAG_FP16,
    TAG_FP32,
    TAG_FP32_SCALED,
    TAG_INT8,
    NcnnFormatError,
    NcnnGraph,
    NcnnLayer,
    format_param,
    read_param,
)
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

# =============================================================================================
# .bin: which arrays each layer type stores


@dataclass(frozen=True)
class Slot:
    """One array a layer stores in the ``.bin``.

    ``key``: its name in :func:`read_bin`'s result; ``count``: number of elements;
    ``tagged``: starts with a storage tag (quantizable weights); ``shape``: the torch-layout
    shape it is returned in; ``ncnn_shape``: for Deconvolution weights, the ``(g, out/g, in/g,
    kh, kw)`` shape of the file data (``None``: the file order is ``shape``'s).
    """

    key: str
    count: int
    tagged: bool
    shape: tuple[int, ...]
    ncnn_shape: tuple[int, ...] | None = None


def _ints(layer: NcnnLayer, source: str, **keys: tuple[int, int]) -> dict[str, int]:
    """Integer params ``name=(id, default)`` of ``layer`` (NcnnFormatError if not an int)."""
    out = {}
    for name, (key, default) in keys.items():
        v = layer.get(key, default)
        if not isinstance(v, int):
            raise NcnnFormatError(f"{layer.where(source)}: param {key} ({name}) must be an integer, got {v!r}")
        out[name] = v
    return out


def _divide(total: int, part: int, what: str, layer: NcnnLayer, source: str) -> int:
    """``total / part`` when it is a positive whole number, else an error naming ``what``."""
    if part <= 0 or total <= 0 or total % part:
        raise NcnnFormatError(f"{layer.where(source)}: {what} {total} is not a positive multiple of {part}")
    return total // part


def _conv_slots(layer: NcnnLayer, source: str, depthwise: bool, dims: int) -> list[Slot]:
    """Convolution[DepthWise][1D]: weight ``(out, in/g, [kh,] kw)``, bias, int8 scales."""
    p = _ints(layer, source, out=(0, 0), kw=(1, 0), size=(6, 0), bias=(5, 0), int8=(8, 0), dynamic=(19, 0),
              group=(7, 1))
    kh = _ints(layer, source, kh=(11, p["kw"]))["kh"] if dims == 2 else 1
    if p["dynamic"]:
        return []
    group = p["group"] if depthwise else 1
    kernel = (kh, p["kw"]) if dims == 2 else (p["kw"],)
    in_per_group = _divide(p["size"], p["out"] * kh * p["kw"], "weight_data_size", layer, source)
    slots = [Slot("weight", p["size"], True, (p["out"], in_per_group, *kernel))]
    if p["bias"]:
        slots.append(Slot("bias", p["out"], False, (p["out"],)))
    term = p["int8"]
    if term and not depthwise:
        slots += [Slot("weight_int8_scales", p["out"], False, (p["out"],)),
                  Slot("input_int8_scales", 1, False, (1,))]
    elif term in (1, 101):
        slots += [Slot("weight_int8_scales", group, False, (group,)), Slot("input_int8_scales", 1, False, (1,))]
    elif term in (2, 102):
        slots += [Slot("weight_int8_scales", 1, False, (1,)), Slot("input_int8_scales", 1, False, (1,))]
    if term > 100:
        slots.append(Slot("output_int8_scales", 1, False, (1,)))
    return slots


def _deconv_slots(layer: NcnnLayer, source: str, depthwise: bool) -> list[Slot]:
    """Deconvolution[DepthWise]: NCNN stores ``(g, out/g, in/g, kh, kw)``; returned as torch's
    ConvTranspose2d ``(in, out/g, kh, kw)``."""
    p = _ints(layer, source, out=(0, 0), kw=(1, 0), size=(6, 0), bias=(5, 0), group=(7, 1), dynamic=(28, 0))
    kh = _ints(layer, source, kh=(11, p["kw"]))["kh"]
    if p["dynamic"]:
        return []
    g = p["group"] if depthwise else 1
    out_g = _divide(p["out"], g, "num_output", layer, source)
    in_g = _divide(p["size"], p["out"] * kh * p["kw"], "weight_data_size", layer, source)
    slots = [Slot("weight", p["size"], True, (g * in_g, out_g, kh, p["kw"]), (g, out_g, in_g, kh, p["kw"]))]
    if p["bias"]:
        slots.append(Slot("bias", p["out"], False, (p["out"],)))
    return slots


def _innerproduct_slots(layer: NcnnLayer, source: str) -> list[Slot]:
    """InnerProduct: weight ``(out, in)``, bias, int8 scales."""
    p = _ints(layer, source, out=(0, 0), bias=(1, 0), size=(2, 0), int8=(8, 0))
    n_in = _divide(p["size"], p["out"], "weight_data_size", layer, source)
    slots = [Slot("weight", p["size"], True, (p["out"], n_in))]
    if p["bias"]:
        slots.append(Slot("bias", p["out"], False, (p["out"],)))
    if p["int8"]:
        slots += [Slot("weight_int8_scales", p["out"], False, (p["out"],)), Slot("input_int8_scales", 1, False, (1,))]
    return slots


def _raw_slots(keys: Iterable[str], n: int) -> list[Slot]:
    return [Slot(k, n, False, (n,)) for k in keys]


def _batchnorm_slots(layer: NcnnLayer, source: str) -> list[Slot]:
    """BatchNorm: slope, mean, var, bias ``(channels,)`` each (``y = slope*(x-mean)/sqrt(var+eps)+bias``)."""
    return _raw_slots(("slope", "mean", "var", "bias"), _ints(layer, source, c=(0, 0))["c"])


def _scale_slots(layer: NcnnLayer, source: str) -> list[Slot]:
    """Scale: scale (absent when size is -233: taken from a second input) and bias."""
    p = _ints(layer, source, size=(0, 0), bias=(1, 0))
    if p["size"] == -233:
        return []
    return _raw_slots(("scale", "bias") if p["bias"] else ("scale",), p["size"])


def _norm_slots(layer: NcnnLayer, source: str, channels_key: int, affine_key: int) -> list[Slot]:
    """InstanceNorm / LayerNorm / GroupNorm: gamma, beta when affine."""
    p = _ints(layer, source, c=(channels_key, 0), affine=(affine_key, 1))
    return _raw_slots(("gamma", "beta"), p["c"]) if p["affine"] else []


def _memorydata_slots(layer: NcnnLayer, source: str) -> list[Slot]:
    """MemoryData: one raw array of shape ``(c, d, h, w)`` without the zero dims."""
    p = _ints(layer, source, w=(0, 0), h=(1, 0), c=(2, 0), d=(11, 0))
    if p["d"]:
        shape = (p["c"], p["d"], p["h"], p["w"])
    elif p["c"]:
        shape = (p["c"], p["h"], p["w"])
    elif p["h"]:
        shape = (p["h"], p["w"])
    else:
        shape = (max(p["w"], 1),)
    return [Slot("data", int(np.prod(shape)), False, shape)]


def _embed_slots(layer: NcnnLayer, source: str) -> list[Slot]:
    """Embed: weight ``(input_dim, num_output)`` (torch Embedding layout), bias."""
    p = _ints(layer, source, out=(0, 0), n_in=(1, 0), bias=(2, 0), size=(3, 0))
    slots = [Slot("weight", p["size"], True, (p["n_in"], _divide(p["size"], max(p["n_in"], 1), "weight_data_size",
                                                                      layer, source)))]
    if p["bias"]:
        slots.append(Slot("bias", p["out"], False, (p["out"],)))
    return slots


# Every plan was checked against the ncnn runtime 1.0.20261020 (write -> run -> compare with torch).
# Note: that runtime computes DeconvolutionDepthWise wrong for channels per group not a multiple
# of 4 (pure depthwise, groups == channels, is right); the layout here is the documented one.
SLOT_PLANS: dict[str, Callable[[NcnnLayer, str], list[Slot]]] = {
    "Convolution": lambda l, s: _conv_slots(l, s, depthwise=False, dims=2),
    "ConvolutionDepthWise": lambda l, s: _conv_slots(l, s, depthwise=True, dims=2),
    "Convolution1D": lambda l, s: _conv_slots(l, s, depthwise=False, dims=1),
    "ConvolutionDepthWise1D": lambda l, s: _conv_slots(l, s, depthwise=True, dims=1),
    "Deconvolution": lambda l, s: _deconv_slots(l, s, depthwise=False),
    "DeconvolutionDepthWise": lambda l, s: _deconv_slots(l, s, depthwise=True),
    "InnerProduct": _innerproduct_slots,
    "BatchNorm": _batchnorm_slots,
    "Scale": _scale_slots,
    "Bias": lambda l, s: _raw_slots(("bias",), _ints(l, s, n=(0, 0))["n"]),
    "PReLU": lambda l, s: _raw_slots(("slope",), _ints(l, s, n=(0, 0))["n"]),
    "MemoryData": _memorydata_slots,
    "Embed": _embed_slots,
    "InstanceNorm": lambda l, s: _norm_slots(l, s, 0, 2),
    "LayerNorm": lambda l, s: _norm_slots(l, s, 0, 2),
    "GroupNorm": lambda l, s: _norm_slots(l, s, 1, 3),
    "Padding": lambda l, s: _raw_slots(("pad_values",), _ints(l, s, n=(6, 0))["n"]) if l.get(6, 0) else [],
    "Normalize": lambda l, s: _raw_slots(("scale",), _ints(l, s, n=(3, 0))["n"]),
}

# layer types that store nothing in the .bin (the common ones; anything else is refused, since
# guessing would misalign every array after it)
WEIGHTLESS = frozenset((
    "AbsVal", "ArgMax", "BinaryOp", "BNLL", "Cast", "Clip", "Concat", "CopyTo", "Crop", "CumulativeSum",
    "DetectionOutput", "Dropout", "Einsum", "Eltwise", "ELU", "Erf", "Exp", "ExpandDims", "Flatten", "Flip",
    "Fold", "GELU", "GLU", "GridSample", "HardSigmoid", "HardSwish", "Input", "Interp", "Log", "LRN", "MatMul",
    "Mish", "MVN", "Noop", "Packing", "Permute", "PixelShuffle", "Pooling", "Pooling1D", "Pooling3D", "Power",
    "PriorBox", "Proposal", "PSROIPooling", "Quantize", "Reduction", "ReLU", "Reorg", "Reshape", "ROIAlign",
    "ROIPooling", "SELU", "Shrink", "ShuffleChannel", "Sigmoid", "Slice", "Softmax", "Softplus", "Split",
    "SPP", "Squeeze", "StatisticsPooling", "Swish", "TanH", "Threshold", "Tile", "UnaryOp", "Unfold",
    "Yolov3DetectionOutput", "YoloDetectionOutput",
))
# not handled (arrays depend on params in ways not needed here): Dequantize, Requantize,
# DeformableConv2D, Convolution3D, RNN / LSTM / GRU, MultiHeadAttention, Gemm, ...
INT8_TYPES = ("Convolution", "ConvolutionDepthWise", "InnerProduct")  # int8 weights when param 8 != 0


def slots_of(layer: NcnnLayer, source: str = "<memory>") -> list[Slot]:
    """The arrays ``layer`` stores in the ``.bin``, in file order.

    Raises:
        NcnnFormatError: the type is not one this module knows the weight order of.
    """
    if layer.type in SLOT_PLANS:
        return SLOT_PLANS[layer.type](layer, source)
    if layer.type in WEIGHTLESS:
        return []
    raise NcnnFormatError(f"{layer.where(source)}: unsupported layer type for the .bin reader/writer "
                          f"(its weight order is unknown here)")


# =============================================================================================
# .bin: read


def _align4(n: int) -> int:
    return (n + 3) // 4 * 4


class _BinCursor:
    """Reads consecutive arrays from the ``.bin`` bytes, with errors naming the layer."""

    def __init__(self, data: bytes, source: str):
        self.data = memoryview(data)
        self.pos = 0
        self.source = source

    def take(self, n: int, layer: NcnnLayer, key: str) -> memoryview:
        """The next ``n`` bytes (NcnnFormatError when the file ends first)."""
        left = len(self.data) - self.pos
        if n > left:
            raise NcnnFormatError(f"{self.source}: file too short while reading layer {layer.name} "
                                  f"({layer.type} {key}: needs {n} bytes at offset {self.pos}, {left} left)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def raw(self, count: int, layer: NcnnLayer, key: str) -> np.ndarray:
        """``count`` raw little-endian float32."""
        return np.frombuffer(self.take(4 * count, layer, key), dtype="<f4").astype(np.float32)

    def tagged(self, count: int, layer: NcnnLayer, key: str) -> tuple[np.ndarray, str]:
        """A quantizable array: ``(values, storage)``; int8 values are returned undequantized."""
        tag = int(np.frombuffer(self.take(4, layer, key + " storage tag"), dtype="<u4")[0])
        if tag == TAG_FP16:
            buf = self.take(_align4(2 * count), layer, key)
            return np.frombuffer(buf, dtype="<f2", count=count).astype(np.float32), "fp16"
        if tag == TAG_BF16:
            buf = self.take(_align4(2 * count), layer, key)
            bits = np.frombuffer(buf, dtype="<u2", count=count).astype(np.uint32) << 16
            return bits.view(np.float32).copy(), "bf16"
        if tag == TAG_INT8:
            buf = self.take(_align4(count), layer, key)
            return np.frombuffer(buf, dtype=np.int8, count=count).astype(np.float32), "int8"
        if tag in (TAG_FP32, TAG_FP32_SCALED):
            return self.raw(count, layer, key), "fp32"
        table = self.raw(256, layer, key + " quantization table")
        index = np.frombuffer(self.take(_align4(count), layer, key), dtype=np.uint8, count=count)
        return table[index], "table"


def _dequantize_int8(arrays: dict[str, np.ndarray], layer: NcnnLayer, source: str) -> None:
    """Replace int8 weight values by ``int8 / scale`` (per output channel, per group, or one scale)."""
    scales = arrays.get("weight_int8_scales")
    if scales is None:
        raise NcnnFormatError(f"{layer.where(source)}: int8 weights without int8 scales (param 8 is 0)")
    w = arrays["weight"]
    per = scales.reshape(-1, *([1] * (w.ndim - 1)))
    if per.shape[0] not in (1, w.shape[0]):
        per = np.repeat(per, w.shape[0] // per.shape[0], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        arrays["weight"] = np.where(per != 0, w / per, 0.0).astype(np.float32)


def _to_torch_layout(values: np.ndarray, slot: Slot) -> np.ndarray:
    """File order -> the slot's torch-layout shape."""
    if slot.ncnn_shape is None:
        return values.reshape(slot.shape)
    # deconvolution: file (g, out/g, in/g, kh, kw) -> torch (g * in/g, out/g, kh, kw)
    return values.reshape(slot.ncnn_shape).transpose(0, 2, 1, 3, 4).reshape(slot.shape)


def _read_layer(cursor: _BinCursor, layer: NcnnLayer, param_source: str
                ) -> tuple[dict[str, np.ndarray], str | None]:
    """Arrays of one layer (torch layouts) and the storage of its quantizable weight."""
    arrays: dict[str, np.ndarray] = {}
    storage = None
    slots = slots_of(layer, param_source)
    for slot in slots:
        if slot.tagged:
            values, storage = cursor.tagged(slot.count, layer, slot.key)
        else:
            values = cursor.raw(slot.count, layer, slot.key)
        arrays[slot.key] = values
    if storage == "int8":
        _dequantize_int8(arrays, layer, param_source)
    for slot in slots:
        arrays[slot.key] = _to_torch_layout(arrays[slot.key], slot)
    return arrays, storage


def parse_bin(data: bytes, graph: NcnnGraph, source: str = "<bytes>"
              ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Split the bytes of a ``.bin`` into per-layer arrays, following ``graph``.

    Returns:
        ``(weights, storage)``: ``weights[layer name][array name]`` float32 arrays in torch
        layouts (only layers that store something), ``storage[layer name]`` the storage of the
        layer's quantizable weight (``fp32`` / ``fp16`` / ``bf16`` / ``int8`` / ``table``).
    Raises:
        NcnnFormatError: the file ends inside a layer, or bytes are left after the last layer.
    """
    cursor = _BinCursor(data, source)
    weights: dict[str, dict[str, np.ndarray]] = {}
    storage: dict[str, str] = {}
    for layer in graph.layers:
        try:
            arrays, kind = _read_layer(cursor, layer, graph.source)
        except NcnnFormatError as e:
            misfit = _first_misfit(data, graph, source)
            raise (misfit or e) from None
        if arrays:
            if layer.name in weights:
                raise NcnnFormatError(f"{graph.source}:{layer.line}: layer name {layer.name!r} used twice by "
                                      f"layers with weights")
            weights[layer.name] = arrays
        if kind:
            storage[layer.name] = kind
    left = len(data) - cursor.pos
    if left:
        raise _first_misfit(data, graph, source) or NcnnFormatError(
            f"{source}: {left} bytes left after the last layer (read {cursor.pos} of {len(data)}): the .bin "
            f"does not match {graph.source}")
    return weights, storage


KNOWN_TAGS = (TAG_FP32, TAG_FP16, TAG_BF16, TAG_INT8, TAG_FP32_SCALED)


def _first_misfit(data: bytes, graph: NcnnGraph, source: str) -> NcnnFormatError | None:
    """When a ``.bin`` does not fit ``graph``: the error naming the first layer whose data does not
    have the size its params declare, or ``None`` when that cannot be told (a plain truncation).

    Every quantizable array starts with a storage tag; a file written for other params puts the
    next tag at a different offset, so the first unknown tag (NCNN's rarely used 256-entry-table
    storage counts as unknown here) follows the first misfit layer: the last one read before it.
    """
    cursor = _BinCursor(data, source)
    last = None  # the last layer that stores something, read under this graph's params
    for layer in graph.layers:
        slots = slots_of(layer, graph.source)
        for slot in slots:
            if slot.tagged:
                if len(data) - cursor.pos < 4:
                    return None
                tag = int(np.frombuffer(data, dtype="<u4", count=1, offset=cursor.pos)[0])
                if tag not in KNOWN_TAGS:
                    culprit = last or layer
                    why = (f"its data in the .bin is not the size its params declare (unknown storage tag "
                           f"0x{tag:08x} at offset {cursor.pos} right after it)") if last else \
                        f"unknown storage tag 0x{tag:08x} at offset {cursor.pos}"
                    return NcnnFormatError(f"{source}: does not match {graph.source}: first mismatching layer "
                                           f"{culprit.name!r} ({culprit.type}, param line {culprit.line}): {why}")
                width = {TAG_FP16: 2, TAG_BF16: 2, TAG_INT8: 1}.get(tag, 4)
                cursor.pos += 4 + _align4(width * slot.count)
            else:
                cursor.pos += 4 * slot.count
            if cursor.pos > len(data):
                return None
        if slots:
            last = layer
    return None


def read_bin(path: str | os.PathLike, graph: NcnnGraph) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Read a ``.bin`` file that pairs with ``graph`` (see :func:`parse_bin`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise NcnnFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_bin(data, graph, str(path))


@dataclass
class NcnnModel:
    """A ``.param`` / ``.bin`` pair in memory (see :func:`read_ncnn`)."""

    graph: NcnnGraph
    weights: dict[str, dict[str, np.ndarray]]
    storage: dict[str, str]


def read_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike | None = None) -> NcnnModel:
    """Read a model; ``bin_path`` defaults to the param path with the suffix ``.bin``."""
    param_path = Path(param_path)
    bin_path = Path(bin_path) if bin_path is not None else param_path.with_suffix(".bin")
    graph = read_param(param_path)
    weights, storage = read_bin(bin_path, graph)
    LOGGER.debug("read %s: %d layers, %d with weights", param_path, len(graph.layers), len(weights))
    return NcnnModel(graph, weights, storage)


# =============================================================================================
# .bin: write


def _from_torch_layout(array: np.ndarray, slot: Slot) -> np.ndarray:
    """The slot's torch-layout array -> flat values in file order."""
    a = np.asarray(array, dtype=np.float32).reshape(slot.shape)
    if slot.ncnn_shape is not None:
        g, out_g, in_g, kh, kw = slot.ncnn_shape
        a = a.reshape(g, in_g, out_g, kh, kw).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(a).reshape(-1)


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (_align4(len(b)) - len(b))


def _encode_tagged(values: np.ndarray, storage: str, layer: NcnnLayer) -> bytes:
    """Storage tag + data of a quantizable array stored as ``fp32`` / ``fp16`` / ``bf16``."""
    if storage == "fp32":
        return np.uint32(TAG_FP32).tobytes() + values.astype("<f4").tobytes()
    if storage == "fp16":
        if np.abs(values).max(initial=0.0) > 65504.0:
            raise NcnnFormatError(f"layer {layer.name!r}: weights exceed the fp16 range; write them as fp32")
        return np.uint32(TAG_FP16).tobytes() + _pad4(values.astype("<f2").tobytes())
    if storage == "bf16":
        bits = values.astype(np.float32).view(np.uint32)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")  # round to nearest even
        return np.uint32(TAG_BF16).tobytes() + _pad4(rounded.tobytes())
    raise ValueError(f"unknown storage {storage!r} (one of {STORAGES})")


def _encode_int8(weight: np.ndarray, scales: np.ndarray) -> bytes:
    """Storage tag + int8 data ``round(weight * scale)``; ``weight`` in torch layout (output
    channels first), ``scales`` one per output channel, per group, or a single one."""
    s = np.asarray(scales, dtype=np.float32).reshape(-1)
    s = np.repeat(s, weight.shape[0] // s.size).reshape(-1, *([1] * (weight.ndim - 1)))
    q = np.clip(np.rint(weight * s), -127, 127).astype(np.int8)
    return np.uint32(TAG_INT8).tobytes() + _pad4(q.tobytes())


def _layer_bytes(layer: NcnnLayer, arrays: Mapping[str, np.ndarray], storage: str, source: str) -> bytes:
    """The ``.bin`` bytes of one layer."""
    chunks = []
    for slot in slots_of(layer, source):
        if slot.key not in arrays:
            raise NcnnFormatError(f"layer {layer.name!r} ({layer.type}): missing array {slot.key!r}")
        a = np.asarray(arrays[slot.key], dtype=np.float32)
        if a.size != slot.count:
            raise NcnnFormatError(f"layer {layer.name!r} ({layer.type}): {slot.key} has {a.size} values, "
                                  f"its params say {slot.count} {slot.shape}")
        flat = _from_torch_layout(a, slot)
        if not slot.tagged:
            chunks.append(flat.astype("<f4").tobytes())
        elif layer.type in INT8_TYPES and layer.get(8, 0):
            chunks.append(_encode_int8(a.reshape(slot.shape), arrays["weight_int8_scales"]))
        else:
            chunks.append(_encode_tagged(flat, storage, layer))
    return b"".join(chunks)


def format_bin(graph: NcnnGraph, weights: Mapping[str, Mapping[str, np.ndarray]],
               storage: str | Mapping[str, str] = "fp16") -> bytes:
    """The bytes of the ``.bin`` for ``graph``.

    Args:
        weights: ``{layer name: {array name: array}}`` in the layouts :func:`read_bin` returns.
        storage: how quantizable weights are stored: ``"fp16"`` (NCNN's default), ``"fp32"``,
            ``"bf16"``, or ``{layer name: storage}`` (missing layers: fp16). Layers with int8
            params (``8=`` non-zero) are always written int8 from their ``weight_int8_scales``.
    """
    out = []
    for layer in graph.layers:
        kind = storage if isinstance(storage, str) else storage.get(layer.name, "fp16")
        if kind not in STORAGES and kind != "int8":
            raise ValueError(f"unknown storage {kind!r} for layer {layer.name!r} (one of {STORAGES})")
        if kind == "int8":
            kind = "fp16"
        out.append(_layer_bytes(layer, weights.get(layer.name, {}), kind, graph.source))
    return b"".join(out)


def write_bin(graph: NcnnGraph, weights: Mapping[str, Mapping[str, np.ndarray]], path: str | os.PathLike,
              storage: str | Mapping[str, str] = "fp16") -> Path:
    """Write the ``.bin`` (see :func:`format_bin`); returns the path."""
    path = Path(path)
    path.write_bytes(format_bin(graph, weights, storage))
    return path


def write_ncnn(graph: NcnnGraph, weights: Mapping[str, Mapping[str, np.ndarray]],
               param_path: str | os.PathLike, bin_path: str | os.PathLike | None = None,
               storage: str | Mapping[str, str] = "fp16") -> tuple[Path, Path]:
    """Write a ``.param`` / ``.bin`` pair (the bin defaults to the param path with ``.bin``).

    Both are built in memory first, so a failure leaves no half-written pair.
    """
    param_path = Path(param_path)
    bin_path = Path(bin_path) if bin_path is not None else param_path.with_suffix(".bin")
    text = format_param(graph)
    data = format_bin(graph, weights, storage)
    param_path.write_text(text, encoding="utf-8")
    bin_path.write_bytes(data)
    LOGGER.debug("wrote %s (%d layers) and %s (%d bytes)", param_path, len(graph.layers), bin_path, len(data))
    return param_path, bin_path


__all__ = [
    "INT8_TYPES", "KNOWN_TAGS", "NcnnModel", "SLOT_PLANS", "Slot", "WEIGHTLESS", "format_bin", "parse_bin", "read_bin",
    "read_ncnn", "slots_of", "write_bin", "write_ncnn",
]
