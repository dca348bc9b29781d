"""ATSS: Adaptive Training Sample Selection (Zhang et al., 2020), YOLOv6's warm-up assigner.

For every ground truth:

1. each anchor point gets a virtual anchor box of ``anchor_scale`` (5) x its stride;
2. on every feature level the ``topk`` (9) anchor points nearest to the ground-truth centre are
   candidates;
3. the IoU threshold is ``mean + std`` of the candidates' anchor-box IoUs (unbiased std);
4. positives are candidates with IoU > threshold whose point lies strictly inside the box;
5. an anchor claimed by several ground truths goes to the one with the highest anchor-box IoU.

The class target is one-hot; with ``iou_weighted=True`` and predictions given it is scaled by
the IoU between the anchor's predicted box and its assigned ground truth (as YOLOv6 does).
"""
from __future__ import annotations

import torch

from repyolo.assign.common import Assigner, AssignResult, gather_targets, resolve_conflicts, stride_per_anchor
from repyolo.ops.boxes import points_in_boxes
from repyolo.ops.iou import box_iou, pairwise_iou


class ATSSAssigner(Assigner):
    """Static (prediction-free) assigner.

    Args:
        num_classes: ``nc``.
        topk: candidates per level per ground truth.
        anchor_scale: virtual anchor box side in strides.
        iou_weighted: scale one-hot class targets by the predicted box's IoU with its ground truth.
        eps: margin for "strictly inside".
    """

    def __init__(self, num_classes: int, topk: int = 9, anchor_scale: float = 5.0, iou_weighted: bool = True,
                 eps: float = 1e-9):
        self.num_classes = num_classes
        self.topk = topk
        self.anchor_scale = anchor_scale
        self.iou_weighted = iou_weighted
        self.eps = eps

    def assign(self, pred_scores: torch.Tensor, pred_bboxes: torch.Tensor | None, anchor_points: torch.Tensor,
               gt_labels: torch.Tensor, gt_bboxes: torch.Tensor, mask_gt: torch.Tensor,
               num_anchors_per_level: list[int], strides, anchor_boxes: torch.Tensor | None = None
               ) -> AssignResult:
        """ATSS targets (:class:`~repyolo.assign.common.Assigner` call). ``pred_scores`` gives only its
        shape; ``pred_bboxes`` ``None`` keeps the class targets one-hot; ``num_anchors_per_level`` and
        ``strides`` are required; ``anchor_boxes`` ``(A, 4)`` xyxy pixels replace the virtual squares
        (anchor-based branches with several anchor shapes per point)."""
        a = anchor_points.shape[0]
        if num_anchors_per_level is None or sum(num_anchors_per_level) != a:
            raise ValueError(f"num_anchors_per_level {num_anchors_per_level} must sum to {a}")
        stride = stride_per_anchor(strides, num_anchors_per_level, a, anchor_points)
        gt_bboxes = gt_bboxes.to(anchor_points.dtype)
        valid = mask_gt.bool()  # (B, n, 1)

        if anchor_boxes is None:
            half = (self.anchor_scale * stride / 2)[:, None]
            anchor_boxes = torch.cat((anchor_points - half, anchor_points + half), -1)  # (A, 4)
        elif anchor_boxes.shape != (a, 4):
            raise ValueError(f"anchor_boxes must be {(a, 4)}, got {tuple(anchor_boxes.shape)}")
        anchor_boxes = anchor_boxes.to(anchor_points.dtype)
        overlaps = pairwise_iou(gt_bboxes, anchor_boxes)  # (B, n, A)

        centres = (gt_bboxes[..., :2] + gt_bboxes[..., 2:]) / 2  # (B, n, 2)
        dist = (centres[..., None, :] - anchor_points).pow(2).sum(-1)  # (B, n, A) squared distance

        candidates = torch.zeros_like(overlaps, dtype=torch.bool)
        start = 0
        for count in num_anchors_per_level:  # a loop over the (3 or 4) levels
            k = min(self.topk, count)
            if k > 0:
                idx = dist[..., start:start + count].topk(k, -1, largest=False).indices + start
                candidates.scatter_(-1, idx, True)
            start += count

        cand_iou = overlaps.masked_fill(~candidates, 0)
        n_cand = candidates.sum(-1, keepdim=True).clamp(min=1)  # (B, n, 1), the same for every gt
        mean = cand_iou.sum(-1, keepdim=True) / n_cand
        var = ((overlaps - mean).pow(2) * candidates).sum(-1, keepdim=True) / (n_cand - 1).clamp(min=1)
        threshold = mean + var.sqrt()

        inside = points_in_boxes(anchor_points, gt_bboxes, self.eps)
        mask_pos = candidates & (overlaps > threshold) & inside & valid

        target_gt_idx, fg_mask, _ = resolve_conflicts(mask_pos, overlaps, largest=True)
        labels, bboxes, scores, fg_mask = gather_targets(gt_labels, gt_bboxes, target_gt_idx, fg_mask,
                                                         self.num_classes)
        if self.iou_weighted and pred_bboxes is not None:
            ious = box_iou(pred_bboxes.to(bboxes.dtype), bboxes) * fg_mask
            scores = scores * ious[..., None]
        return labels, bboxes, scores.to(pred_scores.dtype), fg_mask
