"""The efficient decoupled head of YOLOv6 (anchor-free, anchor-point based).

Per level ``i`` (hybrid channels: one 3x3 conv per branch, as wide as the neck output):
``x = stems[i](f_i)``; classes ``cls_preds[i](cls_convs[i](x))``; box
``reg_preds[i](reg_convs[i](x))``: four distances l, t, r, b from the anchor point,
in units of the level's stride, either directly (``use_dfl=False``) or as a
distribution over ``reg_max + 1`` bins (DFL) whose expectation is the distance.

The stem and branch convs are Conv-BN-act (``unit='conv'``: 1x1 stem, 3x3 branches) or, in
the Lite head (Lite_EffideHead), depthwise-separable :class:`~repyolo.nn.lite.DPBlock` units
(``unit='dpblock'``: depthwise ``kernel x kernel`` + pointwise, for the stem and both branches).

Optional training-only branches, dropped by ``fuse()``:
- ``aux_anchor`` (v3 anchor-aided training): ``cls_preds_ab`` / ``reg_preds_ab`` predict
  for ``na`` anchor boxes per point.
- ``aux_dist`` (v3 DLD): ``reg_preds_dist``, a regression branch used to distil location, with
  ``4 * (dist_reg_max + 1)`` outputs: DFL bins (``dist_reg_max`` defaults to ``reg_max``), or 4
  plain distances with ``dist_reg_max: 0`` (the official ``distill_ns`` on a ``reg_max 0`` config).

The DFL projection constants ``proj`` / ``proj_conv`` (bins ``0..reg_max``) exist when
``reg_max > 0``; the Lite head (``reg_max 0``) has none, as in the official checkpoints.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from repyolo.nn.blocks import ConvBNAct
from repyolo.nn.lite import DPBlock
from repyolo.ops.boxes import dfl_decode, dist2bbox, make_anchors


def _predict(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A prediction conv ``(B, C, H, W) -> (B, C_out, H, W)`` in float32, also under autocast.

    Under bfloat16 autocast (8-bit mantissa) a box distance of 8-16 strides would be rounded to
    1/16 stride (0.5 px at stride 8, 2 px at stride 32) and every class logit to ~1/64; these
    1x1 convs are a negligible share of the network's work, so they keep full precision. ``conv``
    may be any module (QAT wraps it); a model cast to half precision without autocast is left as it is."""
    if x.dtype in (torch.float16, torch.bfloat16) and torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return conv(x.float())
    return conv(x)


class EffiDeHead(nn.Module):
    """Decoupled head.

    Args:
        in_channels: neck output channels per level, finest first.
        num_classes: ``nc``.
        strides: stride of each level, e.g. ``[8, 16, 32]``.
        reg_max: DFL bins - 1 (16 in YOLOv6); ``use_dfl``: whether ``reg_preds`` predicts bins.
        act: activation of the stem/branch convs (``'silu'`` in v3, ``'hardswish'`` in Lite).
        aux_anchor: number of anchors of the anchor-aided branch (0 = none).
        aux_dist: build the DLD ``reg_preds_dist`` branch; ``dist_reg_max``: its bins - 1
            (``None`` = ``reg_max``; 0 = four plain distances).
        unit: ``'conv'`` (Conv-BN-act stem 1x1, branches 3x3) or ``'dpblock'`` (depthwise-separable
            stem and branches, depthwise ``kernel x kernel``).

    Forward ``feats`` (list of ``(B, C_i, H_i, W_i)``):
        eval -> ``(B, A, 4 + nc)``: ``x1 y1 x2 y2`` in input pixels, class scores in 0..1.
        train -> dict with ``cls`` ``(B, A, nc)`` logits, ``reg`` ``(B, A, 4)`` distances or
        ``(B, A, 4 * (reg_max + 1))`` DFL logits, ``anchors`` ``(A, 2)`` pixel points,
        ``strides`` ``(A, 1)``, ``feats`` (the neck outputs), and the auxiliary outputs
        ``reg_dist`` ``(B, A, 4 * (dist_reg_max + 1))``, ``cls_ab`` ``(B, A * na, nc)``,
        ``reg_ab`` ``(B, A * na, 4)`` when those branches exist.
    """

    prior_prob = 1e-2

    def __init__(self, in_channels: list[int], num_classes: int = 80, strides: list[int] | None = None,
                 reg_max: int = 16, use_dfl: bool = False, act: str = "silu", aux_anchor: int = 0,
                 aux_dist: bool = False, dist_reg_max: int | None = None, unit: str = "conv", kernel: int = 5):
        super().__init__()
        self.nc = num_classes
        self.nl = len(in_channels)
        self.strides = list(strides or [8 * 2 ** i for i in range(self.nl)])
        self.reg_max = reg_max
        self.dist_reg_max = reg_max if dist_reg_max is None else int(dist_reg_max)
        self.use_dfl = use_dfl
        if use_dfl and reg_max < 1:
            raise ValueError(f"use_dfl needs reg_max >= 1, got {reg_max}")
        self.na = aux_anchor
        n_reg = 4 * (reg_max + 1) if use_dfl else 4
        if unit == "conv":
            def stem(c):
                return ConvBNAct(c, c, 1, 1, act=act)

            def branch(c):
                return ConvBNAct(c, c, 3, 1, act=act)
        elif unit == "dpblock":
            def stem(c):
                return DPBlock(c, c, kernel, 1, act=act)
            branch = stem
        else:
            raise ValueError(f"unknown head unit {unit!r}; expected 'conv' or 'dpblock'")
        self.stems = nn.ModuleList(stem(c) for c in in_channels)
        self.cls_convs = nn.ModuleList(branch(c) for c in in_channels)
        self.reg_convs = nn.ModuleList(branch(c) for c in in_channels)
        self.cls_preds = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in in_channels)
        self.reg_preds = nn.ModuleList(nn.Conv2d(c, n_reg, 1) for c in in_channels)
        self.cls_preds_ab = self.reg_preds_ab = self.reg_preds_dist = None
        if aux_anchor:
            self.cls_preds_ab = nn.ModuleList(nn.Conv2d(c, num_classes * aux_anchor, 1) for c in in_channels)
            self.reg_preds_ab = nn.ModuleList(nn.Conv2d(c, 4 * aux_anchor, 1) for c in in_channels)
        if aux_dist:
            self.reg_preds_dist = nn.ModuleList(nn.Conv2d(c, 4 * (self.dist_reg_max + 1), 1) for c in in_channels)
        self.proj_conv = None
        if reg_max > 0:
            self.register_buffer("proj", torch.linspace(0, reg_max, reg_max + 1))
            self.proj_conv = nn.Conv2d(reg_max + 1, 1, 1, bias=False)
            self.proj_conv.weight.requires_grad_(False)
        self._anchor_cache: dict = {}
        self.initialize_biases()

    @torch.no_grad()
    def initialize_biases(self) -> None:
        """Class logits start at the prior probability, box outputs at 1 stride, all weights 0."""
        cls_bias = -math.log((1 - self.prior_prob) / self.prior_prob)
        for convs, bias in ((self.cls_preds, cls_bias), (self.cls_preds_ab, cls_bias),
                            (self.reg_preds, 1.0), (self.reg_preds_ab, 1.0), (self.reg_preds_dist, 1.0)):
            for conv in convs or []:
                conv.weight.zero_()
                conv.bias.fill_(bias)
        if self.proj_conv is not None:
            self.proj.copy_(torch.linspace(0, self.reg_max, self.reg_max + 1))
            self.proj_conv.weight.copy_(self.proj.view(1, -1, 1, 1))

    def anchors(self, feats: list[torch.Tensor], dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor points ``(A, 2)`` (pixels) and strides ``(A, 1)`` for these feature maps (cached), in
        ``dtype`` (default: the features'). The grid is built in float32 and cast: bfloat16 could not
        hold it (above 1024 px its steps are 8 px), and the TorchScript ONNX exporter cannot emit a
        float16 ``arange``."""
        shapes = tuple(tuple(f.shape[2:]) for f in feats)
        key = (shapes, feats[0].device, dtype or feats[0].dtype)
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
            return self._anchor_grid(*key)
        if key not in self._anchor_cache:
            self._anchor_cache = {key: self._anchor_grid(*key)}
        return self._anchor_cache[key]

    def _anchor_grid(self, shapes: tuple, device: torch.device, dtype: torch.dtype):
        """:meth:`anchors` uncached."""
        points, strides = make_anchors(list(shapes), self.strides, 0.5, device, torch.float32)
        if dtype != torch.float32:
            points, strides = points.to(dtype), strides.to(dtype)
        return points, strides

    @staticmethod
    def _flatten(x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, H * W, C)``."""
        return x.flatten(2).transpose(1, 2)

    def forward(self, feats: list[torch.Tensor]):
        cls_out, reg_out, dist_out, cls_ab, reg_ab = [], [], [], [], []
        for i, f in enumerate(feats):
            cls_feat, reg_feat = self._branches(i, f)
            cls_out.append(self._flatten(_predict(self.cls_preds[i], cls_feat)))
            reg_out.append(self._flatten(_predict(self.reg_preds[i], reg_feat)))
            if self.training:
                if self.reg_preds_dist is not None:
                    dist_out.append(self._flatten(_predict(self.reg_preds_dist[i], reg_feat)))
                if self.cls_preds_ab is not None:
                    b, _, h, w = cls_feat.shape
                    c = _predict(self.cls_preds_ab[i], cls_feat).view(b, self.na, self.nc, h * w)
                    r = _predict(self.reg_preds_ab[i], reg_feat).view(b, self.na, 4, h * w)
                    cls_ab.append(c.permute(0, 3, 1, 2).reshape(b, h * w * self.na, self.nc))
                    reg_ab.append(r.permute(0, 3, 1, 2).reshape(b, h * w * self.na, 4))
        cls = torch.cat(cls_out, 1)
        reg = torch.cat(reg_out, 1)
        points, strides = self.anchors(feats, reg.dtype)  # float32 under autocast, like the predictions
        if self.training:
            out = {"cls": cls, "reg": reg, "anchors": points, "strides": strides, "feats": feats}
            if dist_out:
                out["reg_dist"] = torch.cat(dist_out, 1)
            if cls_ab:
                out["cls_ab"] = torch.cat(cls_ab, 1)
                out["reg_ab"] = torch.cat(reg_ab, 1)
            return out
        dist = dfl_decode(reg) if self.use_dfl else reg
        boxes = dist2bbox(dist * strides, points)
        return torch.cat((boxes, cls.sigmoid()), -1)

    def _branches(self, i: int, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Level ``i``: stem, then the class and box branch features, each ``(B, C_i, H_i, W_i)``."""
        x = self.stems[i](f)
        return self.cls_convs[i](x), self.reg_convs[i](x)

    def raw_levels(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """The head's outputs before decoding, one map per level (what deployment graphs end with):
        ``(B, nc + n_reg, H_i, W_i)``: sigmoid class scores, then the box regression: 4 ltrb distances
        in grid units (``n_reg = 4``) or, with DFL, the ``4 * (reg_max + 1)`` bin logits (side-major).
        Anchor points are the cell centres; distances times the stride are pixels."""
        out = []
        for i, f in enumerate(feats):
            cls_feat, reg_feat = self._branches(i, f)
            out.append(torch.cat((self.cls_preds[i](cls_feat).sigmoid(), self.reg_preds[i](reg_feat)), 1))
        return out

    def drop_aux(self) -> None:
        """Remove the training-only branches (anchor-aided, DLD) for deployment."""
        self.cls_preds_ab = self.reg_preds_ab = self.reg_preds_dist = None
        self.na = 0
