"""Drawing boxes on samples and tiling them into one picture (for ``repyolo data show``)."""
from __future__ import annotations

import math

import cv2
import numpy as np

from repyolo.utils.plots import draw_detections


def draw_boxes(img: np.ndarray, labels: np.ndarray, names: list[str] | None = None, thickness: int = 2) -> np.ndarray:
    """Draw ``(n, 5)`` ``[class, x1, y1, x2, y2]`` labels with their class names on a copy of an RGB
    image (:func:`repyolo.utils.plots.draw_detections`, without scores)."""
    labels = np.asarray(labels, np.float32).reshape(-1, 5)
    return draw_detections(img, labels[:, 1:], None, labels[:, 0].astype(np.int64), names, thickness, hide_conf=True)


def tile_images(imgs: list[np.ndarray], tile: int = 320, cols: int | None = None) -> np.ndarray:
    """Tile RGB images (each letterboxed into ``tile x tile``) into a grid."""
    n = len(imgs)
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    for k, im in enumerate(imgs):
        h, w = im.shape[:2]
        r = tile / max(h, w)
        im = cv2.resize(im, (max(1, int(w * r)), max(1, int(h * r))), interpolation=cv2.INTER_AREA)
        y, x = (k // cols) * tile, (k % cols) * tile
        grid[y:y + im.shape[0], x:x + im.shape[1]] = im
    return grid
