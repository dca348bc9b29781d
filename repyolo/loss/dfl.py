"""Distribution Focal Loss (GFL, Li et al., 2020).

A distance is predicted as a distribution over ``reg_max + 1`` bins ``0, 1, ..., reg_max`` (stride
units). A target ``y`` between bins ``y_l = floor(y)`` and ``y_r = y_l + 1`` is learned by the two
neighbours, weighted by proximity:

    DFL(S, y) = -((y_r - y) log S_{y_l} + (y - y_l) log S_{y_r})

so the distribution's expectation converges to ``y``. Targets must lie in ``[0, reg_max)``; the
detection loss clamps them to ``reg_max - 0.01``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def distribution_focal_loss(pred_logits: torch.Tensor, target: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """DFL of bin logits ``(..., reg_max + 1)`` against distances ``(...)`` -> ``(...)`` (or reduced).

    Targets outside ``[0, reg_max)`` are clamped into it.
    """
    n_bins = pred_logits.shape[-1]
    target = target.to(pred_logits.dtype).clamp(0, n_bins - 1 - 1e-4)
    left = target.floor().long()
    right = left + 1
    w_left = right.to(target.dtype) - target
    w_right = target - left.to(target.dtype)
    log_p = F.log_softmax(pred_logits, -1)
    loss = -(log_p.gather(-1, left[..., None])[..., 0] * w_left + log_p.gather(-1, right[..., None])[..., 0] * w_right)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction != "none":
        raise ValueError(f"unknown reduction {reduction!r}")
    return loss
