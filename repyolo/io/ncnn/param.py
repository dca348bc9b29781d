"""NCNN ``.param`` files: the graph (:class:`NcnnGraph` of :class:`NcnnLayer`), reading and writing the
text format, and :func:`insert_splits`. The formats are described in :mod:`repyolo.io.ncnn`.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from repyolo.errors import CheckpointError
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


__all__ = [
    "ARRAY_KEY_BASE", "MAGIC", "NcnnFormatError", "NcnnGraph", "NcnnLayer", "ParamValue", "STORAGES",
    "TAG_BF16", "TAG_FP16", "TAG_FP32", "TAG_FP32_SCALED", "TAG_INT8", "format_layer", "format_param",
    "insert_splits", "parse_param", "read_param", "write_param",
]
