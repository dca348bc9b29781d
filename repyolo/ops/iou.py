"""IoU-family box similarities: the one implementation used by the assigners, the losses, NMS and the metrics.

All functions pair box ``i`` of the first argument with box ``i`` of the second (broadcasting
``(..., 4)`` xyxy shapes) and return ``(...)``. ``box2`` is the target in the asymmetric
terms (CIoU's aspect term, SIoU's shape term).

- IoU   = |A n B| / |A u B|
- GIoU  = IoU - |C \\ (A u B)| / |C|                  (C: smallest enclosing box)
- DIoU  = IoU - rho^2 / c^2                           (rho: centre distance, c: diagonal of C)
- CIoU  = DIoU - a * v,  v = 4/pi^2 (atan(w2/h2) - atan(w1/h1))^2,  a = v / (1 - IoU + v)
          (a treated as a constant in the backward pass, as in the CIoU paper)
- SIoU  = IoU - (Delta + Omega) / 2                   (Gevorgyan, 2022)
    angle cost   Lambda = 1 - 2 sin^2(arcsin(x) - pi/4) with x = sin of the smaller angle between
                 the centre-to-centre line and an axis; this equals ``2 |dx| |dy| / sigma^2`` (the
                 closed form is used: it has a finite gradient everywhere)
    distance     Delta = sum_{x,y} 1 - exp(-(2 - Lambda) * (d_t / C_t)^2),  C_t: enclosing box size
    shape        Omega = sum_{w,h} (1 - exp(-|t1 - t2| / max(t1, t2)))^theta,  theta = 4
"""
from __future__ import annotations

import math

import torch

IOU_TYPES = ("iou", "giou", "diou", "ciou", "siou")


def box_iou(box1: torch.Tensor, box2: torch.Tensor, iou_type: str = "iou", eps: float = 1e-9,
            siou_theta: float = 4.0) -> torch.Tensor:
    """Similarity of matching xyxy boxes ``(..., 4)`` x ``(..., 4)`` (broadcast) -> ``(...)``, 1 for
    identical boxes. Element ``i`` of one is paired with element ``i`` of the other; broadcasting
    ``(B, n, 1, 4)`` against ``(B, 1, A, 4)`` gives a ``(B, n, A)`` table (see :func:`pairwise_iou`).

    Degenerate boxes (zero width or height) give finite values and gradients.
    """
    iou_type = iou_type.lower()
    if iou_type not in IOU_TYPES:
        raise ValueError(f"unknown iou_type {iou_type!r}; choose one of {', '.join(IOU_TYPES)}")
    b1x1, b1y1, b1x2, b1y2 = box1.unbind(-1)
    b2x1, b2y1, b2x2, b2y2 = box2.unbind(-1)
    w1, h1 = (b1x2 - b1x1).clamp(min=0), (b1y2 - b1y1).clamp(min=0)
    w2, h2 = (b2x2 - b2x1).clamp(min=0), (b2y2 - b2y1).clamp(min=0)
    inter = ((torch.minimum(b1x2, b2x2) - torch.maximum(b1x1, b2x1)).clamp(min=0)
             * (torch.minimum(b1y2, b2y2) - torch.maximum(b1y1, b2y1)).clamp(min=0))
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if iou_type == "iou":
        return iou

    cw = torch.maximum(b1x2, b2x2) - torch.minimum(b1x1, b2x1)  # enclosing box
    ch = torch.maximum(b1y2, b2y2) - torch.minimum(b1y1, b2y1)
    if iou_type == "giou":
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area

    dx = (b2x1 + b2x2 - b1x1 - b1x2) / 2  # centre offsets, box1 -> box2
    dy = (b2y1 + b2y2 - b1y1 - b1y2) / 2
    if iou_type in ("diou", "ciou"):
        diou = iou - (dx ** 2 + dy ** 2) / (cw ** 2 + ch ** 2 + eps)
        if iou_type == "diou":
            return diou
        v = (4 / math.pi ** 2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
        with torch.no_grad():
            alpha = v / (1 - iou + v + eps)
        return diou - alpha * v

    # SIoU
    sigma2 = dx ** 2 + dy ** 2 + eps
    angle_cost = 2 * dx.abs() * dy.abs() / sigma2  # = sin(2 alpha) = 1 - 2 sin^2(arcsin(x) - pi/4)
    gamma = 2 - angle_cost
    rho_x = (dx / (cw + eps)) ** 2
    rho_y = (dy / (ch + eps)) ** 2
    distance_cost = 2 - torch.exp(-gamma * rho_x) - torch.exp(-gamma * rho_y)
    omega_w = (w1 - w2).abs() / (torch.maximum(w1, w2) + eps)
    omega_h = (h1 - h2).abs() / (torch.maximum(h1, h2) + eps)
    shape_cost = (1 - torch.exp(-omega_w)) ** siou_theta + (1 - torch.exp(-omega_h)) ** siou_theta
    return iou - (distance_cost + shape_cost) / 2


def pairwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """IoU of every pair of ``(..., N, 4)`` and ``(..., M, 4)`` xyxy boxes -> ``(..., N, M)``."""
    return box_iou(boxes1[..., :, None, :], boxes2[..., None, :, :], "iou", eps)


__all__ = ["IOU_TYPES", "box_iou", "pairwise_iou"]
