"""The 3x3 unit a model is built from, chosen by the config's ``block:`` key."""
from __future__ import annotations

from repyolo.nn.blocks import ConvBNAct, QARepVGGBlock, RepVGGBlock
from repyolo.nn.repopt import HyperSearchBlock, RepOptBlock

BLOCK_KINDS = ("repvgg", "qarepvgg", "conv", "repopt", "hypersearch")


def basic_block(kind: str, act: str):
    """The 3x3 building block of a model: ``'repvgg'`` (re-parameterizable), ``'qarepvgg'``
    (quantization-aware RepVGG), ``'conv'`` (ConvBNAct), ``'repopt'`` (plain RepOpt-VGG block,
    trained with RepOptimizer) or ``'hypersearch'`` (its scale-searching twin), the last two from
    :mod:`repyolo.nn.repopt`.

    The large and the ``*-base`` / ``*-mbla`` models train plain 3x3 Conv+BN+act blocks instead of
    RepVGG blocks; all have the signature ``block(c_in, c_out, k=3, s=1)``.
    """
    if kind == "repvgg":
        return lambda c_in, c_out, k=3, s=1: RepVGGBlock(c_in, c_out, k, s, act=act)
    if kind == "qarepvgg":
        return lambda c_in, c_out, k=3, s=1: QARepVGGBlock(c_in, c_out, k, s, act=act)
    if kind == "conv":
        return lambda c_in, c_out, k=3, s=1: ConvBNAct(c_in, c_out, k, s, act=act)
    if kind in ("repopt", "hypersearch"):
        cls = RepOptBlock if kind == "repopt" else HyperSearchBlock
        return lambda c_in, c_out, k=3, s=1: cls(c_in, c_out, k, s, act=act)
    raise ValueError(f"unknown block kind {kind!r}; expected one of {', '.join(BLOCK_KINDS)}")
