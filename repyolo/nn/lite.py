"""YOLOv6-Lite, the mobile family: Lite_EffiBackbone, Lite_EffiNeck and the depthwise head unit.

Built from depthwise-separable convolutions with HardSwish, ShuffleNet-style blocks with channel
shuffle and squeeze-excitation (HardSigmoid gate), four output levels (strides 8, 16, 32, 64)
of one unified width, trained at 320x320. Module names reproduce the official checkpoints'
keys (after :func:`repyolo.io.official.to_repyolo_keys`), so official and NCNN-released weights
load key for key.

Blocks (``(B, C_in, H, W) -> (B, C_out, H/s, W/s)``):

* :class:`SEBlock` - squeeze-excitation: ``x * hardsigmoid(conv2(relu(conv1(avgpool(x)))))``.
* :class:`DPBlock` - depthwise k x k conv (+bias) + BN + act, pointwise 1x1 conv (+bias) + BN + act.
* :class:`LiteEffiBlockS1` - stride 1: split channels in halves, transform one half
  (1x1 -> depthwise 3x3 -> SE -> 1x1), concatenate with the other, shuffle channels.
* :class:`LiteEffiBlockS2` - stride 2: two down-sampling branches (depthwise 3x3 -> 1x1; 1x1 ->
  depthwise 3x3 -> SE -> 1x1) concatenated, then mixed by a depthwise 3x3 and a 1x1.
* :class:`CSPBlock` (with :class:`DarknetBlock`) - the neck's CSP stage.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from repyolo.nn.blocks import ConvBNAct, Fusable, fold_bn, fused_conv, make_act


def make_divisible(v: float, divisor: int = 16) -> int:
    """``v`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``), never more than
    10 % below ``v``: the Lite backbone's width rounding."""
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * v else out


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups: ``(B, g * c, H, W)``, channel ``i * c + j`` -> ``j * g + i``."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class SEBlock(nn.Module):
    """Squeeze-excitation with a HardSigmoid gate; ``(B, C, H, W) -> (B, C, H, W)``, hidden ``C // reduction``."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = nn.Conv2d(channels, channels // reduction, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels // reduction, channels, 1)
        self.hardsigmoid = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.hardsigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))


class DPBlock(Fusable):
    """Depthwise-separable unit: depthwise ``k x k`` conv (stride ``s``, bias) + BN + act, then
    pointwise 1x1 conv (bias) + BN + act. ``(B, c_in, H, W) -> (B, c_out, H/s, W/s)``.

    ``fuse()`` folds both BNs into their convs.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 5, s: int = 1, act: str = "hardswish"):
        super().__init__()
        self.conv_dw_1 = nn.Conv2d(c_in, c_in, k, s, k // 2, groups=c_in)
        self.bn_1 = nn.BatchNorm2d(c_in)
        self.act_1 = make_act(act)
        self.conv_pw_1 = nn.Conv2d(c_in, c_out, 1)
        self.bn_2 = nn.BatchNorm2d(c_out)
        self.act_2 = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_dw_1(x)
        x = self.act_1(x if self.bn_1 is None else self.bn_1(x))
        x = self.conv_pw_1(x)
        return self.act_2(x if self.bn_2 is None else self.bn_2(x))

    @torch.no_grad()
    def fuse(self) -> None:
        if self.bn_1 is None:
            return
        self.conv_dw_1 = fused_conv(self.conv_dw_1, *fold_bn(self.conv_dw_1.weight, self.bn_1, self.conv_dw_1.bias))
        self.conv_pw_1 = fused_conv(self.conv_pw_1, *fold_bn(self.conv_pw_1.weight, self.bn_2, self.conv_pw_1.bias))
        self.bn_1 = self.bn_2 = None


class LiteEffiBlockS1(nn.Module):
    """Stride-1 Lite block (``c_in == c_out``, even): ``(B, C, H, W) -> (B, C, H, W)``.

    The second half of the channels goes through ``conv_pw_1`` (1x1, ``C/2 -> mid``), ``conv_dw_1``
    (depthwise 3x3, no activation), ``se`` and ``conv_1`` (1x1, ``mid -> C/2``); it is concatenated
    after the untouched first half and the two halves' channels are interleaved.
    """

    def __init__(self, c_in: int, c_mid: int, c_out: int, act: str = "hardswish"):
        super().__init__()
        if c_in != c_out or c_in % 2:
            raise ValueError(f"LiteEffiBlockS1 needs even c_in == c_out, got {c_in} -> {c_out}")
        self.conv_pw_1 = ConvBNAct(c_in // 2, c_mid, 1, act=act)
        self.conv_dw_1 = ConvBNAct(c_mid, c_mid, 3, 1, groups=c_mid, act=None)
        self.se = SEBlock(c_mid)
        self.conv_1 = ConvBNAct(c_mid, c_out // 2, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, 1)
        x2 = self.conv_1(self.se(self.conv_dw_1(self.conv_pw_1(x2))))
        return channel_shuffle(torch.cat((x1, x2), 1), 2)


class LiteEffiBlockS2(nn.Module):
    """Stride-2 Lite block: ``(B, c_in, H, W) -> (B, c_out, H/2, W/2)``.

    Branch 1: ``conv_dw_1`` (depthwise 3x3 s2, no activation) -> ``conv_1`` (1x1 -> ``c_out/2``).
    Branch 2: ``conv_pw_2`` (1x1 -> ``mid/2``) -> ``conv_dw_2`` (depthwise 3x3 s2, no activation)
    -> ``se`` -> ``conv_2`` (1x1 -> ``c_out/2``). Concatenated (branch 1 first), then ``conv_dw_3``
    (depthwise 3x3) and ``conv_pw_3`` (1x1).
    """

    def __init__(self, c_in: int, c_mid: int, c_out: int, act: str = "hardswish"):
        super().__init__()
        half = c_mid // 2
        self.conv_dw_1 = ConvBNAct(c_in, c_in, 3, 2, groups=c_in, act=None)
        self.conv_1 = ConvBNAct(c_in, c_out // 2, 1, act=act)
        self.conv_pw_2 = ConvBNAct(c_in, half, 1, act=act)
        self.conv_dw_2 = ConvBNAct(half, half, 3, 2, groups=half, act=None)
        self.se = SEBlock(half)
        self.conv_2 = ConvBNAct(half, c_out // 2, 1, act=act)
        self.conv_dw_3 = ConvBNAct(c_out, c_out, 3, 1, groups=c_out, act=act)
        self.conv_pw_3 = ConvBNAct(c_out, c_out, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv_1(self.conv_dw_1(x))
        x2 = self.conv_2(self.se(self.conv_dw_2(self.conv_pw_2(x))))
        return self.conv_pw_3(self.conv_dw_3(torch.cat((x1, x2), 1)))


class LiteEffiBackbone(nn.Module):
    """Lite_EffiBackbone: ``conv_0`` (3x3 s2) then four stages ``lite_effiblock_1..4``, each a
    :class:`LiteEffiBlockS2` followed by ``repeats[i] - 1`` :class:`LiteEffiBlockS1`.

    Args:
        channels: stem width (used as is) and the four stage widths before the width multiplier,
            e.g. ``[24, 32, 64, 128, 256]``.
        repeats: blocks per stage, e.g. ``[1, 3, 7, 3]``.
        width: width multiplier; stage widths are rounded to multiples of 16 (:func:`make_divisible`).
        scale_size: the blocks' hidden width as a fraction of their output width.
    Input ``(B, 3, H, W)``; output ``[C3, C4, C5]`` (strides 8, 16, 32), finest first.
    """

    def __init__(self, channels: list[int], repeats: list[int], width: float = 1.0, scale_size: float = 0.5,
                 act: str = "hardswish"):
        super().__init__()
        if len(channels) != 5 or len(repeats) != 4:
            raise ValueError(f"Lite backbone expects 5 widths and 4 repeats, got {channels}, {repeats}")
        widths = [channels[0]] + [make_divisible(c * width) for c in channels[1:]]
        self.conv_0 = ConvBNAct(3, widths[0], 3, 2, act=act)
        for i in range(1, 5):
            c_in, c_out = widths[i - 1], widths[i]
            mid = int(c_out * scale_size)
            blocks = [LiteEffiBlockS2(c_in, mid, c_out, act)]
            blocks += [LiteEffiBlockS1(c_out, mid, c_out, act) for _ in range(repeats[i - 1] - 1)]
            setattr(self, f"lite_effiblock_{i}", nn.Sequential(*blocks))
        self.out_channels = widths[2:]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.lite_effiblock_1(self.conv_0(x))
        c3 = self.lite_effiblock_2(x)
        c4 = self.lite_effiblock_3(c3)
        return [c3, c4, self.lite_effiblock_4(c4)]


class DarknetBlock(nn.Module):
    """1x1 Conv-BN-act then a :class:`DPBlock` (no residual): ``(B, c_in, H, W) -> (B, c_out, H, W)``."""

    def __init__(self, c_in: int, c_out: int, k: int = 5, expansion: float = 1.0, act: str = "hardswish"):
        super().__init__()
        hidden = int(c_out * expansion)
        self.conv_1 = ConvBNAct(c_in, hidden, 1, act=act)
        self.conv_2 = DPBlock(hidden, c_out, k, 1, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_2(self.conv_1(x))


class CSPBlock(nn.Module):
    """CSP stage of the Lite neck: ``conv_3(cat(blocks(conv_1(x)), conv_2(x)))``, hidden ``int(c_out * e)``.

    ``(B, c_in, H, W) -> (B, c_out, H, W)``.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 5, e: float = 0.5, act: str = "hardswish"):
        super().__init__()
        mid = int(c_out * e)
        self.conv_1 = ConvBNAct(c_in, mid, 1, act=act)
        self.conv_2 = ConvBNAct(c_in, mid, 1, act=act)
        self.conv_3 = ConvBNAct(2 * mid, c_out, 1, act=act)
        self.blocks = DarknetBlock(mid, mid, k, 1.0, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_3(torch.cat((self.blocks(self.conv_1(x)), self.conv_2(x)), 1))


class LiteEffiNeck(nn.Module):
    """Lite_EffiNeck: a CSP-PAN at one unified width ``c`` with a fourth, stride-64 level.

    Every backbone level is first reduced to ``c`` (``reduce_layer0`` C5, ``1`` C4, ``2`` C3).
    Top-down: ``Csp_p4(cat(up(R5), R4))`` then ``Csp_p3(cat(up(P4), R3))``; bottom-up:
    ``Csp_n3(cat(downsample2(N3), P4))``, ``Csp_n4(cat(downsample1(N4), R5))`` (down-sampling by
    stride-2 :class:`DPBlock`); the extra level is ``p6_conv_1(R5) + p6_conv_2(N5)``.

    Input ``[C3, C4, C5]``; output ``[N3, N4, N5, N6]`` (strides 8..64), each ``(B, c, H_i, W_i)``.
    """

    def __init__(self, in_channels: list[int], unified_channels: int = 96, k: int = 5, act: str = "hardswish"):
        super().__init__()
        c = unified_channels
        c3, c4, c5 = in_channels
        self.reduce_layer0 = ConvBNAct(c5, c, 1, act=act)
        self.reduce_layer1 = ConvBNAct(c4, c, 1, act=act)
        self.reduce_layer2 = ConvBNAct(c3, c, 1, act=act)
        self.upsample0 = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.upsample1 = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.Csp_p4 = CSPBlock(2 * c, c, k, act=act)
        self.Csp_p3 = CSPBlock(2 * c, c, k, act=act)
        self.Csp_n3 = CSPBlock(2 * c, c, k, act=act)
        self.Csp_n4 = CSPBlock(2 * c, c, k, act=act)
        self.downsample2 = DPBlock(c, c, k, 2, act)
        self.downsample1 = DPBlock(c, c, k, 2, act)
        self.p6_conv_1 = DPBlock(c, c, k, 2, act)
        self.p6_conv_2 = DPBlock(c, c, k, 2, act)
        self.out_channels = [c] * 4

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        c3, c4, c5 = feats
        r5 = self.reduce_layer0(c5)
        r4 = self.reduce_layer1(c4)
        r3 = self.reduce_layer2(c3)
        p4 = self.Csp_p4(torch.cat((self.upsample0(r5), r4), 1))
        n3 = self.Csp_p3(torch.cat((self.upsample1(p4), r3), 1))
        n4 = self.Csp_n3(torch.cat((self.downsample2(n3), p4), 1))
        n5 = self.Csp_n4(torch.cat((self.downsample1(n4), r5), 1))
        n6 = self.p6_conv_1(r5) + self.p6_conv_2(n5)
        return [n3, n4, n5, n6]
