"""Read and write NCNN models (``.param`` text graph + ``.bin`` weights), and run them.

The two files follow NCNN's documented formats (``docs/developer-guide/
param-and-model-file-structure.md`` and ``operation-param-weight-table.md`` of Tencent/ncnn):

``.param`` (text)::

    7767517                                   magic
    <layer count> <blob count>
    <type> <name> <n_in> <n_out> <in blobs...> <out blobs...> <k=v ...>   one layer a line

A value is an int, a float (its text holds ``.`` or ``e``), an array (``-23300-k=n,a,b,...``,
or the newer ``k=a,b,...``) or a string (starts with a letter or ``"``).

``.bin``: for each layer, in param order, the arrays its type loads, concatenated, each padded
to 4 bytes. A *quantizable* array (convolution / inner-product / embedding weights) starts with
a 4-byte little-endian storage tag: ``0`` fp32, ``0x01306B47`` fp16, ``0x01348B83`` bf16,
``0x000D4B38`` int8 (dequantized with the layer's int8 scales), ``0x0002C056`` fp32, any other
non-zero tag a 256-entry float table followed by uint8 indices. Every other array (biases,
BatchNorm statistics, int8 scales ...) is raw fp32 with no tag.

What this module gives:

- :class:`NcnnGraph` / :class:`NcnnLayer`: the graph (type, name, input and output blob
  names, params ``{key: value}`` with arrays as lists), :func:`read_param`, :func:`write_param`.
- :func:`read_bin` -> ``{layer name: {array name: float32 ndarray}}`` in torch layouts
  (Convolution ``(out, in/groups, kh, kw)``, Deconvolution ``(in, out/groups, kh, kw)``,
  InnerProduct ``(out, in)``), and the storage of each quantizable array; :func:`write_bin`.
- :func:`read_ncnn` / :func:`write_ncnn` for the pair, :func:`insert_splits` (NCNN wants one
  consumer per blob), :class:`NcnnNet` / :func:`run_ncnn` (the ``ncnn`` Python runtime,
  imported lazily: only the runtime needs it).

Every problem with a file is a one-line :class:`NcnnFormatError` (a
:class:`~repyolo.errors.CheckpointError`) naming the file and the param line or the layer.
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from repyolo.errors import CheckpointError, RepyoloError
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

MAGIC = 7767517
TAG_FP32 = 0x00000000
TAG_FP16 = 0x01306B47
TAG_BF16 = 0x01348B83
TAG_INT8 = 0x000D4B38
TAG_FP32_SCALED = 0x0002C056
ARRAY_KEY_BASE = -23300  # array param k is written with key -23300 - k
STORAGES = ("fp32", "fp16", "bf16")  # what the writer can store float weights as

ParamValue = int | float | str | list


class NcnnFormatError(CheckpointError):
    """A ``.param`` / ``.bin`` file that is malformed, truncated or does not match its pair."""


# =============================================================================================
# graph


@dataclass
class NcnnLayer:
    """One line of a ``.param`` file.

    ``params`` maps the param id (``0``, ``1``, ... as in the operation table) to an ``int``,
    ``float``, ``str`` or a ``list`` of ints / floats (an array param). ``line`` is the 1-based
    line in the file it came from (0 when built in memory).
    """

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, ParamValue] = field(default_factory=dict)
    line: int = 0

    def get(self, key: int, default: ParamValue | None = None) -> ParamValue | None:
        """The param ``key``, or ``default`` when the line omits it (NCNN's default then applies)."""
        return self.params.get(key, default)

    def where(self, source: str) -> str:
        """``"file:line: layer 'name'"`` or ``"file: layer 'name'"`` for error messages."""
        at = f"{source}:{self.line}" if self.line else source
        return f"{at}: layer {self.name!r} ({self.type})"


@dataclass
class NcnnGraph:
    """An NCNN network: layers in file order (a topological order), blobs named by strings."""

    layers: list[NcnnLayer] = field(default_factory=list)
    source: str = "<memory>"

    def add(self, type: str, name: str, inputs: Iterable[str], outputs: Iterable[str],
            params: Mapping[int, ParamValue] | None = None) -> NcnnLayer:
        """Append a layer and return it (for building graphs in memory, e.g. an exporter)."""
        layer = NcnnLayer(type, name, list(inputs), list(outputs), dict(params or {}))
        self.layers.append(layer)
        return layer

    def layer(self, name: str) -> NcnnLayer:
        """The layer called ``name`` (KeyError if absent)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def blobs(self) -> list[str]:
        """Every blob name, in order of first appearance."""
        seen: dict[str, None] = {}
        for layer in self.layers:
            for b in (*layer.inputs, *layer.outputs):
                seen.setdefault(b, None)
        return list(seen)

    def producers(self) -> dict[str, NcnnLayer]:
        """``{blob: the layer that outputs it}``."""
        return {b: layer for layer in self.layers for b in layer.outputs}

    def consumers(self) -> dict[str, list[NcnnLayer]]:
        """``{blob: layers that read it, in file order}`` (blobs nobody reads are absent)."""
        out: dict[str, list[NcnnLayer]] = {}
        for layer in self.layers:
            for b in layer.inputs:
                out.setdefault(b, []).append(layer)
        return out

    @property
    def input_blobs(self) -> list[str]:
        """Outputs of the ``Input`` layers (what ``Extractor.input`` feeds)."""
        return [b for layer in self.layers if layer.type == "Input" for b in layer.outputs]

    @property
    def output_blobs(self) -> list[str]:
        """Blobs produced but read by no layer (the network outputs), in file order."""
        read = {b for layer in self.layers for b in layer.inputs}
        return [b for layer in self.layers for b in layer.outputs if b not in read]


# =============================================================================================
# .param text: parse


_TOKEN = re.compile(r'(?:[^\s"]+|"[^"]*")+')


def _is_float_text(s: str) -> bool:
    """NCNN's rule: a number is a float when its text holds ``.`` or ``e`` / ``E``."""
    return "." in s or "e" in s.lower()


def _number(s: str) -> int | float:
    """Parse one scalar the way NCNN does (ValueError when it is not a number)."""
    if _is_float_text(s):
        return float(np.float32(float(s)))
    return int(s, 10)


def _array(items: list[str]) -> list:
    """Elements of an array param: all floats when the first one is a float, else all ints."""
    as_float = bool(items) and _is_float_text(items[0])
    return [float(np.float32(float(v))) if as_float else int(v, 10) for v in items]


def _param_value(key: int, text: str) -> tuple[int, ParamValue]:
    """``(param id, value)`` of one ``key=text`` pair (ValueError when malformed)."""
    if key <= ARRAY_KEY_BASE:
        items = text.split(",")
        n = int(items[0], 10)
        if n != len(items) - 1:
            raise ValueError(f"array declares {n} elements but has {len(items) - 1}")
        return ARRAY_KEY_BASE - key, _array(items[1:])
    if key < 0:
        raise ValueError(f"negative param id {key}")
    if text[:1] == '"' or text[:1].isalpha():
        return key, text.strip('"')
    if "," in text:
        return key, _array(text.split(","))
    return key, _number(text)


def _parse_params(tokens: list[str], where: str) -> dict[int, ParamValue]:
    """The ``k=v`` tokens of a layer line -> ``{id: value}`` (NcnnFormatError names ``where``)."""
    params: dict[int, ParamValue] = {}
    for tok in tokens:
        key_text, eq, value_text = tok.partition("=")
        try:
            if not eq or not value_text:
                raise ValueError("expected key=value")
            key, value = _param_value(int(key_text, 10), value_text)
        except ValueError as e:
            raise NcnnFormatError(f"{where}: bad param {tok!r} ({e})") from None
        if key in params:
            raise NcnnFormatError(f"{where}: param {key} given twice")
        params[key] = value
    return params


def _parse_layer(tokens: list[str], where: str) -> NcnnLayer:
    """One layer line, already split into tokens."""
    if len(tokens) < 4:
        raise NcnnFormatError(f"{where}: expected '<type> <name> <n_in> <n_out> ...', got {' '.join(tokens)!r}")
    type_, name, n_in_text, n_out_text = tokens[:4]
    try:
        n_in, n_out = int(n_in_text, 10), int(n_out_text, 10)
    except ValueError:
        raise NcnnFormatError(f"{where}: layer {name!r}: blob counts {n_in_text!r} {n_out_text!r} are not integers") \
            from None
    if n_in < 0 or n_out < 0:
        raise NcnnFormatError(f"{where}: layer {name!r}: negative blob count")
    blobs = tokens[4:4 + n_in + n_out]
    if len(blobs) < n_in + n_out or any("=" in b for b in blobs):
        raise NcnnFormatError(f"{where}: layer {name!r}: expected {n_in} input and {n_out} output blob names")
    params = _parse_params(tokens[4 + n_in + n_out:], f"{where}: layer {name!r}")
    return NcnnLayer(type_, name, blobs[:n_in], blobs[n_in:], params)


def _check_graph(graph: NcnnGraph, blob_count: int, lines: list[int]) -> None:
    """Blobs produced once and no more blobs than the header declares; a repeated layer name
    is only logged (pnnx writes two ``splitncnn_0`` in some graphs and the runtime accepts it;
    :func:`parse_bin` refuses it for layers that carry weights)."""
    names: set[str] = set()
    produced: set[str] = set()
    for layer in graph.layers:
        if layer.name in names:
            LOGGER.warning("%s:%d: layer name %r used twice", graph.source, layer.line, layer.name)
        names.add(layer.name)
        for b in layer.outputs:
            if b in produced:
                raise NcnnFormatError(f"{graph.source}:{layer.line}: layer {layer.name!r}: blob {b!r} "
                                      f"is produced twice")
            produced.add(b)
    n_blobs = len(graph.blobs)
    if n_blobs > blob_count:
        raise NcnnFormatError(f"{graph.source}:{lines[1]}: header declares {blob_count} blobs but the layers "
                              f"use {n_blobs}")


def parse_param(text: str, source: str = "<string>") -> NcnnGraph:
    """Parse the text of a ``.param`` file.

    Args:
        text: the file's content.
        source: the file name used in error messages.
    Returns:
        the :class:`NcnnGraph` (layers in file order, ``line`` set on each).
    Raises:
        NcnnFormatError: ``"<source>:<line>: <what is wrong>"``.
    """
    rows = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    if not rows:
        raise NcnnFormatError(f"{source}: empty param file")
    first_line, magic = rows[0]
    if magic.strip() != str(MAGIC):
        raise NcnnFormatError(f"{source}:{first_line}: bad magic {magic.strip()[:20]!r} (expected {MAGIC}: "
                              f"not a text NCNN param file)")
    if len(rows) < 2:
        raise NcnnFormatError(f"{source}: missing the '<layer count> <blob count>' line")
    count_line, counts = rows[1]
    try:
        layer_count, blob_count = (int(v, 10) for v in counts.split())
    except ValueError:
        raise NcnnFormatError(f"{source}:{count_line}: expected '<layer count> <blob count>', "
                              f"got {counts.strip()[:40]!r}") from None
    graph = NcnnGraph(source=source)
    for line_no, line in rows[2:]:
        layer = _parse_layer(_TOKEN.findall(line), f"{source}:{line_no}")
        layer.line = line_no
        graph.layers.append(layer)
    if len(graph.layers) != layer_count:
        raise NcnnFormatError(f"{source}:{count_line}: header declares {layer_count} layers but the file has "
                              f"{len(graph.layers)}")
    _check_graph(graph, blob_count, [first_line, count_line])
    return graph


def read_param(path: str | os.PathLike) -> NcnnGraph:
    """Read a text ``.param`` file (see :func:`parse_param`)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise NcnnFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise NcnnFormatError(f"{path}:{line}: not text (binary param files are not supported)") from None
    return parse_param(text, str(path))


# =============================================================================================
# .param text: write


def _format_float(v: float) -> str:
    """Shortest ``%e`` text that reads back to the same float32, at most 15 characters
    (NCNN scans values with ``%15s``) and always with an ``e`` (so NCNN sees a float)."""
    f = np.float32(v)
    if not np.isfinite(f):
        raise ValueError(f"{v} cannot be written to a param file")
    for digits in range(9):
        s = f"{float(f):.{digits}e}"
        with np.errstate(over="ignore"):  # e.g. "-3e+38" overflows float32: just not this one
            if np.float32(float(s)) == f:
                return s
    return f"{float(f):.8e}"


def _format_scalar(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return _format_float(float(v))
    raise ValueError(f"unsupported param value {v!r}")


def _format_param(key: int, value: ParamValue) -> str:
    """``k=v`` text of one param (arrays in the ``-23300-k=n,...`` form every NCNN reads)."""
    if isinstance(value, str):
        if len(value) > 255 or '"' in value or "\n" in value:
            raise ValueError(f"string param {key} cannot be written (over 255 characters, a quote or a newline)")
        if not value or not value[0].isalpha() or any(c.isspace() or c == "," for c in value):
            return f'{key}="{value}"'
        return f"{key}={value}"
    if isinstance(value, (list, tuple, np.ndarray)):
        values = list(value)
        if any(isinstance(v, (float, np.floating)) for v in values):  # NCNN types an array by its first item
            values = [float(v) for v in values]
        items = [_format_scalar(v) for v in values]
        return f"{ARRAY_KEY_BASE - key}={','.join([str(len(items)), *items])}"
    return f"{key}={_format_scalar(value)}"


def format_layer(layer: NcnnLayer) -> str:
    """One ``.param`` line for ``layer`` (params in ascending id order)."""
    head = f"{layer.type:<24} {layer.name:<24} {len(layer.inputs)} {len(layer.outputs)}"
    parts = [head, *layer.inputs, *layer.outputs]
    try:
        parts += [_format_param(k, layer.params[k]) for k in sorted(layer.params)]
    except ValueError as e:
        raise NcnnFormatError(f"layer {layer.name!r}: {e}") from None
    return " ".join(parts)


def format_param(graph: NcnnGraph) -> str:
    """The text of a ``.param`` file for ``graph``."""
    for layer in graph.layers:
        for token in (layer.type, layer.name, *layer.inputs, *layer.outputs):
            if not token or any(c.isspace() for c in token) or "=" in token:
                raise NcnnFormatError(f"layer {layer.name!r}: name {token!r} cannot be written "
                                      f"(empty, blank or with '=')")
    names = [layer.name for layer in graph.layers]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise NcnnFormatError(f"layer name {dup!r} used twice: names must be unique")
    for blob, readers in graph.consumers().items():
        if len(readers) > 1:
            raise NcnnFormatError(f"blob {blob!r} is read by {len(readers)} layers "
                                  f"({', '.join(l.name for l in readers[:3])}): the ncnn runtime needs one "
                                  f"reader per blob (it crashes otherwise); pass the graph through insert_splits()")
    lines = [str(MAGIC), f"{len(graph.layers)} {len(graph.blobs)}"]
    lines += [format_layer(layer) for layer in graph.layers]
    return "\n".join(lines) + "\n"


def write_param(graph: NcnnGraph, path: str | os.PathLike) -> Path:
    """Write ``graph`` as a text ``.param`` file; returns the path."""
    path = Path(path)
    path.write_text(format_param(graph), encoding="utf-8")
    return path


def insert_splits(graph: NcnnGraph) -> NcnnGraph:
    """A copy of ``graph`` where every blob read by several layers goes through a ``Split``.

    NCNN expects each blob to have a single consumer (its converters insert ``Split``
    layers); blob ``b`` read by ``n`` layers becomes ``Split`` ``b -> b_splitncnn_0 ...``.
    """
    consumers = graph.consumers()
    used = {b: 0 for b, layers in consumers.items() if len(layers) > 1}  # shared blobs, in order
    shared = used.keys()
    out = NcnnGraph(source=graph.source)
    producers = graph.producers()
    n_split = 0

    def split(blob: str) -> None:
        nonlocal n_split
        outs = [f"{blob}_splitncnn_{j}" for j in range(len(consumers[blob]))]
        out.add("Split", f"splitncnn_{n_split}", [blob], outs)
        n_split += 1

    for b in list(shared):
        if b not in producers:  # fed by Extractor.input without an Input layer
            split(b)
    for layer in graph.layers:
        inputs = []
        for b in layer.inputs:
            if b in shared:
                inputs.append(f"{b}_splitncnn_{used[b]}")
                used[b] += 1
            else:
                inputs.append(b)
        out.layers.append(NcnnLayer(layer.type, layer.name, inputs, list(layer.outputs), dict(layer.params)))
        for b in layer.outputs:
            if b in shared:
                split(b)
    return out


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


# =============================================================================================
# runtime (the ``ncnn`` Python package)


def _import_ncnn():
    try:
        import ncnn  # optional dependency: only the runtime needs it
    except ImportError:
        raise RepyoloError("running NCNN models needs the 'ncnn' package: pip install repyolo[ncnn] "
                           "(or pip install ncnn)") from None
    return ncnn


@contextlib.contextmanager
def _quiet_stderr(enabled: bool):
    """Silence the C library's stderr (NCNN logs warnings with fprintf) inside the block."""
    if not enabled:
        yield
        return
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(fd, 2)
    finally:
        os.close(fd)


class NcnnNet:
    """An NCNN network loaded from a ``.param`` / ``.bin`` pair, run on numpy arrays.

    Args:
        param_path, bin_path: the pair (``bin_path`` defaults to the param path with ``.bin``).
        num_threads: CPU threads of the runtime (1 by default: steady on a shared machine; ``None``:
            ncnn's own default, the big cores).
        fp32: run in float32 (turn off NCNN's fp16 / bf16 storage and arithmetic, which are on
            by default on CPUs that have them); weights stored as fp16 are widened on load.
        quiet: hide NCNN's stderr messages (e.g. its notes about 1-D convolution inputs).
    """

    def __init__(self, param_path: str | os.PathLike, bin_path: str | os.PathLike | None = None,
                 num_threads: int | None = 1, fp32: bool = True, quiet: bool = True):
        ncnn = _import_ncnn()
        self.param_path = Path(param_path)
        self.bin_path = Path(bin_path) if bin_path is not None else self.param_path.with_suffix(".bin")
        self.graph = read_param(self.param_path)
        self.quiet = quiet
        self.net = ncnn.Net()
        opt = self.net.opt
        if num_threads is not None:
            opt.num_threads = int(num_threads)
        if fp32:
            opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = False
            opt.use_bf16_storage = False
        with _quiet_stderr(quiet):
            if self.net.load_param(str(self.param_path)) != 0:
                raise NcnnFormatError(f"{self.param_path}: the ncnn runtime refused the param file")
            if self.net.load_model(str(self.bin_path)) != 0:
                raise NcnnFormatError(f"{self.bin_path}: the ncnn runtime refused the bin file")
        self._ncnn = ncnn

    @property
    def input_names(self) -> list[str]:
        return self.graph.input_blobs

    @property
    def output_names(self) -> list[str]:
        return self.graph.output_blobs

    def _feed(self, ex, inputs: np.ndarray | Mapping[str, np.ndarray]) -> None:
        if not isinstance(inputs, Mapping):
            if len(self.input_names) != 1:
                raise RepyoloError(f"{self.param_path}: {len(self.input_names)} inputs, pass a dict of arrays")
            inputs = {self.input_names[0]: inputs}
        for name, array in inputs.items():
            a = np.ascontiguousarray(array, dtype=np.float32)
            if a.ndim == 4:
                if a.shape[0] != 1:
                    raise RepyoloError(f"ncnn runs one image at a time, got a batch of {a.shape[0]}")
                a = a[0]
            # clone: a Mat over numpy memory has no refcount, and an in-place first layer
            # (ReLU, BatchNorm ...) then crashes the runtime (segfault, ncnn 1.0.20261020)
            ex.input(name, self._ncnn.Mat(a).clone())

    def __call__(self, inputs: np.ndarray | Mapping[str, np.ndarray],
                 outputs: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Run once.

        Args:
            inputs: one ``(C, H, W)`` or ``(1, C, H, W)`` float array for a single-input net, or
                ``{blob name: array}``.
            outputs: blob names to extract (default: :attr:`output_names`).
        Returns:
            ``{blob name: float32 array}`` in NCNN's layout (``(C, H, W)`` for feature maps).
        """
        names = list(outputs) if outputs is not None else self.output_names
        ex = self.net.create_extractor()
        self._feed(ex, inputs)
        result = {}
        with _quiet_stderr(self.quiet):
            for name in names:
                ret, mat = ex.extract(name)
                if ret != 0:
                    raise RepyoloError(f"{self.param_path}: ncnn could not compute blob {name!r} (error {ret})")
                result[name] = np.array(mat, dtype=np.float32, copy=True)
        return result


def run_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike | None,
             inputs: np.ndarray | Mapping[str, np.ndarray], outputs: Iterable[str] | None = None,
             num_threads: int = 1, fp32: bool = True) -> dict[str, np.ndarray]:
    """Load a pair and run it once (see :class:`NcnnNet`); returns ``{blob: array}``."""
    return NcnnNet(param_path, bin_path, num_threads=num_threads, fp32=fp32)(inputs, outputs)
