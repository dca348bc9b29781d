"""Greedy non-maximum suppression in plain torch (no torchvision), exact and vectorized.

Greedy NMS visits boxes by decreasing score and keeps a box unless it overlaps (IoU > ``iou_thres``)
a box already kept. The result is the unique ``keep`` mask with
``keep[j] = not any(keep[i] and over[i, j] for i before j)``, where ``over`` is the strictly
upper-triangular overlap matrix of the score-sorted boxes.

:func:`nms` computes it block by block (``block`` boxes at a time, in score order):

1. boxes of the block overlapping an already kept box are dropped (one ``(block, K)`` IoU matrix);
2. inside the block the fixed point above is found by iterating ``keep <- not (keep @ over)``
   from "all kept"; each pass fixes at least one more box, in practice a handful of passes
   (the depth of the longest suppression chain) settles the block;
3. processing stops as soon as ``max_det`` boxes are kept (the later, lower-scored boxes could not
   enter the output anyway), which bounds the work by ``N x max_det`` instead of ``N x N``.

The Python loop runs over blocks and passes, never over boxes. Class-aware NMS only lets boxes of
the same class suppress each other (a same-class mask on the overlap matrix: the exact equivalent of
offsetting boxes by ``class x large constant``, without the float32 precision loss of the offset).
(``benchmarks/postprocess_speed.py`` compares it with OpenCV's ``cv2.dnn.NMSBoxes``.)
"""
from __future__ import annotations

import torch

from repyolo.ops.iou import pairwise_iou

__all__ = ["nms", "batched_nms"]


def _suppress_within(over: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Exact greedy keep mask of one score-sorted block.

    Args:
        over: ``(n, n)`` float 0/1, ``over[i, j] = 1`` when box ``i`` (higher score, ``i < j``) may
            suppress box ``j`` (strictly upper-triangular).
        alive: ``(n,)`` bool, boxes not already suppressed by earlier blocks.
    Returns:
        ``(n,)`` bool keep mask.
    """
    keep = alive.clone()
    for _ in range(over.shape[0] + 1):  # converges in <= n passes; usually a few
        suppressed = (keep.to(over.dtype) @ over) > 0
        new = alive & ~suppressed
        if torch.equal(new, keep):
            break
        keep = new
    return keep


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float, classes: torch.Tensor | None = None,
        max_det: int | None = None, block: int = 256) -> torch.Tensor:
    """Greedy NMS.

    Args:
        boxes: ``(N, 4)`` xyxy.
        scores: ``(N,)``.
        iou_thres: a box is suppressed by a kept box when their IoU is strictly greater.
        classes: ``(N,)`` class ids for class-aware NMS (boxes of different classes never
            suppress each other); ``None`` = class-agnostic.
        max_det: stop once this many boxes are kept (``None`` = no limit).
        block: boxes handled per vectorized step.
    Returns:
        ``(K,)`` int64 indices into ``boxes`` of the kept boxes, by decreasing score.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    limit = n if max_det is None else int(max_det)
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes[order].float()
    cls = classes[order] if classes is not None else None
    kept: list[torch.Tensor] = []  # positions (in sorted order) of kept boxes, per block
    kept_boxes = boxes[:0]
    kept_cls = cls[:0] if cls is not None else None
    n_kept = 0
    for start in range(0, n, block):
        end = min(start + block, n)
        b = boxes[start:end]
        alive = torch.ones(end - start, dtype=torch.bool, device=boxes.device)
        if n_kept:
            hit = pairwise_iou(b, kept_boxes, eps=0.0) > iou_thres  # (n_b, K)
            if cls is not None:
                hit &= cls[start:end, None] == kept_cls[None, :]
            alive = ~hit.any(1)
        live = alive.nonzero().squeeze(1)  # only boxes no kept box suppresses take part
        if live.numel():
            bl = b[live]
            over = (pairwise_iou(bl, bl, eps=0.0) > iou_thres).triu_(1)
            if cls is not None:
                cl = cls[start:end][live]
                over &= cl[:, None] == cl[None, :]
            keep = _suppress_within(over.float(), torch.ones(live.numel(), dtype=torch.bool, device=b.device))
            idx = live[keep]
            if idx.numel():
                idx = idx[: limit - n_kept]
                kept.append(idx + start)
                kept_boxes = torch.cat((kept_boxes, b[idx]))
                if cls is not None:
                    kept_cls = torch.cat((kept_cls, cls[start:end][idx]))
                n_kept += idx.numel()
        if n_kept >= limit:
            break
    if not kept:
        return torch.zeros(0, dtype=torch.long, device=order.device)
    return order[torch.cat(kept)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_thres: float,
                agnostic: bool = False, max_det: int | None = None) -> torch.Tensor:
    """Class-aware NMS (``agnostic=False``) or class-agnostic NMS over ``(N, 4)`` boxes; see :func:`nms`."""
    return nms(boxes, scores, iou_thres, None if agnostic else classes, max_det)
