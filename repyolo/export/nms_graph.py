"""End-to-end detection graph: the model followed by in-graph, class-aware NMS.

:class:`End2End` wraps a model so that an ONNX export contains the whole detector, with no
Python post-processing left to do:

1. raw model output ``(B, A, 4 + nc)`` -> boxes ``(B, A, 4)``, scores ``(B, nc, A)``
   (single-label: every anchor keeps only its best class's score, as
   :func:`repyolo.ops.postprocess.non_max_suppression` does by default);
2. ONNX ``NonMaxSuppression`` (class-aware: one NMS per class, the class dimension of the
   scores) -> ``(K, 3)`` selected ``[batch, class, anchor]`` triples, at most ``max_det``
   per class, only scores above ``conf``;
3. the selected (class, anchor) pairs are scattered into a ``(B, nc * A)`` score map
   (unselected = -1) and ``TopK(max_det)`` picks the best ``max_det`` per image;
4. fixed-size outputs: ``num_dets (B, 1) int32``, ``det_boxes (B, max_det, 4)``,
   ``det_scores (B, max_det)``, ``det_classes (B, max_det) int32``; rows past ``num_dets``
   are padding (box 0, score 0, class -1).

ONNX ``NonMaxSuppression`` orders each box's corners itself, so a box with ``x2 < x1`` (possible
from an untrained non-DFL head) still has an area there, while the Python NMS counts it as empty;
for real boxes both agree.

Only step 2 is a custom op (:class:`NonMaxSuppressionOp`, an autograd Function whose
``symbolic`` emits the ONNX node). In eager PyTorch it runs :func:`repyolo.ops.nms.batched_nms`,
so the module also works (slowly) without exporting.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _eager_nms(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou: float,
               conf: float) -> torch.Tensor:
    """PyTorch stand-in of ONNX ``NonMaxSuppression``: ``(B, A, 4)``, ``(B, nc, A)`` -> ``(K, 3)`` int64."""
    from repyolo.ops.nms import nms

    out = []
    for b in range(scores.shape[0]):
        cls, idx = (scores[b] > conf).nonzero(as_tuple=True)
        if idx.numel() == 0:
            continue
        keep = nms(boxes[b, idx], scores[b, cls, idx], iou, classes=cls)
        cls, idx = cls[keep], idx[keep]
        # at most max_per_class per class, in score order (keep is score-sorted)
        rank = torch.zeros_like(cls)
        for c in cls.unique():
            m = cls == c
            rank[m] = torch.arange(int(m.sum()), device=cls.device)
        m = rank < max_per_class
        out.append(torch.stack((torch.full_like(idx[m], b), cls[m], idx[m]), 1))
    return torch.cat(out) if out else torch.zeros(0, 3, dtype=torch.long, device=boxes.device)


class NonMaxSuppressionOp(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (opset >= 11) as a traceable op.

    ``boxes (B, A, 4)`` xyxy, ``scores (B, nc, A)`` -> ``(K, 3)`` int64 ``[batch, class, anchor]``.
    """

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class: torch.Tensor, iou: torch.Tensor, conf: torch.Tensor):
        if torch.onnx.is_in_onnx_export():  # shape placeholder: the ONNX node computes the real thing
            return torch.zeros(0, 3, dtype=torch.long, device=boxes.device)
        return _eager_nms(boxes, scores.float(), int(max_per_class), float(iou), float(conf))

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou, conf):
        # center_point_box=0: corners; ONNX names them y1 x1 y2 x2 but IoU is symmetric in x/y,
        # so x1 y1 x2 y2 boxes give the same result
        return g.op("NonMaxSuppression", boxes, scores, max_per_class, iou, conf, center_point_box_i=0)


class End2End(nn.Module):
    """``model`` + class-aware NMS + top-``max_det``: ``(B, 3, H, W)`` -> ``num_dets, det_boxes,
    det_scores, det_classes`` (see module docstring).

    Args:
        model: eval-mode detector returning ``(B, A, 4 + nc)``.
        max_det: detections per image (fixed output size).
        conf: score threshold (strictly greater is kept).
        iou: IoU threshold (a box overlapping a kept box of its class by more is suppressed).
        multi_label: keep every class above ``conf`` per anchor (as COCO evaluation does);
            ``False`` keeps only each anchor's best class.
    """

    def __init__(self, model: nn.Module, max_det: int = 100, conf: float = 0.25, iou: float = 0.45,
                 multi_label: bool = False):
        super().__init__()
        self.model = model
        self.max_det, self.conf, self.iou, self.multi_label = int(max_det), float(conf), float(iou), multi_label

    def forward(self, x: torch.Tensor):
        pred = self.model(x)
        boxes, scores = pred[..., :4], pred[..., 4:]
        b, a, nc = scores.shape
        if not self.multi_label:  # zero every score but the best class of each anchor (first on ties)
            best = scores.argmax(-1, keepdim=True)
            scores = scores * (best == torch.arange(nc, device=x.device)).to(scores.dtype)
        scores_t = scores.transpose(1, 2).contiguous()  # (B, nc, A)
        selected = NonMaxSuppressionOp.apply(
            boxes.float(), scores_t.float(), torch.tensor([self.max_det], dtype=torch.long),
            torch.tensor([self.iou], dtype=torch.float32), torch.tensor([self.conf], dtype=torch.float32))
        # scatter the selected (batch, class, anchor) triples into a flat 0/1 mask
        flat = (selected[:, 0] * nc + selected[:, 1]) * a + selected[:, 2]
        mask = torch.zeros(b * nc * a, dtype=scores.dtype, device=x.device)
        mask = mask.scatter(0, flat, torch.ones_like(flat, dtype=scores.dtype))
        mask = mask.reshape(b, nc * a)
        ranked = scores_t.reshape(b, nc * a) * mask + (mask - 1)  # selected: score, others: -1
        ranked = F.pad(ranked, (0, self.max_det), value=-1.0)  # so TopK always has max_det entries
        top, idx = ranked.topk(self.max_det, dim=1)  # (B, max_det), sorted by score
        valid = top > -0.5
        cls = torch.div(idx, a, rounding_mode="floor")
        anchor = idx - cls * a
        anchor = anchor * valid.long()  # padding entries point at anchor 0 (then zeroed)
        # a plain Gather on the flattened boxes (GatherElements trips OpenVINO's converter)
        rows = anchor + torch.arange(b, device=x.device).unsqueeze(1) * a  # (B, max_det)
        det_boxes = boxes.reshape(b * a, 4)[rows] * valid.unsqueeze(-1).to(boxes.dtype)
        det_scores = top * valid.to(top.dtype)
        det_classes = torch.where(valid, cls, torch.full_like(cls, -1)).to(torch.int32)
        num_dets = valid.sum(1, keepdim=True).to(torch.int32)
        return num_dets, det_boxes, det_scores, det_classes
