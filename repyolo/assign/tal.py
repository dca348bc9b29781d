"""Task-aligned assignment (TOOD, Feng et al., 2021), YOLOv6's main assigner.

For every ground truth and anchor point, the alignment metric ``t = s^alpha * u^beta`` combines
the predicted score ``s`` of the ground truth's class and the IoU ``u`` of the predicted box with
the ground truth (alpha 1, beta 6). Candidates are points strictly inside the ground truth; the
``topk`` (13) candidates with the largest metric are positives; an anchor claimed by several
ground truths goes to the one with the highest IoU. The class target of a positive is
``t / max_t(gt) * max_u(gt)`` (the metric normalised per ground truth so that its best
positive gets that ground truth's best IoU) on the one-hot class.
"""
from __future__ import annotations

import torch

from repyolo.assign.common import Assigner, AssignResult, gather_targets, gt_class_scores, resolve_conflicts
from repyolo.ops.boxes import points_in_boxes
from repyolo.ops.iou import box_iou


class TaskAlignedAssigner(Assigner):
    """Dynamic assigner driven by the alignment of classification and localisation.

    Args:
        num_classes: ``nc``; topk: positives per ground truth; alpha, beta: metric exponents;
        eps: margin for "strictly inside" and for the normalisation.
    """

    def __init__(self, num_classes: int, topk: int = 13, alpha: float = 1.0, beta: float = 6.0, eps: float = 1e-9):
        self.num_classes = num_classes
        self.topk = topk
        self.alpha = alpha
        self.beta = beta
        self.eps = eps

    def assign(self, pred_scores: torch.Tensor, pred_bboxes: torch.Tensor, anchor_points: torch.Tensor,
               gt_labels: torch.Tensor, gt_bboxes: torch.Tensor, mask_gt: torch.Tensor,
               num_anchors_per_level=None, strides=None) -> AssignResult:
        """Task-aligned targets (:class:`~repyolo.assign.common.Assigner` call; the levels and strides
        are not used)."""
        gt_bboxes = gt_bboxes.to(pred_bboxes.dtype)
        candidates = points_in_boxes(anchor_points, gt_bboxes, self.eps) & mask_gt.bool()  # (B, n, A)

        overlaps = box_iou(gt_bboxes[:, :, None], pred_bboxes[:, None]) * candidates  # (B, n, A)
        scores = gt_class_scores(pred_scores, gt_labels).to(overlaps.dtype)
        metric = scores.pow(self.alpha) * overlaps.pow(self.beta) * candidates

        k = min(self.topk, metric.shape[-1])
        top = metric.topk(k, -1).indices  # (B, n, k)
        in_topk = torch.zeros_like(candidates).scatter_(-1, top, True)
        mask_pos = in_topk & candidates

        target_gt_idx, fg_mask, mask_pos = resolve_conflicts(mask_pos, overlaps, largest=True)
        labels, bboxes, one_hot, fg_mask = gather_targets(gt_labels, gt_bboxes, target_gt_idx, fg_mask,
                                                          self.num_classes)
        metric = metric * mask_pos
        max_metric = metric.amax(-1, keepdim=True)  # (B, n, 1)
        max_iou = (overlaps * mask_pos).amax(-1, keepdim=True)
        norm = (metric * max_iou / (max_metric + self.eps)).amax(1)  # (B, A)
        return labels, bboxes, (one_hot * norm[..., None]).to(pred_scores.dtype), fg_mask
