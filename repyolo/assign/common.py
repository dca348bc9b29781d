"""Pieces shared by the label assigners: their common call (:class:`Assigner`), conflict
resolution and target gathering.

Shapes: ``B`` images, ``n`` ground-truth slots per image (padded, ``mask_gt`` marks the real
ones), ``A`` anchor points, ``nc`` classes. Background anchors get label ``nc``, a zero box
and zero class scores.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

AssignResult = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def resolve_conflicts(mask_pos: torch.Tensor, quality: torch.Tensor, largest: bool = True
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Give each anchor claimed by several ground truths to the best one.

    Args:
        mask_pos: ``(B, n, A)`` bool, ground truth ``j`` claims anchor ``a``.
        quality: ``(B, n, A)`` how good the pair is (IoU; or a cost with ``largest=False``).
        largest: keep the claim with the largest (True) or smallest (False) ``quality``.
    Returns:
        ``target_gt_idx`` ``(B, A)`` long (index of the kept ground truth, 0 for background),
        ``fg_mask`` ``(B, A)`` bool, and the resolved ``mask_pos`` ``(B, n, A)`` with at most
        one True per anchor.
    """
    fg_mask = mask_pos.any(1)
    fill = float("-inf") if largest else float("inf")
    q = quality.masked_fill(~mask_pos, fill)
    target_gt_idx = q.argmax(1) if largest else q.argmin(1)
    target_gt_idx = target_gt_idx * fg_mask
    resolved = F.one_hot(target_gt_idx, mask_pos.shape[1]).transpose(1, 2).bool() & fg_mask[:, None, :]
    return target_gt_idx, fg_mask, resolved


def gather_targets(gt_labels: torch.Tensor, gt_bboxes: torch.Tensor, target_gt_idx: torch.Tensor,
                   fg_mask: torch.Tensor, num_classes: int) -> AssignResult:
    """Look up the class and box of each anchor's ground truth.

    Args:
        gt_labels: ``(B, n, 1)`` long; gt_bboxes ``(B, n, 4)``.
        target_gt_idx: ``(B, A)`` long; fg_mask ``(B, A)`` bool.
    Returns:
        ``target_labels`` ``(B, A)`` long (``num_classes`` for background), ``target_bboxes``
        ``(B, A, 4)`` (zeros for background), ``target_scores`` ``(B, A, nc)`` one-hot float
        (zeros for background) and ``fg_mask``.
    """
    labels = gt_labels[..., 0].long().gather(1, target_gt_idx)
    labels = torch.where(fg_mask, labels, torch.full_like(labels, num_classes))
    idx = target_gt_idx[..., None].expand(-1, -1, 4)
    bboxes = gt_bboxes.gather(1, idx) * fg_mask[..., None]
    scores = F.one_hot(labels, num_classes + 1)[..., :num_classes].to(gt_bboxes.dtype)
    return labels, bboxes, scores, fg_mask


def empty_targets(pred_scores: torch.Tensor, num_classes: int) -> AssignResult:
    """All-background result for a batch without any ground truth (``n == 0``)."""
    b, a = pred_scores.shape[:2]
    device, dtype = pred_scores.device, pred_scores.dtype
    return (torch.full((b, a), num_classes, dtype=torch.long, device=device),
            torch.zeros(b, a, 4, dtype=dtype, device=device),
            torch.zeros(b, a, num_classes, dtype=dtype, device=device),
            torch.zeros(b, a, dtype=torch.bool, device=device))


def gt_class_scores(pred_scores: torch.Tensor, gt_labels: torch.Tensor) -> torch.Tensor:
    """Score each anchor gives to each ground truth's class, without a ``(B, n, A, nc)`` tensor.

    ``pred_scores`` ``(B, A, nc)``, ``gt_labels`` ``(B, n, 1)`` -> ``(B, n, A)``.
    """
    b, a, nc = pred_scores.shape
    labels = gt_labels[..., 0].long().clamp(0, nc - 1)  # padded slots may hold junk
    return pred_scores.transpose(1, 2).gather(1, labels[..., None].expand(-1, -1, a))


def stride_per_anchor(strides, num_anchors_per_level: list[int] | None, num_anchors: int,
                      like: torch.Tensor) -> torch.Tensor:
    """Normalise ``strides`` (per level list, or ``(A,)`` / ``(A, 1)`` tensor) to an ``(A,)`` tensor."""
    if isinstance(strides, torch.Tensor) and strides.numel() == num_anchors:
        return strides.reshape(-1).to(like)
    if num_anchors_per_level is None:
        raise ValueError("per-level strides need num_anchors_per_level")
    s = torch.as_tensor([float(x) for x in strides], dtype=like.dtype, device=like.device)
    if len(s) != len(num_anchors_per_level) or sum(num_anchors_per_level) != num_anchors:
        raise ValueError(f"{len(s)} strides / levels {num_anchors_per_level} do not match {num_anchors} anchors")
    return s.repeat_interleave(torch.as_tensor(num_anchors_per_level, device=like.device))


def check_inputs(pred_scores: torch.Tensor, pred_bboxes: torch.Tensor | None, anchor_points: torch.Tensor,
                 gt_labels: torch.Tensor, gt_bboxes: torch.Tensor, mask_gt: torch.Tensor) -> None:
    """Raise ``ValueError`` naming the argument whose shape does not fit the others."""
    b, a, _ = pred_scores.shape
    if pred_bboxes is not None and pred_bboxes.shape != (b, a, 4):
        raise ValueError(f"pred_bboxes must be {(b, a, 4)}, got {tuple(pred_bboxes.shape)}")
    if anchor_points.shape != (a, 2):
        raise ValueError(f"anchor_points must be {(a, 2)}, got {tuple(anchor_points.shape)}")
    n = gt_bboxes.shape[1] if gt_bboxes.dim() == 3 else -1
    if gt_bboxes.shape != (b, n, 4) or gt_labels.shape != (b, n, 1) or mask_gt.shape != (b, n, 1):
        raise ValueError(f"gt_labels (B,n,1), gt_bboxes (B,n,4), mask_gt (B,n,1) with B={b} expected, got "
                         f"{tuple(gt_labels.shape)}, {tuple(gt_bboxes.shape)}, {tuple(mask_gt.shape)}")


class Assigner:
    """The label assigners' one contract (ATSS, TAL, SimOTA).

    ``assigner(pred_scores, pred_bboxes, anchor_points, gt_labels, gt_bboxes, mask_gt,
    num_anchors_per_level, strides, **extra)`` checks the inputs, answers an image batch without
    ground truth with all-background targets, and otherwise calls the subclass's :meth:`assign`.

    Args of the call:
        pred_scores: ``(B, A, nc)`` probabilities; pred_bboxes ``(B, A, 4)`` xyxy pixels (ATSS: may
            be ``None``).
        anchor_points: ``(A, 2)`` pixels.
        gt_labels: ``(B, n, 1)`` long; gt_bboxes ``(B, n, 4)`` xyxy pixels; mask_gt ``(B, n, 1)``.
        num_anchors_per_level: anchors of each level, in the order of ``anchor_points``.
        strides: per-level list or per-anchor ``(A,)`` / ``(A, 1)`` tensor.
    Returns:
        ``target_labels`` ``(B, A)`` long (``nc`` = background), ``target_bboxes`` ``(B, A, 4)``,
        ``target_scores`` ``(B, A, nc)``, ``fg_mask`` ``(B, A)`` bool.
    """

    num_classes: int

    @torch.no_grad()
    def __call__(self, pred_scores: torch.Tensor, pred_bboxes: torch.Tensor | None, anchor_points: torch.Tensor,
                 gt_labels: torch.Tensor, gt_bboxes: torch.Tensor, mask_gt: torch.Tensor,
                 num_anchors_per_level: list[int] | None = None, strides=None, **extra) -> AssignResult:
        check_inputs(pred_scores, pred_bboxes, anchor_points, gt_labels, gt_bboxes, mask_gt)
        if gt_bboxes.shape[1] == 0:
            return empty_targets(pred_scores, self.num_classes)
        return self.assign(pred_scores, pred_bboxes, anchor_points, gt_labels, gt_bboxes, mask_gt,
                           num_anchors_per_level, strides, **extra)

    def assign(self, pred_scores, pred_bboxes, anchor_points, gt_labels, gt_bboxes, mask_gt,
               num_anchors_per_level, strides) -> AssignResult:
        """The assignment itself, for at least one ground-truth slot (shapes as in the class docstring)."""
        raise NotImplementedError
