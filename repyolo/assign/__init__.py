"""Label assignment: which anchor points learn which ground truth (ATSS, TAL, SimOTA).

Every assigner is called as
``assigner(pred_scores, pred_bboxes, anchor_points, gt_labels, gt_bboxes, mask_gt,
num_anchors_per_level, strides) -> (target_labels, target_bboxes, target_scores, fg_mask)``
on batches padded to ``n`` ground truths per image (see :mod:`repyolo.assign.common`).
"""
from repyolo.assign.atss import ATSSAssigner
from repyolo.assign.simota import SimOTAAssigner
from repyolo.assign.tal import TaskAlignedAssigner

ASSIGNERS = {"atss": ATSSAssigner, "tal": TaskAlignedAssigner, "simota": SimOTAAssigner}


def build_assigner(name: str, num_classes: int, **kwargs):
    """Assigner by name (``atss``, ``tal``, ``simota``) with its keyword arguments."""
    try:
        cls = ASSIGNERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown assigner {name!r}; choose one of {', '.join(ASSIGNERS)}") from None
    return cls(num_classes, **kwargs)


__all__ = ["ATSSAssigner", "TaskAlignedAssigner", "SimOTAAssigner", "ASSIGNERS", "build_assigner"]
