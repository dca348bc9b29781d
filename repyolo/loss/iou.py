"""The box regression loss ``1 - similarity`` over the IoU family of :mod:`repyolo.ops.iou`."""
from __future__ import annotations

import torch

from repyolo.ops.iou import IOU_TYPES, box_iou


class IoULoss:
    """Box regression loss ``1 - box_iou(pred, target, iou_type)``.

    ``__call__(pred (..., 4), target (..., 4), weight (...) | None) -> (...)`` unreduced, or summed /
    averaged with ``reduction='sum' | 'mean'``.
    """

    def __init__(self, iou_type: str = "giou", reduction: str = "none", eps: float = 1e-7):
        if iou_type.lower() not in IOU_TYPES:
            raise ValueError(f"unknown iou_type {iou_type!r}; choose one of {', '.join(IOU_TYPES)}")
        if reduction not in ("none", "sum", "mean"):
            raise ValueError(f"unknown reduction {reduction!r}")
        self.iou_type = iou_type.lower()
        self.reduction = reduction
        self.eps = eps

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        loss = 1.0 - box_iou(pred, target, self.iou_type, self.eps)
        if weight is not None:
            loss = loss * weight
        if self.reduction == "sum":
            return loss.sum()
        if self.reduction == "mean":
            return loss.mean()
        return loss
