"""SimOTA (YOLOX, Ge et al., 2021): optimal-transport-like assignment with a top-k shortcut.

For every ground truth and anchor point the cost is

    cost = BCE(scores, one-hot class) summed over classes + iou_weight (3) * -log(IoU)
           + big * (point not both inside the box and within ``center_radius`` strides of its centre)

where IoU is between the predicted box and the ground truth. Only points in the centre prior
(strictly inside the box, or strictly within ``center_radius`` (2.5) strides of its centre
on both axes) can become positives; the ``big`` term makes points that satisfy only one of the two
conditions a last resort. Each ground truth takes its ``k = max(1, int(sum of its top-10 IoUs))``
cheapest points (dynamic k); an anchor taken by several ground truths keeps the one with the
lowest cost. Class targets are the one-hot class times the IoU of the prediction.

The class cost is computed from per-anchor sums, so no ``(B, n, A, nc)`` tensor is built:
``sum_c BCE(p_c, y_c) = sum_c -log(1 - p_c) + log(1 - p_gt) - log(p_gt)``.
"""
from __future__ import annotations

import torch

from repyolo.assign.common import (
    Assigner,
    AssignResult,
    gather_targets,
    gt_class_scores,
    resolve_conflicts,
    stride_per_anchor,
)
from repyolo.ops.boxes import points_in_boxes
from repyolo.ops.iou import box_iou


class SimOTAAssigner(Assigner):
    """Dynamic-k, cost-based assigner.

    Args:
        num_classes: ``nc``; iou_weight: lambda of the IoU cost; center_radius: centre prior in
        strides; candidate_topk: IoUs summed for the dynamic k; big_cost: the outside-prior cost;
        eps: margin for "strictly inside" and offset of the IoU inside the log (probabilities are
        clamped to ``[1e-6, 1 - 1e-6]``).
    """

    def __init__(self, num_classes: int, iou_weight: float = 3.0, center_radius: float = 2.5,
                 candidate_topk: int = 10, big_cost: float = 1e5, eps: float = 1e-8):
        self.num_classes = num_classes
        self.iou_weight = iou_weight
        self.center_radius = center_radius
        self.candidate_topk = candidate_topk
        self.big_cost = big_cost
        self.eps = eps

    def cost(self, pred_scores: torch.Tensor, overlaps: torch.Tensor, gt_labels: torch.Tensor) -> torch.Tensor:
        """Classification + IoU cost ``(B, n, A)`` of ``(B, A, nc)`` scores and ``(B, n, A)`` IoUs."""
        p = pred_scores.to(overlaps.dtype).clamp(1e-6, 1 - 1e-6)  # 1 - 1e-8 would round to 1 in float32
        neg_all = -torch.log1p(-p).sum(-1)  # (B, A): every class treated as negative
        p_gt = gt_class_scores(p, gt_labels)  # (B, n, A)
        cls_cost = neg_all[:, None, :] + torch.log1p(-p_gt) - torch.log(p_gt)
        iou_cost = -torch.log(overlaps + self.eps)
        return cls_cost + self.iou_weight * iou_cost

    def assign(self, pred_scores: torch.Tensor, pred_bboxes: torch.Tensor, anchor_points: torch.Tensor,
               gt_labels: torch.Tensor, gt_bboxes: torch.Tensor, mask_gt: torch.Tensor,
               num_anchors_per_level: list[int] | None = None, strides=None) -> AssignResult:
        """SimOTA targets (:class:`~repyolo.assign.common.Assigner` call); ``strides`` is required (the
        centre prior's radius), ``num_anchors_per_level`` only when it is a per-level list."""
        if strides is None:
            raise ValueError("SimOTA needs the strides (centre prior radius)")
        a = anchor_points.shape[0]
        stride = stride_per_anchor(strides, num_anchors_per_level, a, anchor_points)
        gt_bboxes = gt_bboxes.to(pred_bboxes.dtype)
        valid = mask_gt.bool()

        in_box = points_in_boxes(anchor_points, gt_bboxes, self.eps)  # (B, n, A)
        centres = (gt_bboxes[..., :2] + gt_bboxes[..., 2:]) / 2
        radius = (self.center_radius * stride)[:, None]  # (A, 1)
        offset = (anchor_points - centres[..., None, :]).abs()  # (B, n, A, 2)
        in_centre = (offset < radius).all(-1)
        prior = (in_box | in_centre) & valid

        overlaps = box_iou(gt_bboxes[:, :, None], pred_bboxes[:, None]) * prior  # (B, n, A)
        cost = self.cost(pred_scores, overlaps, gt_labels)
        cost = cost + self.big_cost * ~(in_box & in_centre)
        cost = cost.masked_fill(~prior, float("inf"))

        k_max = min(self.candidate_topk, a)
        # (B, n); the 1e-6 keeps ten IoUs of 1 - eps from giving k = 9
        dynamic_k = (overlaps.topk(k_max, -1).values.sum(-1) + 1e-6).int().clamp(min=1)
        cheapest = cost.topk(k_max, -1, largest=False)  # (B, n, k_max), ascending
        rank = torch.arange(k_max, device=cost.device)
        take = (rank < dynamic_k[..., None]) & torch.isfinite(cheapest.values)
        mask_pos = torch.zeros_like(prior).scatter_(-1, cheapest.indices, take) & prior

        target_gt_idx, fg_mask, _ = resolve_conflicts(mask_pos, cost, largest=False)
        labels, bboxes, scores, fg_mask = gather_targets(gt_labels, gt_bboxes, target_gt_idx, fg_mask,
                                                         self.num_classes)
        ious = box_iou(pred_bboxes, bboxes) * fg_mask
        return labels, bboxes, (scores * ious[..., None]).to(pred_scores.dtype), fg_mask
