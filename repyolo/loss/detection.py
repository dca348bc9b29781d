"""The YOLOv6 detection loss: assignment, then classification (VFL), box (IoU family) and DFL terms.

Per batch:

1. targets ``(M, 6)`` ``[batch_idx, class, x1, y1, x2, y2]`` (input pixels) are padded to
   ``(B, n_max, ...)`` with a validity mask;
2. the head's distances are decoded into boxes in stride units (anchor point / stride, the
   distances themselves or the DFL expectation) and, in pixels, fed to the assigner with the
   sigmoid class scores (both detached): ATSS for the first ``atss_warmup_epochs`` epochs,
   then the chosen assigner (TAL by default);
3. ``loss = w_cls * L_cls + w_iou * L_iou + w_dfl * L_dfl`` where every part is summed over the
   batch and divided by the sum of the target scores (at least 1): ``L_cls`` over all anchors
   and classes, ``L_iou`` and ``L_dfl`` over positive anchors weighted by their target score.
   DFL targets are the ltrb distances in stride units clamped to ``reg_max - 0.01``.

Every box-distribution output the head has is supervised: ``reg`` when ``use_dfl`` and the DLD
branch ``reg_dist`` when present. How is read off each branch's own width, ``4 * bins``: with
``bins > 1`` (DFL logits over ``0 .. bins - 1``) by the DFL term, its targets clamped to
``bins - 1.01`` (their DFL losses add up); with one bin per side (the DLD branch of the official
``distill_ns`` on a ``reg_max 0`` config: four plain distances) a DFL term has nothing to spread
over, so that branch is trained on its distances directly: the IoU loss (``iou_type``) of its
decoded boxes on the assigned positives, weighted like the main branch's and added to ``L_iou``.
Without a DFL branch the DFL term is 0.

Anchor-aided training (v3): when the outputs carry ``cls_ab`` / ``reg_ab`` (``na`` anchors per
point), that branch gets its own classification and IoU losses, added to ``L_cls`` and ``L_iou``.
Its samples are the (point, anchor box) pairs with boxes of area ``(5 * stride)^2`` and aspect
ratios 1/2, 1, 2 (:func:`aided_anchor_boxes`), assigned by ATSS on those boxes; it regresses ltrb
distances from the point like the main branch. (repyolo's reading of anchor-aided training: the
head leaves the meaning of ``reg_ab`` to the loss.)
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from repyolo.assign import ATSSAssigner, build_assigner
from repyolo.cfg.settings import Hyp
from repyolo.loss.dfl import distribution_focal_loss
from repyolo.loss.vfl import ClassificationLoss
from repyolo.ops.boxes import bbox2dist, dfl_decode, dist2bbox
from repyolo.ops.iou import box_iou
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

def pad_targets(targets: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(M, 6)`` ``[batch_idx, class, x1, y1, x2, y2]`` -> per-image padded ground truths.

    Returns ``gt_labels`` ``(B, n, 1)`` long, ``gt_bboxes`` ``(B, n, 4)`` and ``mask_gt`` ``(B, n, 1)``
    bool, with ``n`` the largest number of boxes in one image (0 when there are none).
    """
    if targets.dim() != 2 or targets.shape[1] != 6:
        raise ValueError(f"targets must be (M, 6) [batch_idx, class, x1, y1, x2, y2], got {tuple(targets.shape)}")
    device, dtype = targets.device, targets.dtype if targets.is_floating_point() else torch.float32
    m = targets.shape[0]
    if m == 0:
        return (torch.zeros(batch_size, 0, 1, dtype=torch.long, device=device),
                torch.zeros(batch_size, 0, 4, dtype=dtype, device=device),
                torch.zeros(batch_size, 0, 1, dtype=torch.bool, device=device))
    image = targets[:, 0].long()
    if int(image.min()) < 0 or int(image.max()) >= batch_size:
        raise ValueError(f"targets hold batch indices {int(image.min())}..{int(image.max())}, "
                         f"outside 0..{batch_size - 1}")
    order = torch.argsort(image, stable=True)
    image = image[order]
    counts = torch.bincount(image, minlength=batch_size)
    first = torch.cumsum(counts, 0) - counts  # index of each image's first box in `order`
    slot = torch.arange(m, device=device) - first[image]
    n = int(counts.max())
    gt_labels = torch.zeros(batch_size, n, 1, dtype=torch.long, device=device)
    gt_bboxes = torch.zeros(batch_size, n, 4, dtype=dtype, device=device)
    mask_gt = torch.zeros(batch_size, n, 1, dtype=torch.bool, device=device)
    gt_labels[image, slot, 0] = targets[order, 1].long()
    gt_bboxes[image, slot] = targets[order, 2:].to(dtype)
    mask_gt[image, slot] = True
    return gt_labels, gt_bboxes, mask_gt


def levels_of(strides: torch.Tensor) -> tuple[list[int], list[float]]:
    """Per-anchor strides ``(A, 1)`` (level by level) -> anchors per level and each level's stride."""
    values, counts = torch.unique_consecutive(strides.reshape(-1), return_counts=True)
    return counts.tolist(), values.tolist()


class DetectionLoss(nn.Module):
    """YOLOv6 training loss over the head's train-mode outputs.

    Args:
        nc: number of classes. reg_max: DFL bins - 1. use_dfl: ``reg`` holds DFL logits.
        hyp: the run's :class:`~repyolo.cfg.settings.Hyp` (default: the published defaults). Read:
            ``iou_type``, ``cls_loss``, ``assigner`` (after ``atss_warmup_epochs`` of ATSS),
            ``loss_weights``, ``tal_topk`` / ``tal_alpha`` / ``tal_beta``, ``atss_topk``.

    ``forward(outputs, targets, epoch, batch_size) -> (loss, items)``: ``outputs`` the model's
    train-mode dict, ``targets`` ``(M, 6)`` ``[batch_idx, class, x1, y1, x2, y2]`` input pixels;
    ``loss`` a scalar to back-propagate, ``items`` ``(3,)`` detached ``[cls, iou, dfl]`` (unweighted).
    """

    def __init__(self, nc: int, reg_max: int = 16, use_dfl: bool = False, hyp: Hyp | None = None):
        super().__init__()
        hyp = hyp if hyp is not None else Hyp()
        self.nc = int(nc)
        self.reg_max = int(reg_max)
        self.use_dfl = bool(use_dfl)
        self.iou_type = hyp.iou_type
        self.cls_loss = ClassificationLoss(hyp.cls_loss)
        self.atss_warmup_epochs = hyp.atss_warmup_epochs
        self.loss_weights = dict(hyp.loss_weights)
        self.warmup_assigner = ATSSAssigner(self.nc, topk=hyp.atss_topk)
        self.aided_assigner = ATSSAssigner(self.nc, topk=hyp.atss_topk)
        self.assigner_name = hyp.assigner
        kwargs = {"tal": {"topk": hyp.tal_topk, "alpha": hyp.tal_alpha, "beta": hyp.tal_beta},
                  "atss": {"topk": hyp.atss_topk}}.get(hyp.assigner, {})
        self.assigner = build_assigner(hyp.assigner, self.nc, **kwargs)

    def extra_repr(self) -> str:
        return (f"nc={self.nc}, reg_max={self.reg_max}, use_dfl={self.use_dfl}, iou_type={self.iou_type}, "
                f"cls_loss={self.cls_loss.name}, assigner={self.assigner_name}, "
                f"atss_warmup_epochs={self.atss_warmup_epochs}, loss_weights={self.loss_weights}")

    def _levels(self, strides: torch.Tensor) -> tuple[list[int], list[float]]:
        """:func:`levels_of` ``strides``, cached per anchor count: for one model the anchor count
        fixes ``H * W`` and so every level's size (reading them costs a device sync on CUDA)."""
        cache = self.__dict__.setdefault("_level_cache", {})
        key = (strides.shape[0], strides.device)
        if key not in cache:
            cache[key] = levels_of(strides)
        return cache[key]

    def decode(self, reg: torch.Tensor, anchor_points: torch.Tensor) -> torch.Tensor:
        """Head regression ``(B, A, 4)`` or ``(B, A, 4 * (reg_max + 1))`` -> boxes ``(B, A, 4)`` in stride units,
        ``anchor_points`` ``(A, 2)`` in stride units."""
        if self.use_dfl:
            reg = dfl_decode(reg)
        return dist2bbox(reg, anchor_points)

    def forward(self, outputs: dict, targets: torch.Tensor, epoch: int = 0, batch_size: int | None = None):
        # the loss runs in float32 even under autocast (fp16 IoU / log terms underflow)
        outputs = {k: v.float() if torch.is_tensor(v) and v.dtype in (torch.float16, torch.bfloat16) else v
                   for k, v in outputs.items()}
        cls_logits, reg = outputs["cls"], outputs["reg"]
        anchors, strides = outputs["anchors"], outputs["strides"]
        b, a, nc = cls_logits.shape
        if nc != self.nc:
            raise ValueError(f"the model predicts {nc} classes, the loss was built for {self.nc}")
        if batch_size is not None and int(batch_size) != b:
            raise ValueError(f"batch_size {batch_size} does not match the outputs' batch of {b}")
        n_reg = 4 * (self.reg_max + 1) if self.use_dfl else 4
        if reg.shape != (b, a, n_reg):
            raise ValueError(f"outputs['reg'] must be {(b, a, n_reg)} (use_dfl={self.use_dfl}), got {tuple(reg.shape)}")
        # checks and padding run where the targets are (the loader's CPU tensors in training), so
        # they cost no host-device synchronisation; only the padded result moves to the device
        if targets.numel():
            lo, hi = targets[:, 1].aminmax()
            if int(lo) < 0 or int(hi) >= self.nc:
                raise ValueError(f"target classes must lie in 0..{self.nc - 1}, got {int(lo)}..{int(hi)}")
        gt = tuple(t.to(cls_logits.device, non_blocking=True)
                   for t in pad_targets(targets.to(cls_logits.dtype), b))

        strides = strides.to(reg.dtype)
        anchor_points_s = anchors.to(reg.dtype) / strides
        pred_bboxes = self.decode(reg, anchor_points_s)  # (B, A, 4) stride units
        num_per_level, level_strides = self._levels(strides)
        assigner = self.warmup_assigner if epoch < self.atss_warmup_epochs else self.assigner
        assigned = assigner(cls_logits.detach().sigmoid(), pred_bboxes.detach() * strides, anchors, *gt,
                            num_per_level, level_strides)
        box_branches = [x for x in (reg if self.use_dfl else None, outputs.get("reg_dist")) if x is not None]
        for x in box_branches:
            if x.shape[:2] != (b, a) or x.shape[-1] % 4 or x.dim() != 3:
                raise ValueError(f"a box branch must be (B, A, 4 * bins) = ({b}, {a}, 4k), got {tuple(x.shape)}")
        loss_cls, loss_iou, loss_dfl = self._branch_losses(cls_logits, pred_bboxes, box_branches, anchor_points_s,
                                                           strides, assigned)
        if outputs.get("cls_ab") is not None and outputs.get("reg_ab") is not None:
            ab_cls, ab_iou = self._anchor_aided_losses(outputs["cls_ab"], outputs["reg_ab"], anchors, strides, gt)
            loss_cls, loss_iou = loss_cls + ab_cls, loss_iou + ab_iou

        w = self.loss_weights
        loss = w["cls"] * loss_cls + w["iou"] * loss_iou + w["dfl"] * loss_dfl
        items = torch.stack((loss_cls, loss_iou, loss_dfl)).detach()
        return loss, items

    def _branch_losses(self, cls_logits: torch.Tensor, pred_bboxes: torch.Tensor, box_branches: list[torch.Tensor],
                       anchor_points_s: torch.Tensor, strides: torch.Tensor, assigned) -> tuple[torch.Tensor, ...]:
        """Classification, IoU and DFL losses of one branch, each normalised by its target-score sum.

        ``cls_logits`` ``(B, A, nc)``, ``pred_bboxes`` ``(B, A, 4)`` stride units, ``box_branches`` list of
        ``(B, A, 4 * bins)`` box-distribution outputs (DFL logits, or 4 plain distances when ``bins == 1``:
        see the module docstring), ``anchor_points_s`` ``(A, 2)`` and ``strides`` ``(A, 1)``,
        ``assigned`` the assigner's result (pixels).
        """
        target_labels, target_bboxes, target_scores, fg_mask = assigned
        target_scores_sum = target_scores.sum().clamp(min=1.0)
        labels = F.one_hot(target_labels, self.nc + 1)[..., :self.nc]
        loss_cls = self.cls_loss(cls_logits, target_scores, labels) / target_scores_sum

        # a 0 (not -0) that keeps every output in the graph when nothing is positive
        zero = pred_bboxes.new_zeros(()) + 0.0 * sum(x.sum() for x in [pred_bboxes, *box_branches])
        loss_iou, loss_dfl = zero, zero
        # positives gathered with one index list (one sync on CUDA, not one per masked tensor);
        # without positives every term below is an empty sum, i.e. 0
        pos = fg_mask.reshape(-1).nonzero().squeeze(1)
        weight = target_scores.sum(-1).reshape(-1).index_select(0, pos)  # (P,)
        target_bboxes_s = target_bboxes / strides
        pos_targets = target_bboxes_s.reshape(-1, 4).index_select(0, pos)  # (P, 4)
        loss_iou = loss_iou + self._iou_loss(pred_bboxes.reshape(-1, 4).index_select(0, pos), pos_targets, weight,
                                             target_scores_sum)
        for out in box_branches:  # the DFL head and / or the DLD branch
            bins = out.shape[-1] // 4
            pos_out = out.reshape(-1, out.shape[-1]).index_select(0, pos)  # (P, 4 * bins)
            if bins == 1:  # four plain distances: their decoded boxes get the IoU loss
                points = anchor_points_s.expand(*fg_mask.shape, 2).reshape(-1, 2).index_select(0, pos)
                loss_iou = loss_iou + self._iou_loss(dist2bbox(pos_out, points), pos_targets, weight,
                                                     target_scores_sum)
                continue
            target_dist = bbox2dist(anchor_points_s, target_bboxes_s, bins - 1).reshape(-1, 4).index_select(0, pos)
            dfl = distribution_focal_loss(pos_out.view(-1, 4, bins), target_dist).mean(-1)
            loss_dfl = loss_dfl + (dfl * weight).sum() / target_scores_sum
        return loss_cls, loss_iou, loss_dfl

    def _iou_loss(self, boxes: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                  norm: torch.Tensor) -> torch.Tensor:
        """``sum((1 - IoU(boxes, targets)) * weight) / norm`` over ``(P, 4)`` matching boxes."""
        iou = box_iou(boxes, targets, self.iou_type, eps=1e-7)
        return ((1.0 - iou) * weight).sum() / norm

    def _anchor_aided_losses(self, cls_ab: torch.Tensor, reg_ab: torch.Tensor, anchors: torch.Tensor,
                             strides: torch.Tensor, gt) -> tuple[torch.Tensor, torch.Tensor]:
        """Classification and IoU losses of the anchor-aided branch (``(B, A * na, nc)``, ``(B, A * na, 4)``).

        Each anchor point carries ``na`` anchor boxes (:func:`aided_anchor_boxes`); every (point, anchor)
        pair is one sample, assigned by ATSS on those anchor boxes, and predicts ltrb distances in
        stride units from its point like the main branch.
        """
        b, a = cls_ab.shape[:2]
        na = a // anchors.shape[0]
        if na * anchors.shape[0] != a or reg_ab.shape != (b, a, 4):
            raise ValueError(f"anchor-aided outputs {tuple(cls_ab.shape)} / {tuple(reg_ab.shape)} do not fit "
                             f"{anchors.shape[0]} anchor points")
        points = anchors.to(reg_ab.dtype).repeat_interleave(na, 0)
        strides_ab = strides.repeat_interleave(na, 0)
        boxes = aided_anchor_boxes(anchors.to(reg_ab.dtype), strides, na)
        points_s = points / strides_ab
        pred_bboxes = dist2bbox(reg_ab, points_s)
        num_per_level, level_strides = self._levels(strides_ab)
        assigned = self.aided_assigner(cls_ab.detach().sigmoid(), pred_bboxes.detach() * strides_ab, points, *gt,
                                       num_per_level, level_strides, anchor_boxes=boxes)
        loss_cls, loss_iou, _ = self._branch_losses(cls_ab, pred_bboxes, [], points_s, strides_ab, assigned)
        return loss_cls, loss_iou


def aided_anchor_boxes(points: torch.Tensor, strides: torch.Tensor, na: int, scale: float = 5.0) -> torch.Tensor:
    """The ``na`` anchor boxes of every point for anchor-aided training: ``(A, 2)``, ``(A, 1)`` -> ``(A * na, 4)``.

    Area ``(scale * stride)^2``, aspect ratios ``h / w`` spread geometrically over ``[1/2, 2]``
    (``na = 3``: 1/2, 1, 2; ``na = 1``: a square), centred on the point; ordered point by point.
    """
    ratios = torch.logspace(-1, 1, na, base=2.0, dtype=points.dtype, device=points.device) if na > 1 \
        else torch.ones(1, dtype=points.dtype, device=points.device)
    side = scale * strides.to(points.dtype)  # (A, 1)
    half_w = (side / ratios.sqrt() / 2).reshape(-1, 1)  # (A * na, 1), point-major
    half_h = (side * ratios.sqrt() / 2).reshape(-1, 1)
    centres = points.repeat_interleave(na, 0)
    half = torch.cat((half_w, half_h), 1)
    return torch.cat((centres - half, centres + half), 1)


def build_loss(model, hyp: Hyp | dict | None = None) -> DetectionLoss:
    """The detection loss for ``model`` (a :class:`~repyolo.nn.model.YOLOv6`): its ``nc``,
    ``detect.reg_max`` / ``use_dfl``, and the hyper-parameters ``hyp`` (a resolved
    :class:`~repyolo.cfg.settings.Hyp`; a dict of overrides or ``None`` is resolved against the
    model's config first). Raises :class:`~repyolo.errors.ConfigError` for an unknown or bad setting."""
    if not isinstance(hyp, Hyp):
        hyp = Hyp.resolve(getattr(model, "cfg", None), hyp)
    loss = DetectionLoss(model.nc, model.detect.reg_max, model.detect.use_dfl, hyp)
    LOGGER.debug("detection loss: %s", loss.extra_repr())
    return loss
