"""Classification losses on class logits with soft (IoU-aware) targets.

All take ``logits`` and ``targets`` of the same shape (``(..., nc)``) and compute binary cross-entropy
from the logits (``binary_cross_entropy_with_logits``: stable for large logits), weighted:

- VariFocal (Zhang et al., 2021): ``q`` = IoU-aware target score (0 for negatives).
  ``VFL = BCE(p, q) * (q if positive else alpha * p^gamma)``, alpha 0.75, gamma 2.
  Positives are given by ``labels`` (the one-hot class of positive anchors) or, when ``labels``
  is None, by ``q > 0``.
- Focal (Lin et al., 2017): ``FL = alpha_t (1 - p_t)^gamma BCE`` with ``p_t = p y + (1 - p)(1 - y)``,
  ``alpha_t = alpha y + (1 - alpha)(1 - y)``, alpha 0.25, gamma 2 (``y`` is the hard label).
- Quality Focal (GFL, Li et al., 2020): ``QFL = |q - p|^beta BCE(p, q)``, beta 2.
- Poly-1 (Leng et al., 2022): ``BCE(p, y) + epsilon (1 - p_t)``, epsilon 1.
- BCE: plain ``BCE(p, q)``.

Every function returns the unreduced loss, or its sum / mean with ``reduction``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CLS_LOSSES = ("vfl", "focal", "qfl", "poly", "bce")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")


def varifocal_loss(logits: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor | None = None,
                   alpha: float = 0.75, gamma: float = 2.0, reduction: str = "sum") -> torch.Tensor:
    """VariFocal loss; ``targets`` = soft scores ``q`` in 0..1, ``labels`` = 0/1 positives (optional)."""
    targets = targets.to(logits.dtype)
    positive = (targets > 0).to(logits.dtype) if labels is None else labels.to(logits.dtype)
    p = logits.sigmoid()
    weight = alpha * p.pow(gamma) * (1 - positive) + targets * positive
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return _reduce(bce * weight, reduction)


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
               reduction: str = "sum") -> torch.Tensor:
    """Sigmoid focal loss against hard 0/1 ``targets`` (``alpha < 0`` disables the class balance)."""
    targets = targets.to(logits.dtype)
    p = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = bce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return _reduce(loss, reduction)


def quality_focal_loss(logits: torch.Tensor, targets: torch.Tensor, beta: float = 2.0,
                       reduction: str = "sum") -> torch.Tensor:
    """Quality focal loss against soft ``targets`` ``q`` in 0..1."""
    targets = targets.to(logits.dtype)
    p = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return _reduce(bce * (targets - p).abs().pow(beta), reduction)


def poly1_loss(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 1.0,
               reduction: str = "sum") -> torch.Tensor:
    """Poly-1 cross-entropy ``BCE + epsilon (1 - p_t)`` (``targets`` may be soft)."""
    targets = targets.to(logits.dtype)
    p = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    return _reduce(bce + epsilon * (1 - p_t), reduction)


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Plain binary cross-entropy from logits against (soft) ``targets``."""
    return _reduce(F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none"),
                   reduction)


class ClassificationLoss:
    """A classification loss chosen by name, called uniformly by the detection loss.

    ``__call__(logits (B, A, nc), target_scores (B, A, nc), labels (B, A, nc) one-hot of positives)``
    returns the summed loss. ``vfl``, ``qfl`` and ``bce`` learn the soft target scores; ``focal`` and
    ``poly`` learn the hard one-hot labels.
    """

    def __init__(self, name: str = "vfl", **kwargs):
        name = name.lower()
        if name not in CLS_LOSSES:
            raise ValueError(f"unknown classification loss {name!r}; choose one of {', '.join(CLS_LOSSES)}")
        self.name = name
        self.kwargs = kwargs

    def __call__(self, logits: torch.Tensor, target_scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.name == "vfl":
            return varifocal_loss(logits, target_scores, labels, **self.kwargs)
        if self.name == "focal":
            return focal_loss(logits, labels, **self.kwargs)
        if self.name == "qfl":
            return quality_focal_loss(logits, target_scores, **self.kwargs)
        if self.name == "poly":
            return poly1_loss(logits, labels, **self.kwargs)
        return bce_loss(logits, target_scores, **self.kwargs)
