"""Drawing boxes on samples and tiling them into one picture (for ``repyolo data show``)."""
from __future__ import annotations

import math

import cv2
import numpy as np


def class_colour(c: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour for class ``c``."""
    hue = int((c * 47) % 180)
    hsv = np.uint8([[[hue, 220, 255]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_boxes(img: np.ndarray, labels: np.ndarray, names: list[str] | None = None, thickness: int = 2) -> np.ndarray:
    """Draw ``(n, 5)`` ``[class, x1, y1, x2, y2]`` boxes with class names on a copy of an RGB image."""
    img = np.ascontiguousarray(img).copy()
    scale = max(img.shape[:2]) / 640
    font = 0.45 * max(scale, 0.6)
    for c, x1, y1, x2, y2 in np.asarray(labels, np.float32).reshape(-1, 5):
        col = class_colour(int(c))
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(img, p1, p2, col, thickness, cv2.LINE_AA)
        text = names[int(c)] if names and 0 <= int(c) < len(names) else str(int(c))
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
        ty = p1[1] - 2 if p1[1] - th - base - 2 >= 0 else p1[1] + th + base + 2
        cv2.rectangle(img, (p1[0], ty - th - base), (p1[0] + tw + 2, ty + 1), col, -1)
        cv2.putText(img, text, (p1[0] + 1, ty - base + 1), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 1, cv2.LINE_AA)
    return img


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
