"""Building blocks of the YOLOv6 networks.

Every block maps ``(B, C_in, H, W)`` to ``(B, C_out, H', W')`` with ``H' = H / stride``.
Blocks that hold a BatchNorm or several parallel branches implement ``fuse()``, which
turns them into the single-branch inference form in place (structural
re-parameterization); ``fuse()`` is idempotent.

Sub-module names follow the published YOLOv6 checkpoints (``rbr_dense``, ``rbr_1x1``,
``rbr_identity``, ``nonlinearity``, ``cv1`` ..., ``conv1``/``block``) so official weights map onto
these modules one to one (see :mod:`repyolo.io.official`), and every leaf module (activations
included) matches the official layer listings by name (``tests/nn/test_official_listing.py``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid,
               "identity": nn.Identity}


def make_act(name: str | None) -> nn.Module | None:
    """``'relu' | 'silu' | 'hardswish' | 'hardsigmoid' | 'identity'`` -> a fresh activation module;
    ``None`` -> no module at all (a linear Conv-BN unit)."""
    if name is None:
        return None
    try:
        return ACTIVATIONS[name]() if name == "identity" else ACTIVATIONS[name](inplace=True)
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


def fold_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d,
            bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the conv kernel (and optional conv bias) that precedes it.

    Args:
        kernel: ``(C_out, C_in/g, k, k)`` conv weight.
        bn: BatchNorm over ``C_out`` channels.
        bias: the conv's bias ``(C_out,)``, ``None`` for a bias-free conv.
    Returns:
        the fused kernel of the same shape and a bias ``(C_out,)``.
    """
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    mean = bn.running_mean if bias is None else bn.running_mean - bias
    return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - mean * scale


def fused_conv(conv: nn.Conv2d, kernel: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A conv with ``conv``'s geometry, weight ``kernel`` and bias ``bias`` (the deploy form of a block)."""
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    groups=conv.groups, bias=True).to(kernel.device, kernel.dtype)
    out.weight.copy_(kernel)
    out.bias.copy_(bias)
    return out


class Fusable(nn.Module):
    """A block with a training form and a single-branch deploy form.

    ``fuse()`` converts it in place (BN folding, structural re-parameterization) so that in eval
    mode it computes the same function; it is idempotent. :func:`fuse_modules` fuses every
    ``Fusable`` of a model.
    """

    def fuse(self) -> None:
        raise NotImplementedError


class ConvBNAct(Fusable):
    """Conv2d (no bias) + BatchNorm + activation; ``fuse()`` folds the BN into the conv.

    ``(B, c_in, H, W) -> (B, c_out, H/s, W/s)``. ``padding`` defaults to ``k // 2``; ``act=None``
    builds no activation module (a linear Conv-BN unit).
    """

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, p: int | None = None,
                 groups: int = 1, act: str | None = "relu"):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2 if p is None else p, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return x if self.act is None else self.act(x)

    @torch.no_grad()
    def fuse(self) -> None:
        if self.bn is None:
            return
        self.conv = fused_conv(self.conv, *fold_bn(self.conv.weight, self.bn, self.conv.bias))
        self.bn = None


class ConvBN(nn.Module):
    """Conv2d (no bias) + BatchNorm, no activation: one branch of a RepVGG block."""

    def __init__(self, c_in: int, c_out: int, k: int, s: int = 1, p: int = 0, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, p, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def identity_kernel(channels: int, like: torch.Tensor) -> torch.Tensor:
    """The 3x3 kernel ``(C, C, 3, 3)`` of the identity map (1 at the centre of each ``[c, c]``)."""
    eye = torch.zeros(channels, channels, 3, 3, device=like.device, dtype=like.dtype)
    idx = torch.arange(channels, device=like.device)
    eye[idx, idx, 1, 1] = 1.0
    return eye


class ReparamBlock(Fusable):
    """Shared form of the RepVGG-style blocks: training-time branches (``branch_modules``) whose
    linear part :meth:`equivalent_kernel_bias` reduces to one 3x3 kernel and bias; ``fuse()`` puts
    that into ``rbr_reparam`` (a 3x3 conv with bias) and drops the branches. Subclasses set
    ``nonlinearity``, ``se``, ``rbr_dense`` (whose conv geometry the fused conv copies) and
    implement :meth:`forward_branches`. ``(B, c_in, H, W) -> (B, c_out, H/s, W/s)``.
    """

    branch_modules: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rbr_reparam is not None:
            return self.nonlinearity(self.se(self.rbr_reparam(x)))
        return self.forward_branches(x)

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def fuse(self) -> None:
        if self.rbr_reparam is not None:
            return
        kernel, bias = self.equivalent_kernel_bias()
        self.rbr_reparam = fused_conv(self.rbr_dense.conv, kernel, bias)
        for name in self.branch_modules:
            delattr(self, name)
            setattr(self, name, None)


class RepVGGBlock(ReparamBlock):
    """RepVGG block: 3x3 conv+BN, 1x1 conv+BN and (when shapes allow) an identity BN, summed, then ReLU.

    ``(B, c_in, H, W) -> (B, c_out, H/s, W/s)``. After ``fuse()`` the three branches are one
    3x3 conv with bias (``rbr_reparam``), which computes exactly the same function in eval mode.
    ``se`` is the official block's (unused) squeeze-excitation slot, an identity.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1, act: str = "relu"):
        super().__init__()
        if k != 3:
            raise ValueError("RepVGGBlock supports kernel size 3 only")
        self.in_channels, self.out_channels, self.stride = c_in, c_out, s
        self.nonlinearity = make_act(act)
        self.se = nn.Identity()
        self.rbr_identity = nn.BatchNorm2d(c_in) if c_in == c_out and s == 1 else None
        self.rbr_dense = ConvBN(c_in, c_out, 3, s, 1)
        self.rbr_1x1 = ConvBN(c_in, c_out, 1, s, 0)
        self.rbr_reparam: nn.Conv2d | None = None

    branch_modules = ("rbr_dense", "rbr_1x1", "rbr_identity")

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return self.nonlinearity(self.se(y))

    @torch.no_grad()
    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single 3x3 kernel ``(c_out, c_in, 3, 3)`` and bias ``(c_out,)`` of the three branches."""
        k3, b3 = fold_bn(self.rbr_dense.conv.weight, self.rbr_dense.bn)
        k1, b1 = fold_bn(self.rbr_1x1.conv.weight, self.rbr_1x1.bn)
        kernel = k3 + F.pad(k1, [1, 1, 1, 1])
        bias = b3 + b1
        if self.rbr_identity is not None:
            ki, bi = fold_bn(identity_kernel(self.in_channels, k3), self.rbr_identity)
            kernel, bias = kernel + ki, bias + bi
        return kernel, bias


class QARepVGGBlock(ReparamBlock):
    """Quantization-aware RepVGG block (QARepVGG, "Make RepVGG Greater Again"), the v2 form with
    an average-pooling branch, as trained by the official ``*-qa`` models.

    ``y = act(bn(rbr_dense(x) + rbr_1x1(x) [+ x + rbr_avg(x)]))`` with ``rbr_dense`` a 3x3 conv + BN,
    ``rbr_1x1`` a bare 1x1 conv (no BN), the identity and a 3x3 average pool (stride 1, padding 1)
    only when ``c_in == c_out`` and ``s == 1``, and one BN (``bn``) after the sum. The branches
    without their own BN keep the summed kernel's statistics quantization-friendly.

    ``(B, c_in, H, W) -> (B, c_out, H/s, W/s)``. Everything before the activation is linear, so
    ``fuse()`` turns the block into exactly one 3x3 conv with bias (``rbr_reparam``) + activation.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1, act: str = "relu"):
        super().__init__()
        if k != 3:
            raise ValueError("QARepVGGBlock supports kernel size 3 only")
        self.in_channels, self.out_channels, self.stride = c_in, c_out, s
        square = c_in == c_out and s == 1
        self.nonlinearity = make_act(act)
        self.se = nn.Identity()
        self.rbr_identity = nn.Identity() if square else None
        self.rbr_dense = ConvBN(c_in, c_out, 3, s, 1)
        self.rbr_1x1 = nn.Conv2d(c_in, c_out, 1, s, 0, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.rbr_avg = nn.AvgPool2d(3, s, 1) if square else None
        self.rbr_reparam: nn.Conv2d | None = None

    branch_modules = ("rbr_dense", "rbr_1x1", "rbr_identity", "rbr_avg", "bn")

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x) + self.rbr_avg(x)
        return self.nonlinearity(self.bn(self.se(y)))

    @torch.no_grad()
    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single 3x3 kernel ``(c_out, c_in, 3, 3)`` and bias ``(c_out,)`` of the whole linear part
        (branches summed, then the post-sum BN folded)."""
        kernel, bias = fold_bn(self.rbr_dense.conv.weight, self.rbr_dense.bn)
        kernel = kernel + F.pad(self.rbr_1x1.weight, [1, 1, 1, 1])
        if self.rbr_identity is not None:
            eye = identity_kernel(self.in_channels, kernel)
            # a 3x3 average pool with zero padding counted (count_include_pad) = 1/9 on every tap of [c, c]
            avg = eye.sum((2, 3), keepdim=True).expand_as(eye) / 9.0
            kernel = kernel + eye + avg
        return fold_bn(kernel, self.bn, bias)


class RepBlock(nn.Module):
    """A stage of ``n`` blocks: ``conv1`` (c_in -> c_out) then ``n - 1`` blocks (c_out -> c_out).

    With ``bottle=True`` (CSPStackRep) the units are :class:`BottleRep` pairs and only
    ``n // 2`` of them are built, as in YOLOv6.
    """

    def __init__(self, c_in: int, c_out: int, n: int = 1, block=None, bottle: bool = False):
        super().__init__()
        block = block or (lambda ci, co, k=3, s=1: RepVGGBlock(ci, co, k, s))
        if bottle:
            n = max(n // 2, 1)
            make = lambda ci, co: BottleRep(ci, co, block, weighted=True)  # noqa: E731
        else:
            make = block
        self.conv1 = make(c_in, c_out)
        self.block = nn.Sequential(*(make(c_out, c_out) for _ in range(n - 1))) if n > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.block(x) if self.block is not None else x


class BottleRep(nn.Module):
    """``depth`` chained 3x3 blocks (``conv1``, ``conv2``[, ``conv3``]) with a (learnably weighted)
    residual: ``y = conv2(conv1(x)) + alpha * x``. ``depth=3`` is the MBLA unit (BottleRep3).

    ``(B, c_in, H, W) -> (B, c_out, H, W)``; the residual only when ``c_in == c_out``.
    """

    def __init__(self, c_in: int, c_out: int, block, weighted: bool = False, depth: int = 2):
        super().__init__()
        self.depth = depth
        for i in range(depth):
            setattr(self, f"conv{i + 1}", block(c_in if i == 0 else c_out, c_out))
        self.shortcut = c_in == c_out
        self.alpha = nn.Parameter(torch.ones(1)) if weighted else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i in range(self.depth):
            y = getattr(self, f"conv{i + 1}")(y)
        if not self.shortcut:
            return y
        return y + (self.alpha * x if self.alpha is not None else x)


class BepC3(nn.Module):
    """CSPStackRep block: two 1x1 branches, one through ``n // 2`` BottleRep pairs, concatenated and mixed.

    ``(B, c_in, H, W) -> (B, c_out, H, W)``; the hidden width is ``int(c_out * e)``.
    """

    def __init__(self, c_in: int, c_out: int, n: int = 1, e: float = 0.5, block=None, act: str = "relu"):
        super().__init__()
        c_ = int(c_out * e)
        self.cv1 = ConvBNAct(c_in, c_, 1, 1, act=act)
        self.cv2 = ConvBNAct(c_in, c_, 1, 1, act=act)
        self.cv3 = ConvBNAct(2 * c_, c_out, 1, 1, act=act)
        self.m = RepBlock(c_, c_, n, block=block, bottle=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained k x k max-pools of a 1x1-reduced input, concatenated.

    With ReLU this is the paper's SimSPPF. ``(B, c_in, H, W) -> (B, c_out, H, W)``.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 5, act: str = "relu"):
        super().__init__()
        c_ = c_in // 2
        self.cv1 = ConvBNAct(c_in, c_, 1, 1, act=act)
        self.cv2 = ConvBNAct(c_ * 4, c_out, 1, 1, act=act)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class CSPSPPF(nn.Module):
    """CSP version of SPPF (v3): a pooled branch with 3x3 convs beside a 1x1 shortcut branch.

    With ReLU this is SimCSPSPPF. ``(B, c_in, H, W) -> (B, c_out, H, W)``.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 5, e: float = 0.5, act: str = "relu"):
        super().__init__()
        c_ = int(c_out * e)
        self.cv1 = ConvBNAct(c_in, c_, 1, 1, act=act)
        self.cv2 = ConvBNAct(c_in, c_, 1, 1, act=act)
        self.cv3 = ConvBNAct(c_, c_, 3, 1, act=act)
        self.cv4 = ConvBNAct(c_, c_, 1, 1, act=act)
        self.m = nn.MaxPool2d(k, 1, k // 2)
        self.cv5 = ConvBNAct(4 * c_, c_, 1, 1, act=act)
        self.cv6 = ConvBNAct(c_, c_, 3, 1, act=act)
        self.cv7 = ConvBNAct(2 * c_, c_out, 1, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y0 = self.cv2(x)
        y1 = self.m(x1)
        y2 = self.m(y1)
        y3 = self.cv6(self.cv5(torch.cat((x1, y1, y2, self.m(y2)), 1)))
        return self.cv7(torch.cat((y0, y3), 1))


class SPPFWrapper(nn.Module):
    """Holds the pooling block under the attribute name the official checkpoints use."""

    def __init__(self, c_in: int, c_out: int, csp: bool, act: str):
        super().__init__()
        if csp:
            self.cspsppf = CSPSPPF(c_in, c_out, 5, act=act)
        else:
            self.sppf = SPPF(c_in, c_out, 5, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cspsppf(x) if hasattr(self, "cspsppf") else self.sppf(x)


class Transpose(nn.Module):
    """2x learned up-sampling (transposed conv, k=2, s=2): ``(B, c_in, H, W) -> (B, c_out, 2H, 2W)``."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.upsample_transpose = nn.ConvTranspose2d(c_in, c_out, 2, 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample_transpose(x)


class BiC(nn.Module):
    """Bidirectional concatenation (v3): fuse the up-sampled top-down feature with two backbone levels.

    Inputs ``[top (B, c_out, H/2, W/2), same (B, c_same, H, W), finer (B, c_fine, 2H, 2W)]``;
    output ``(B, c_out, H, W)``: ``cv3(cat(up(top), cv1(same), down(cv2(finer))))``.
    """

    def __init__(self, c_same: int, c_fine: int, c_out: int, act: str = "relu"):
        super().__init__()
        self.cv1 = ConvBNAct(c_same, c_out, 1, 1, act=act)
        self.cv2 = ConvBNAct(c_fine, c_out, 1, 1, act=act)
        self.cv3 = ConvBNAct(c_out * 3, c_out, 1, 1, act=act)
        self.upsample = Transpose(c_out, c_out)
        self.downsample = ConvBNAct(c_out, c_out, 3, 2, act=act)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        top, same, finer = xs
        return self.cv3(torch.cat((self.upsample(top), self.cv1(same), self.downsample(self.cv2(finer))), 1))


def mbla_branches(n: int) -> list[int]:
    """Units per branch of an MBLA block of ``n`` (depth-scaled) repeats.

    ``n // 2`` (at least 1) units of depth 3 stand for ``n`` layers: one branch when that is 1,
    else two branches, the longer with all of them and the shorter with the largest power of
    two below it (``n=4 -> [1, 2]``, ``n=8 -> [2, 4]``).
    """
    units = max(n // 2, 1)
    if units == 1:
        return [1]
    short = 1
    while short * 2 < units:
        short *= 2
    return [short, units]


class MBLABlock(nn.Module):
    """Multi-branch layer aggregation (MBLA) stage, the ``*-mbla`` models' replacement of BepC3.

    ``cv1`` (1x1) maps ``c_in`` to ``(k + 1)`` chunks of ``c_ = int(c_out * e)`` channels, ``k`` the
    number of branches (:func:`mbla_branches`). Branch ``i`` runs a chain of BottleRep3 units
    (``m[i]``) on chunk ``i + 1``; the first chunk, every branch's input chunk and the output of
    every unit are concatenated (chunk 0, chunk 1, branch 1's outputs, chunk 2, branch 2's outputs)
    and ``cv2`` (1x1) mixes them into ``c_out``: layer aggregation over several depths.

    ``(B, c_in, H, W) -> (B, c_out, H, W)``.
    """

    def __init__(self, c_in: int, c_out: int, n: int = 1, e: float = 0.5, block=None, act: str = "relu"):
        super().__init__()
        block = block or (lambda ci, co, k=3, s=1: ConvBNAct(ci, co, k, s, act=act))
        branches = mbla_branches(n)
        self.c = int(c_out * e)
        self.cv1 = ConvBNAct(c_in, (len(branches) + 1) * self.c, 1, 1, act=act)
        self.cv2 = ConvBNAct((sum(branches) + len(branches) + 1) * self.c, c_out, 1, 1, act=act)
        self.m = nn.ModuleList(
            nn.Sequential(*(BottleRep(self.c, self.c, block, weighted=True, depth=3) for _ in range(units)))
            for units in branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = self.cv1(x).split(self.c, 1)
        outs = [chunks[0]]
        for i, branch in enumerate(self.m):  # chunks indexed, not iterated: torch.fx traces it (NCNN export)
            outs.append(chunks[i + 1])
            for unit in branch:
                outs.append(unit(outs[-1]))
        return self.cv2(torch.cat(outs, 1))


STAGE_KINDS = ("repblock", "bepc3", "mbla")


def stage_block(c_in: int, c_out: int, n: int, csp_e: float | None, block, act: str,
                kind: str | None = None) -> nn.Module:
    """A stage of the backbone or neck: ``kind`` ``'repblock'`` (RepBlock, small models), ``'bepc3'``
    (BepC3/CSPStackRep) or ``'mbla'`` (MBLABlock); by default RepBlock, or BepC3 when ``csp_e`` is set."""
    kind = kind or ("repblock" if csp_e is None else "bepc3")
    if kind == "repblock":
        return RepBlock(c_in, c_out, n, block=block)
    if kind not in STAGE_KINDS:
        raise ValueError(f"unknown stage block {kind!r}; expected one of {', '.join(STAGE_KINDS)}")
    if csp_e is None:
        raise ValueError(f"stage block {kind!r} needs csp_e (its hidden-width ratio)")
    cls = BepC3 if kind == "bepc3" else MBLABlock
    return cls(c_in, c_out, n, e=csp_e, block=block, act=act)


@torch.no_grad()
def fuse_modules(model: nn.Module) -> nn.Module:
    """Re-parameterize every :class:`Fusable` block of ``model`` in place (RepVGG / QARepVGG branches,
    BN folding); returns it."""
    for m in list(model.modules()):
        if isinstance(m, Fusable):
            m.fuse()
    return model
