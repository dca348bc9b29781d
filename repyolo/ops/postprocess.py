"""From raw model output to final detections, and from letterboxed input pixels back to the image.

:func:`non_max_suppression` turns ``(B, A, 4 + nc)`` predictions (xyxy input pixels + class
scores, the model contract) into one ``(N, 6)`` tensor per image: ``x1 y1 x2 y2 score class``.
:func:`scale_boxes` undoes the letterbox: ``(xy - pad) / ratio``, clipped to the original image.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from repyolo.ops.nms import nms

__all__ = ["non_max_suppression", "scale_boxes", "clip_boxes"]


def non_max_suppression(
    preds: torch.Tensor,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
    max_nms: int = 30000,
) -> list[torch.Tensor]:
    """Confidence filter, pre-NMS top-k cap, greedy NMS and the per-image detection cap.

    Args:
        preds: ``(B, A, 4 + nc)`` raw predictions: ``x1 y1 x2 y2`` then per-class scores in 0..1.
        conf_thres: keep (box, class) pairs whose score is strictly greater.
        iou_thres: NMS IoU threshold.
        classes: keep only these class ids (``None`` = all).
        agnostic: one NMS over all classes instead of one per class.
        multi_label: a box may be kept once per class whose score passes ``conf_thres``
            (evaluation); otherwise each box keeps only its best class.
        max_det: detections kept per image (highest scores).
        max_nms: candidates per image entering NMS (highest scores).
    Returns:
        list of ``B`` float tensors ``(N_i, 6)``: ``x1 y1 x2 y2 score class``, by decreasing score.
    """
    if preds.ndim != 3 or preds.shape[-1] < 5:
        raise ValueError(f"predictions must be (B, A, 4 + nc), got {tuple(preds.shape)}")
    preds = preds.float()
    nc = preds.shape[-1] - 4
    boxes, scores = preds[..., :4], preds[..., 4:]
    if classes is not None:
        allowed = torch.zeros(nc, dtype=torch.bool, device=preds.device)
        allowed[torch.as_tensor(list(classes), dtype=torch.long, device=preds.device).clamp(0, nc - 1)] = True
        scores = scores.masked_fill(~allowed, 0.0)
    out = []
    for bi in range(preds.shape[0]):
        # candidates: (anchor a, class c, score); more than max_nms -> the max_nms best, found with
        # one topk over all scores (they all pass conf_thres then), without listing every candidate
        if multi_label:
            s = scores[bi]
            mask = s > conf_thres
            if int(mask.sum()) > max_nms:
                score, flat = s.reshape(-1).topk(max_nms)
                a, c = flat // nc, flat % nc
            else:
                a, c = mask.nonzero(as_tuple=True)
                score = s[a, c]
        else:
            s, cls = scores[bi].max(-1)
            mask = s > conf_thres
            if int(mask.sum()) > max_nms:
                score, a = s.topk(max_nms)
            else:
                a = mask.nonzero().squeeze(1)
                score = s[a]
            c = cls[a]
        b = boxes[bi, a]
        finite = torch.isfinite(b).all(1) & torch.isfinite(score)
        if not bool(finite.all()):
            b, score, c = b[finite], score[finite], c[finite]
        keep = nms(b, score, iou_thres, None if agnostic else c, max_det=max_det)
        out.append(torch.cat((b[keep], score[keep, None], c[keep, None].float()), 1))
    return out


def _pair(v) -> tuple[float, float]:
    """A scalar or a pair -> ``(x, y)`` floats."""
    if isinstance(v, torch.Tensor):
        v = v.tolist()
    if isinstance(v, (int, float, np.floating, np.integer)):
        return float(v), float(v)
    v = list(v)
    return (float(v[0]), float(v[0])) if len(v) == 1 else (float(v[0]), float(v[1]))


def clip_boxes(boxes: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Clip ``(N, >=4)`` xyxy boxes in place to an image of ``shape = (h, w)``; returns ``boxes``."""
    h, w = float(shape[0]), float(shape[1])
    boxes[:, 0].clamp_(0, w)
    boxes[:, 2].clamp_(0, w)
    boxes[:, 1].clamp_(0, h)
    boxes[:, 3].clamp_(0, h)
    return boxes


def scale_boxes(boxes: torch.Tensor | np.ndarray, meta: Mapping) -> torch.Tensor | np.ndarray:
    """Map xyxy boxes from letterboxed input pixels back to original image pixels.

    Args:
        boxes: ``(N, >=4)``; the first four columns are xyxy in input pixels (other columns,
            e.g. score and class, are copied unchanged).
        meta: ``{"orig_shape": (h0, w0), "ratio": r or (rw, rh), "pad": (left, top)}`` as
            produced by the letterbox (``LetterboxGeometry.meta()``, or a data set sample's meta,
            whose exact per-axis ``ratio_xy`` is used when present).
    Returns:
        a new array/tensor of the same type and shape, xyxy = ``(xy - pad) / ratio`` clipped
        to ``[0, w0] x [0, h0]``.
    """
    rw, rh = _pair(meta.get("ratio_xy", meta["ratio"]))
    pl, pt = _pair(meta["pad"])
    h0, w0 = (int(s) for s in tuple(meta["orig_shape"])[:2])
    is_np = isinstance(boxes, np.ndarray)
    t = torch.from_numpy(np.array(boxes, dtype=np.float32, copy=True)) if is_np else boxes.clone().float()
    if t.numel():
        t[:, [0, 2]] = (t[:, [0, 2]] - pl) / rw
        t[:, [1, 3]] = (t[:, [1, 3]] - pt) / rh
        clip_boxes(t, (h0, w0))
    return t.numpy() if is_np else t


def filter_detections(det: torch.Tensor, conf_thres: float = 0.0, classes=None, max_det: int | None = None):
    """Apply a score threshold, a class filter and a count cap to ``(N, 6)`` detections (e.g. the
    output of an end-to-end model, whose NMS already ran); keeps the highest scores."""
    det = torch.as_tensor(det).float().reshape(-1, 6)
    keep = det[:, 4] > conf_thres
    if classes is not None:
        keep &= torch.isin(det[:, 5].long(), torch.as_tensor(list(classes), dtype=torch.long))
    det = det[keep]
    if max_det is not None and len(det) > max_det:
        det = det[det[:, 4].argsort(descending=True, stable=True)[:max_det]]
    return det
