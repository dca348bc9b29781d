"""Data pipeline: data YAMLs, label formats and converters, checking, augmentation, loading.

Images travel as uint8 ``(H, W, 3)`` RGB arrays and boxes as float32 ``[class, x1, y1, x2, y2]``
pixel rows until the collate step (see :mod:`repyolo.data.loader`).
"""
from repyolo.data.augment import letterbox
from repyolo.data.check import CheckReport
from repyolo.data.config import DataConfig, load_data_config
from repyolo.data.convert import coco_to_yolo, voc_to_yolo, yolo_to_coco
from repyolo.data.dataset import DetectionDataset
from repyolo.data.formats import Issue
from repyolo.data.io import read_image
from repyolo.data.loader import build_dataloader, collate_fn, set_loader_epoch
from repyolo.data.synthetic import generate_synthetic

__all__ = [
    "CheckReport", "DataConfig", "DetectionDataset", "Issue", "build_dataloader", "coco_to_yolo",
    "collate_fn", "generate_synthetic", "letterbox", "load_data_config", "read_image", "set_loader_epoch",
    "voc_to_yolo", "yolo_to_coco",
]
