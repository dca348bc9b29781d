"""Box formats, anchor points and the anchor-point box coding of YOLOv6.

Conventions: ``xyxy`` = corners in pixels, ``xywh`` = centre + size (``cxcywh``),
``ltrb`` = distances from an anchor point to the left, top, right and bottom edges.
"""
from __future__ import annotations

import torch


def xyxy2xywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` corners -> ``(..., 4)`` centre x, centre y, width, height."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), -1)


def xywh2xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` centre x, centre y, width, height -> ``(..., 4)`` corners."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1)


def make_anchors(
    feature_shapes: list[tuple[int, int]],
    strides: list[int],
    offset: float = 0.5,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor points of every feature level, concatenated level by level (row-major).

    Args:
        feature_shapes: ``[(H_l, W_l), ...]`` per level.
        strides: the stride of each level in input pixels.
        offset: 0.5 puts the point at the cell centre.
    Returns:
        points ``(A, 2)`` as ``x, y`` in input pixels, and strides ``(A, 1)``,
        where ``A = sum(H_l * W_l)``.
    """
    points, stride_list = [], []
    for (h, w), s in zip(feature_shapes, strides):
        ys = (torch.arange(h, device=device, dtype=dtype) + offset) * s
        xs = (torch.arange(w, device=device, dtype=dtype) + offset) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((xx, yy), -1).reshape(-1, 2))
        stride_list.append(torch.full((h * w, 1), float(s), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(stride_list)


def dist2bbox(distance: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Decode ``(..., A, 4)`` ltrb distances at ``(A, 2)`` points into ``(..., A, 4)`` xyxy."""
    lt, rb = distance[..., :2], distance[..., 2:]
    return torch.cat((points - lt, points + rb), -1)


def bbox2dist(points: torch.Tensor, boxes: torch.Tensor, max_dist: float | None = None) -> torch.Tensor:
    """Encode ``(..., A, 4)`` xyxy boxes as ltrb distances from ``(A, 2)`` points.

    ``max_dist`` clamps the distances to ``[0, max_dist - 0.01]`` (for DFL targets).
    """
    lt = points - boxes[..., :2]
    rb = boxes[..., 2:] - points
    dist = torch.cat((lt, rb), -1)
    if max_dist is not None:
        dist = dist.clamp(0, max_dist - 0.01)
    return dist


def dfl_decode(logits: torch.Tensor) -> torch.Tensor:
    """Distribution Focal Loss bins -> distances: ``(..., 4 * (reg_max + 1))`` logits of the four
    sides -> ``(..., 4)`` expected distances (the softmax-weighted mean of the bin values
    ``0 .. reg_max``). The one decoder of DFL heads, used by the head, the loss and distillation."""
    bins = logits.shape[-1] // 4
    prob = logits.reshape(*logits.shape[:-1], 4, bins).softmax(-1)
    return prob @ torch.arange(bins, device=logits.device, dtype=prob.dtype)


def decode_distances(reg: torch.Tensor) -> torch.Tensor:
    """A regression output -> ``(..., 4)`` ltrb distances: ``(..., 4)`` plain distances are returned as
    they are, ``(..., 4 * bins)`` DFL logits (``bins > 1``) are decoded (:func:`dfl_decode`). For the
    branches whose width says what they hold (a DLD branch with one bin per side is four distances)."""
    return reg if reg.shape[-1] == 4 else dfl_decode(reg)


def decode_levels(levels: list[torch.Tensor], nc: int, strides: list[int], use_dfl: bool = False) -> torch.Tensor:
    """Raw per-level head outputs -> the model's eval-mode predictions.

    Args:
        levels: per level ``(B, nc + n_reg, H_l, W_l)``: class scores (already 0..1), then ``n_reg``
            box channels: 4 ltrb distances in grid units, or ``4 * (reg_max + 1)`` DFL logits
            (side-major) when ``use_dfl`` (what :meth:`repyolo.nn.head.EffiDeHead.raw_levels` and the
            NCNN graphs give).
        strides: the stride of each level.
    Returns:
        ``(B, A, 4 + nc)``: ``x1 y1 x2 y2`` in input pixels (anchor points at cell centres), scores.
    """
    flat = [lv.flatten(2).transpose(1, 2) for lv in levels]  # (B, H*W, C), row-major cells
    out = torch.cat(flat, 1)
    cls, reg = out[..., :nc], out[..., nc:]
    points, stride = make_anchors([tuple(lv.shape[2:]) for lv in levels], strides, 0.5, out.device, out.dtype)
    dist = dfl_decode(reg) if use_dfl else reg
    return torch.cat((dist2bbox(dist * stride, points), cls), -1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` xyxy -> ``(...)`` area (negative sizes count as 0)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def points_in_boxes(points: torch.Tensor, boxes: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Whether each point lies strictly inside each box.

    Args:
        points: ``(A, 2)`` x, y.
        boxes: ``(..., n, 4)`` xyxy.
        eps: a point must be more than ``eps`` from every edge (points on an edge are outside).
    Returns:
        ``(..., n, A)`` bool.
    """
    x, y = points[:, 0], points[:, 1]
    x1, y1, x2, y2 = (boxes[..., i, None] for i in range(4))
    inside = torch.minimum(torch.minimum(x - x1, y - y1), torch.minimum(x2 - x, y2 - y))
    return inside > eps
