"""Training losses: IoU family, VariFocal and friends, DFL, and the YOLOv6 detection loss."""
from repyolo.loss.detection import DetectionLoss, build_loss, pad_targets
from repyolo.loss.dfl import distribution_focal_loss
from repyolo.loss.iou import IoULoss
from repyolo.loss.vfl import ClassificationLoss, focal_loss, poly1_loss, quality_focal_loss, varifocal_loss

__all__ = ["DetectionLoss", "build_loss", "pad_targets", "distribution_focal_loss", "IoULoss",
           "ClassificationLoss", "focal_loss", "poly1_loss", "quality_focal_loss", "varifocal_loss"]
