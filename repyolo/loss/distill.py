"""Self-distillation (YOLOv6 v2/v3): a frozen FP32 teacher's soft predictions guide the student.

The teacher is usually a pre-trained copy of the student (hence *self*-distillation), or any
YOLOv6 with the same anchor layout (same strides and classes). Both see the same augmented
batch; the teacher runs under ``no_grad`` with its BatchNorms in eval mode, but its head
returns the raw training outputs (class logits, DFL logits).

Loss added to the detection loss at epoch ``e`` of ``E``::

    L_kd   = alpha(e) * (w_cls * KD_cls + w_dfl * KD_dfl + w_cwd * CWD)
    alpha(e) = alpha_min + (alpha0 - alpha_min) * (1 + cos(pi * e / E)) / 2

so the teacher's soft labels dominate early and fade to ``alpha_min`` at the end, when the
hard labels help the student more (the published recipe decays 1 -> 0.01).

Terms (``T`` the temperature, every KL is ``KL(teacher || student)``):

* ``KD_cls``: YOLOv6 scores classes with independent sigmoids, so by default (``cls_mode
  'binary'``) every (anchor, class) pair is a Bernoulli variable and ``KD_cls`` is the binary
  KL between ``sigmoid(z_t / T)`` and ``sigmoid(z_s / T)``, summed over all anchors and
  classes (background anchors included: the teacher also teaches what *not* to fire on).
  ``cls_mode 'softmax'`` is the classic alternative: softmax over the classes per anchor,
  weighted by the teacher's confidence ``w_a`` (it says nothing about background, and nothing
  at all with one class).
* ``KD_dfl``: per anchor and side, the KL between the teacher's and the student's DFL
  distributions (softmax over ``reg_max + 1`` bins at temperature ``T``), averaged over the
  four sides and weighted by the teacher's confidence ``w_a`` (a box distribution only means
  something where there is an object). The student's bins are its ``reg`` when ``use_dfl``,
  else its DLD branch ``reg_dist`` (v3 N/S). The teacher's are its ``reg`` / ``reg_dist``;
  a teacher with distances only (no DFL, no DLD, e.g. a fused deploy checkpoint) or another
  number of bins gives a sharp two-bin distribution around its distance (the DFL target), used
  without temperature. Bins are read off each branch's width (``4 * bins``).
  A student whose box branch has one bin per side (the DLD branch of the official ``distill_ns``
  on a ``reg_max 0`` config: four plain distances) has no distribution to match: its ``KD_dfl``
  is the IoU loss ``1 - GIoU`` between the boxes its distances and the teacher's decoded distances
  draw around the same anchor point, per anchor, weighted by ``w_a`` (no temperature). An IoU
  loss rather than L1: it is scale-free like the detection loss's box term and stays in ``[0, 2]``,
  the size of the KL terms, where an L1 in stride units grows with the object.
* ``CWD`` (off by default): channel-wise distillation of the neck outputs, see :func:`cwd_loss`.

Both KD terms are multiplied by ``T**2`` (gradient scale independent of ``T``) and divided by
the teacher's foreground mass ``W = sum_a w_a`` (at least 1), with ``w_a = max_c
sigmoid(z_t[a, c])``: the analogue of the detection loss's division by the sum of target
scores, so KD and detection terms have comparable size whatever the batch or image size.

Hyper-parameters (``distill_*`` fields of :class:`~repyolo.cfg.settings.Hyp`): ``distill_weight_cls``
1.0, ``distill_weight_dfl`` 1.0 (as published), ``distill_temperature`` 1.0 (the published
recipe uses 20 with softmax-style KL; with per-class binary KL a high ``T`` flattens every
score towards 0.5 and turns the term into plain logit regression dominated by background, so
the teacher's own scores, ``T = 1``, are the default), ``distill_cls_mode`` ``binary``,
``distill_alpha0`` 1.0, ``distill_alpha_min`` 0.01, ``distill_weight_cwd`` 0.0,
``distill_cwd_tau`` 1.0.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from repyolo.cfg.settings import Hyp
from repyolo.errors import ConfigError, RepyoloError
from repyolo.ops.boxes import decode_distances, dist2bbox
from repyolo.ops.iou import box_iou
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

CLS_MODES = ("binary", "softmax")


# ---------------------------------------------------------------------------------------------- schedule
def cosine_alpha(epoch: float, epochs: int, alpha0: float = 1.0, alpha_min: float = 0.01) -> float:
    """KD weight ``alpha_min + (alpha0 - alpha_min) * (1 + cos(pi * e / E)) / 2``, ``e`` clamped to ``[0, E]``.

    ``alpha(0) = alpha0``, ``alpha(E / 2) = (alpha0 + alpha_min) / 2``, ``alpha(E) = alpha_min``.
    ``epoch`` may be fractional (per-iteration decay).
    """
    epochs = max(int(epochs), 1)
    e = min(max(float(epoch), 0.0), float(epochs))
    return alpha_min + (alpha0 - alpha_min) * (1.0 + math.cos(math.pi * e / epochs)) / 2.0


# ---------------------------------------------------------------------------------------------- KL terms
def binary_kl(s_logits: torch.Tensor, t_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Element-wise ``KL(Bern(sigmoid(t / T)) || Bern(sigmoid(s / T)))`` of equal-shape logits -> same shape.

    Computed from log-sigmoids (stable for any logit); exactly 0 where ``s == t``.
    """
    s, t = s_logits / temperature, t_logits / temperature
    p = torch.sigmoid(t)
    return p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))


def kl_from_probs(p_teacher: torch.Tensor, s_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``KL(p_t || softmax(s / T))`` over the last dim: ``(..., K)`` probabilities and logits -> ``(...)``.

    Zero-probability teacher bins contribute 0 (``xlogy``), so sharp teachers are fine.
    """
    log_q = F.log_softmax(s_logits / temperature, -1)
    return (torch.xlogy(p_teacher, p_teacher) - p_teacher * log_q).sum(-1)


def softmax_kl(s_logits: torch.Tensor, t_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``KL(softmax(t / T) || softmax(s / T))`` over the last dim -> ``(...)``; exactly 0 where ``s == t``."""
    log_p = F.log_softmax(t_logits / temperature, -1)
    log_q = F.log_softmax(s_logits / temperature, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def two_bin_distribution(dist: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Sharp DFL distribution of distances ``(...)`` (stride units) -> ``(..., reg_max + 1)`` probabilities.

    A distance ``y`` (clamped to ``[0, reg_max - 0.01]``) puts ``floor(y) + 1 - y`` on bin ``floor(y)``
    and ``y - floor(y)`` on the next: the DFL target, whose expectation is ``y``.
    """
    y = dist.clamp(0, reg_max - 0.01)
    left = y.floor()
    w_right = y - left
    left = left.long()
    n = reg_max + 1
    lower = F.one_hot(left, n).to(y.dtype) * (1 - w_right)[..., None]
    return lower + F.one_hot(left + 1, n).to(y.dtype) * w_right[..., None]


def cwd_loss(s_feat: torch.Tensor, t_feat: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Channel-wise distillation (Shu et al., 2021) of feature maps ``(B, C, H, W)`` -> scalar.

    Each channel is turned into a distribution over its ``H * W`` positions (softmax at ``tau``);
    the loss is ``tau**2 * mean_{b, c} KL(teacher || student)``. It is 0 for equal maps and
    ignores a per-channel constant offset. Shapes must match (use a 1x1 adapter on the student
    when widths differ).
    """
    if s_feat.shape != t_feat.shape:
        raise ValueError(f"cwd_loss: student {tuple(s_feat.shape)} and teacher {tuple(t_feat.shape)} "
                         "feature maps must have the same shape")
    b, c = s_feat.shape[:2]
    s = s_feat.float().reshape(b * c, -1)
    t = t_feat.float().reshape(b * c, -1)
    return softmax_kl(s, t, tau).mean() * tau ** 2


# ---------------------------------------------------------------------------------------------- distiller
class SelfDistiller(nn.Module):
    """Knowledge-distillation loss from a frozen teacher.

    Args:
        teacher: a :class:`~repyolo.nn.model.YOLOv6` (frozen here: FP32, eval, ``requires_grad`` off).
            It is *not* a sub-module: ``parameters()`` / ``state_dict()`` / ``train()`` of the
            distiller never touch it.
        student: the student model (only read here: classes, strides, head layout, widths).
        epochs: length of the cosine decay of ``alpha``.
        weight_cls, weight_dfl, weight_cwd, temperature, cls_mode, alpha0, alpha_min, cwd_tau:
            see the module docstring.

    ``forward(imgs, student_out, epoch) -> (loss, items)``: ``imgs`` ``(B, 3, H, W)`` float in 0..1
    (the batch the student saw), ``student_out`` the student's train-mode dict; ``loss`` a scalar
    (already multiplied by ``alpha(epoch)`` and the weights), ``items`` ``(2,)`` detached
    ``[kd_cls, kd_dfl]`` (unweighted). The CWD term, when on, is in ``self.last_cwd``.

    Trainable parameters: the 1x1 CWD adapters (only when CWD is on and widths differ); an
    optimizer must include ``distiller.parameters()`` for them to learn.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, epochs: int, weight_cls: float = 1.0,
                 weight_dfl: float = 1.0, weight_cwd: float = 0.0, temperature: float = 1.0,
                 cls_mode: str = "binary", alpha0: float = 1.0, alpha_min: float = 0.01, cwd_tau: float = 1.0):
        super().__init__()
        if cls_mode not in CLS_MODES:
            raise ConfigError(f"distill_cls_mode must be one of {', '.join(CLS_MODES)}, got {cls_mode!r}")
        if not temperature > 0 or not cwd_tau > 0:
            raise ConfigError(f"distillation temperatures must be > 0, got {temperature} / {cwd_tau}")
        self.__dict__["teacher"] = teacher  # deliberately unregistered (see the class docstring)
        freeze_teacher(teacher)
        self.epochs = max(int(epochs), 1)
        self.weight_cls, self.weight_dfl, self.weight_cwd = float(weight_cls), float(weight_dfl), float(weight_cwd)
        self.temperature, self.cls_mode, self.cwd_tau = float(temperature), cls_mode, float(cwd_tau)
        self.alpha0, self.alpha_min = float(alpha0), float(alpha_min)
        self.last_cwd = torch.zeros(())

        s_head, t_head = student.detect, teacher.detect
        self.student_box, self.student_bins = box_branch(s_head)
        if self.student_box is None:
            LOGGER.warning("distillation: the student has no DFL distribution (use_dfl off, no DLD branch "
                           "'aux_dist'): box distillation is off")
        self.teacher_box, self.teacher_bins = box_branch(t_head)
        if self.teacher_box is None:
            self.teacher_box, self.teacher_bins = "distances", 1
        self.reg_max = self.student_bins - 1
        self.teacher_sharp = self.teacher_bins != self.student_bins
        if self.student_box and self.student_bins == 1:
            LOGGER.info("distillation: the student's %s holds 4 plain distances: box distillation is a GIoU loss "
                        "towards the teacher's decoded distances", self.student_box)
        elif self.student_box and self.teacher_sharp:
            LOGGER.info("distillation: the teacher has %s; its box distributions are sharp two-bin ones "
                        "built from its distances", "no DFL bins" if self.teacher_bins == 1
                        else f"{self.teacher_bins} bins (student {self.student_bins})")

        self.adapters = None
        if self.weight_cwd > 0:
            s_ch, t_ch = student.neck.out_channels, teacher.neck.out_channels
            self.adapters = nn.ModuleList(nn.Identity() if cs == ct else nn.Conv2d(cs, ct, 1)
                                          for cs, ct in zip(s_ch, t_ch))
            if list(s_ch) != list(t_ch):
                LOGGER.warning("distillation: CWD adapters %s -> %s are trainable: add distiller.parameters() "
                               "to the optimizer", list(s_ch), list(t_ch))

    # ------------------------------------------------------------------------------------------
    def alpha(self, epoch: float) -> float:
        """The cosine-decayed KD weight at ``epoch`` (may be fractional)."""
        return cosine_alpha(epoch, self.epochs, self.alpha0, self.alpha_min)

    @torch.no_grad()
    def teacher_outputs(self, imgs: torch.Tensor) -> dict:
        """The teacher's train-form raw outputs for ``imgs`` ``(B, 3, H, W)``: FP32, BN in eval mode.

        Only the head module's own ``training`` flag is raised (its BN children stay in eval),
        which makes it return the dict of logits instead of decoded boxes.
        """
        teacher = self.teacher
        teacher.eval()
        head = teacher.detect
        head.training = True
        try:
            with torch.autocast(imgs.device.type, enabled=False):
                return teacher(imgs.float())
        finally:
            head.training = False

    def _teacher_distances(self, t_out: dict) -> torch.Tensor:
        """The teacher's ltrb distances ``(B, A, 4)`` (stride units): decoded DFL bins, or its distances."""
        return decode_distances(t_out["reg" if self.teacher_box == "distances" else self.teacher_box].float())

    def _teacher_box_kl(self, t_out: dict, s_logits: torch.Tensor) -> torch.Tensor:
        """Per-anchor box KL ``(B, A)`` (mean over the 4 sides) of student bin logits ``(B, A, 4, bins)``."""
        b, a = s_logits.shape[:2]
        if not self.teacher_sharp:
            t_logits = t_out[self.teacher_box].float().view(b, a, 4, self.student_bins)
            return softmax_kl(s_logits, t_logits, self.temperature).mean(-1)
        dist = self._teacher_distances(t_out)  # distances, or DFL logits of another size: decoded, then re-binned
        return kl_from_probs(two_bin_distribution(dist, self.reg_max), s_logits).mean(-1)

    def _teacher_box_giou(self, t_out: dict, s_dist: torch.Tensor) -> torch.Tensor:
        """Per-anchor ``1 - GIoU`` ``(B, A)`` between the boxes the student's distances ``(B, A, 4)`` and the
        teacher's decoded distances draw around the same point (stride units; the teacher's clamped at 0)."""
        t_dist = self._teacher_distances(t_out).clamp(min=0)
        origin = s_dist.new_zeros(2)
        return 1.0 - box_iou(dist2bbox(s_dist, origin), dist2bbox(t_dist, origin), "giou", eps=1e-7)

    def forward(self, imgs: torch.Tensor, student_out: dict, epoch: float = 0) -> tuple[torch.Tensor, torch.Tensor]:
        t_out = self.teacher_outputs(imgs)
        s_cls = student_out["cls"].float()
        t_cls = t_out["cls"].float()
        if s_cls.shape != t_cls.shape:
            raise RepyoloError(f"distillation: student predicts {tuple(s_cls.shape)} (batch, anchors, classes), "
                               f"teacher {tuple(t_cls.shape)}: anchor layouts differ")
        b, a, nc = s_cls.shape
        T = self.temperature
        w_anchor = t_cls.sigmoid().amax(-1)  # (B, A) teacher confidence
        mass = w_anchor.sum().clamp(min=1.0)

        if self.cls_mode == "binary":
            kd_cls = binary_kl(s_cls, t_cls, T).sum() * T ** 2 / mass
        else:
            kd_cls = (softmax_kl(s_cls, t_cls, T) * w_anchor).sum() * T ** 2 / mass

        kd_dfl = s_cls.sum() * 0.0
        if self.student_box is not None:
            s_box = student_out[self.student_box].float()
            if s_box.shape != (b, a, 4 * self.student_bins):
                raise RepyoloError(f"distillation: the student's {self.student_box} is {tuple(s_box.shape)}, "
                                   f"expected {(b, a, 4 * self.student_bins)}")
            if self.student_bins == 1:  # four plain distances: a box loss towards the teacher's boxes
                kd_dfl = (self._teacher_box_giou(t_out, s_box) * w_anchor).sum() / mass
            else:
                kl = self._teacher_box_kl(t_out, s_box.view(b, a, 4, self.student_bins))  # (B, A)
                t_box = 1.0 if self.teacher_sharp else T
                kd_dfl = (kl * w_anchor).sum() * t_box ** 2 / mass

        total = self.weight_cls * kd_cls + self.weight_dfl * kd_dfl
        if self.adapters is not None:
            # the student's features are bfloat16 / float16 under autocast; the adapters run in float32
            cwd = sum(cwd_loss(adapt(s.float()), t, self.cwd_tau)
                      for adapt, s, t in zip(self.adapters, student_out["feats"], t_out["feats"]))
            self.last_cwd = cwd.detach()
            total = total + self.weight_cwd * cwd
        loss = self.alpha(epoch) * total
        return loss, torch.stack((kd_cls, kd_dfl)).detach()

    def extra_repr(self) -> str:
        return (f"epochs={self.epochs}, weights=(cls {self.weight_cls}, dfl {self.weight_dfl}, cwd {self.weight_cwd}), "
                f"T={self.temperature}, cls_mode={self.cls_mode}, alpha={self.alpha0}->{self.alpha_min}, "
                f"student_box={self.student_box}, teacher_box={self.teacher_box}")


def box_branch(head: nn.Module) -> tuple[str | None, int]:
    """The head output that carries a box distribution, and its bins per side: ``('reg', reg_max + 1)``
    for a DFL head, else ``('reg_dist', bins)`` for the DLD branch (bins read off its width: 1 means
    four plain distances), else ``(None, 1)``."""
    if head.use_dfl:
        return "reg", int(head.reg_max) + 1
    if head.reg_preds_dist is not None:
        return "reg_dist", int(head.reg_preds_dist[0].out_channels) // 4
    return None, 1


def freeze_teacher(teacher: nn.Module) -> nn.Module:
    """FP32, eval mode, no gradients. Returns ``teacher``."""
    teacher.float().eval().requires_grad_(False)
    return teacher


def _check_compatible(student: nn.Module, teacher: nn.Module, source: str) -> None:
    if not hasattr(teacher, "detect") or not hasattr(student, "detect"):
        raise RepyoloError(f"{source}: the teacher and the student must both be repyolo YOLOv6 models")
    if int(teacher.nc) != int(student.nc):
        raise RepyoloError(f"{source}: the teacher predicts {teacher.nc} classes, the student {student.nc}: "
                           "distillation needs the same classes (train the teacher on this data set first)")
    ts, ss = list(teacher.detect.strides), list(student.detect.strides)
    if [int(s) for s in ts] != [int(s) for s in ss]:
        raise RepyoloError(f"{source}: the teacher's strides {ts} differ from the student's {ss}: distillation "
                           "needs the same anchor layout (e.g. a P5 teacher for a P5 student)")


def build_distiller(student: nn.Module, teacher: nn.Module, hyp: Hyp | dict | None, epochs: int,
                    device: torch.device | str = "cpu", source: str = "teacher model") -> SelfDistiller:
    """The self-distillation loss of ``student`` from ``teacher`` (a model: copied and frozen, never
    modified; load a checkpoint with :func:`repyolo.io.checkpoint.load_model`). ``hyp``: the run's
    :class:`~repyolo.cfg.settings.Hyp` (its ``distill_*`` fields; a dict is taken as overrides of the
    defaults). Raises :class:`RepyoloError` when the teacher's classes or strides differ from the
    student's; ``source`` names the teacher in that message."""
    if not isinstance(teacher, nn.Module):
        raise RepyoloError("distillation needs a teacher model: pass --teacher WEIGHTS.pt with --distill")
    if not isinstance(hyp, Hyp):
        hyp = Hyp.resolve(None, {k: v for k, v in (hyp or {}).items() if k in Hyp.DISTILL_KEYS})
    teacher = freeze_teacher(copy.deepcopy(teacher)).to(device)
    _check_compatible(student, teacher, source)
    distiller = SelfDistiller(
        teacher, student, epochs, weight_cls=hyp.distill_weight_cls, weight_dfl=hyp.distill_weight_dfl,
        weight_cwd=hyp.distill_weight_cwd, temperature=hyp.distill_temperature, cls_mode=hyp.distill_cls_mode,
        alpha0=hyp.distill_alpha0, alpha_min=hyp.distill_alpha_min, cwd_tau=hyp.distill_cwd_tau).to(device)
    LOGGER.info("self-distillation from %s: %s", source, distiller.extra_repr())
    return distiller
