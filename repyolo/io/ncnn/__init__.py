"""Read and write NCNN models (``.param`` text graph + ``.bin`` weights), and run them.

Modules: :mod:`~repyolo.io.ncnn.param` (graph and text), :mod:`~repyolo.io.ncnn.weights` (``.bin``
and the pair), :mod:`~repyolo.io.ncnn.net` (the ``ncnn`` runtime).

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

from repyolo.io.ncnn import net, param, weights
from repyolo.io.ncnn.net import *  # noqa: F403
from repyolo.io.ncnn.param import *  # noqa: F403
from repyolo.io.ncnn.weights import *  # noqa: F403

__all__ = [*param.__all__, *weights.__all__, *net.__all__]
