"""RepOpt-VGG blocks: the plain 3x3 block trained with RepOptimizer, and its hyper-search twin.

RepOptimizer ("Re-parameterizing Your Optimizers rather than Architectures") moves the
prior of a RepVGG block from the architecture into the optimizer. Training then sees
the deploy structure itself: one 3x3 conv per block, no parallel branches.

Two blocks live here:

* :class:`RepOptBlock` -- what is trained and deployed: ``act(BN(conv3x3(x)))``. The BN is
  kept (as in YOLOv6's RepOpt variant) rather than a conv bias: it is what makes a deep
  plain stack trainable from scratch, it is folded into the conv by ``fuse()`` exactly like
  every other BN, and the gradient identity of the paper only concerns the conv kernel,
  which the BN follows in both the multi-branch and the plain form. The fused block is a
  3x3 conv with bias: the same deploy structure and parameter count as a fused
  :class:`~repyolo.nn.blocks.RepVGGBlock`.
* :class:`HyperSearchBlock` -- the CSLA block ("constant-scale linear addition") with the
  scales made learnable, used only to *find* the scales:
  ``act(BN(s * conv3x3(x) + t * conv1x1(x) (+ x)))`` with per-output-channel scale vectors
  ``s``, ``t`` (:class:`ScaleLayer`) and the identity only when ``c_in == c_out`` and
  ``stride == 1``. The sum before the BN is linear in the two kernels, so the block is
  equivalent to one 3x3 conv with kernel :func:`merged_kernel` followed by the same BN.

Module names (``conv``, ``bn``, ``act``) of :class:`RepOptBlock` are those of
:class:`~repyolo.nn.blocks.ConvBNAct`, which it extends: fusing and checkpoints work unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from repyolo.nn.blocks import ConvBNAct, fold_bn, make_act


def has_identity(c_in: int, c_out: int, stride: int) -> bool:
    """Whether a RepVGG-style block of this shape has an identity branch (square, stride 1)."""
    return c_in == c_out and stride == 1


def merged_kernel(kernel_3x3: torch.Tensor, kernel_1x1: torch.Tensor, scale_3x3: torch.Tensor,
                  scale_1x1: torch.Tensor, identity: bool) -> torch.Tensor:
    """The single 3x3 kernel of a CSLA block ``s * conv3x3 + t * conv1x1 (+ identity)``.

    Args:
        kernel_3x3: ``(C_out, C_in, 3, 3)``; kernel_1x1: ``(C_out, C_in, 1, 1)``.
        scale_3x3, scale_1x1: ``(C_out,)`` per-output-channel scales ``s`` and ``t``.
        identity: add 1 at the centre of the ``[c, c]`` kernels (needs ``C_in == C_out``).
    Returns:
        ``(C_out, C_in, 3, 3)``: ``s * W3 + t * pad(W1) + I``.
    """
    kernel = kernel_3x3 * scale_3x3.reshape(-1, 1, 1, 1) + F.pad(kernel_1x1 * scale_1x1.reshape(-1, 1, 1, 1),
                                                                   [1, 1, 1, 1])
    if identity:
        c = kernel.shape[0]
        if kernel.shape[1] != c:
            raise ValueError(f"identity branch needs a square kernel, got {tuple(kernel.shape)}")
        idx = torch.arange(c, device=kernel.device)
        eye = torch.zeros_like(kernel)
        eye[idx, idx, 1, 1] = 1.0
        kernel = kernel + eye
    return kernel


def default_conv_init(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh kernel drawn exactly as ``nn.Conv2d`` draws its weight (Kaiming-uniform, ``a = sqrt(5)``,
    i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``). Uses the global RNG unless ``generator`` is given."""
    kernel = torch.empty(shape)
    nn.init.kaiming_uniform_(kernel, a=math.sqrt(5), generator=generator)
    return kernel


class RepOptBlock(ConvBNAct):
    """Plain RepOpt-VGG block: 3x3 conv (no bias) + BN + activation, trained with RepOptimizer.

    ``(B, c_in, H, W) -> (B, c_out, H/s, W/s)``. Identical in structure to ``ConvBNAct(c_in, c_out, 3, s)``;
    the subclass marks the kernel whose gradient RepOptimizer re-parameterizes and records
    whether the block stands for a RepVGG block with identity (:attr:`identity`).
    """

    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1, act: str = "relu"):
        if k != 3:
            raise ValueError("RepOptBlock supports kernel size 3 only")
        super().__init__(c_in, c_out, 3, s, act=act)
        self.in_channels, self.out_channels, self.stride = c_in, c_out, s
        self.identity = has_identity(c_in, c_out, s)

    def extra_repr(self) -> str:
        return f"identity={self.identity}"


class ScaleLayer(nn.Module):
    """Learnable per-channel scale: ``(B, C, H, W) -> (B, C, H, W)``, ``y = weight[c] * x[:, c]``."""

    def __init__(self, channels: int, init: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.reshape(1, -1, 1, 1)


class HyperSearchBlock(nn.Module):
    """Hyper-search (CSLA) block: ``act(BN(s * conv3x3(x) + t * conv1x1(x) (+ x)))``, ``s``/``t`` learnable.

    ``(B, c_in, H, W) -> (B, c_out, H/s, W/s)``. After the hyper-search, ``scale_3x3.weight`` and
    ``scale_1x1.weight`` (each ``(c_out,)``) are the constants RepOptimizer builds its gradient
    masks from (:func:`repyolo.engine.repoptimizer.extract_scales`). The identity branch is not
    scaled (scale 1), as in the paper's gradient mask.

    Args:
        scale_init_3x3, scale_init_1x1: initial values of ``s`` and ``t``.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1, act: str = "relu",
                 scale_init_3x3: float = 1.0, scale_init_1x1: float = 1.0):
        super().__init__()
        if k != 3:
            raise ValueError("HyperSearchBlock supports kernel size 3 only")
        self.in_channels, self.out_channels, self.stride = c_in, c_out, s
        self.identity = has_identity(c_in, c_out, s)
        self.conv_3x3 = nn.Conv2d(c_in, c_out, 3, s, 1, bias=False)
        self.conv_1x1 = nn.Conv2d(c_in, c_out, 1, s, 0, bias=False)
        self.scale_3x3 = ScaleLayer(c_out, scale_init_3x3)
        self.scale_1x1 = ScaleLayer(c_out, scale_init_1x1)
        self.bn = nn.BatchNorm2d(c_out)
        self.act_name = act
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.scale_3x3(self.conv_3x3(x)) + self.scale_1x1(self.conv_1x1(x))
        if self.identity:
            y = y + x
        return self.act(self.bn(y))

    def equivalent_kernel(self) -> torch.Tensor:
        """The 3x3 kernel ``(c_out, c_in, 3, 3)`` of the whole linear part (before the BN)."""
        return merged_kernel(self.conv_3x3.weight, self.conv_1x1.weight, self.scale_3x3.weight,
                             self.scale_1x1.weight, self.identity)

    @torch.no_grad()
    def to_plain(self) -> RepOptBlock:
        """A :class:`RepOptBlock` computing the same function (kernel merged, BN copied)."""
        plain = RepOptBlock(self.in_channels, self.out_channels, 3, self.stride, act=self.act_name)
        plain = plain.to(self.conv_3x3.weight.device, self.conv_3x3.weight.dtype)
        plain.conv.weight.copy_(self.equivalent_kernel())
        plain.bn.load_state_dict(self.bn.state_dict())
        plain.bn.eps, plain.bn.momentum = self.bn.eps, self.bn.momentum
        return plain

    @torch.no_grad()
    def fused_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode 3x3 kernel and bias ``(c_out,)`` of the whole block (BN folded)."""
        return fold_bn(self.equivalent_kernel(), self.bn)
