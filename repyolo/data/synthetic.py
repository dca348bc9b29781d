"""A synthetic detection data set of coloured shapes on textured backgrounds.

Five classes (circle, rectangle, triangle, star, ring) with random colour, size, rotation
and position, partly occluding each other and crossed by clutter lines, on backgrounds of
gradients, blotches and noise. Boxes are the exact extent of each drawn shape. Objects are
large enough (24-120 px at 320) for a tiny model to learn them in minutes on a CPU; this is
what ``repyolo demo`` trains on.

Output is a normal YOLO folder (``images/{train,val}``, ``labels/{train,val}``, ``data.yaml``).
Each image is drawn from its own generator seeded with ``(seed, split, index)``, so the files
are byte-identical for the same parameters. A marker file records the parameters; a second
call with the same ones returns at once.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np

from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

CLASSES = ("circle", "rectangle", "triangle", "star", "ring")
VERSION = 1
MARKER = ".synthetic.json"


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Float32 ``(size, size, 3)`` in 0..255: gradient + smooth blotches + optional stripes."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    bg = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    cells = int(rng.integers(3, 9))
    blotch = rng.normal(0, rng.uniform(10, 35), (cells, cells, 3)).astype(np.float32)
    bg += cv2.resize(blotch, (size, size), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.4:  # stripes / texture
        period = rng.uniform(6, 30)
        phase = rng.uniform(0, 2 * math.pi)
        a2 = rng.uniform(0, math.pi)
        stripes = np.sin((np.cos(a2) * xx + np.sin(a2) * yy) * size / period * 2 * math.pi + phase)
        bg += (stripes * rng.uniform(5, 20))[..., None]
    return bg.astype(np.float32)


def _shape_mask(cls: int, size: int, center: tuple[float, float], diameter: float, angle: float,
                rng: np.random.Generator) -> np.ndarray:
    """uint8 ``(size, size)`` mask (255 inside) of one shape."""
    mask = np.zeros((size, size), np.uint8)
    cx, cy = center
    r = diameter / 2
    sh = 4  # sub-pixel precision bits for cv2 drawing
    f = 1 << sh

    def poly(points):
        pts = np.round(np.asarray(points) * f).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_8, shift=sh)

    name = CLASSES[cls]
    if name == "circle":
        cv2.circle(mask, (int(round(cx * f)), int(round(cy * f))), int(round(r * f)), 255, -1, cv2.LINE_8, sh)
    elif name == "ring":
        outer, inner = r, r * rng.uniform(0.45, 0.65)
        cv2.circle(mask, (int(round(cx * f)), int(round(cy * f))), int(round(outer * f)), 255, -1, cv2.LINE_8, sh)
        cv2.circle(mask, (int(round(cx * f)), int(round(cy * f))), int(round(inner * f)), 0, -1, cv2.LINE_8, sh)
    elif name == "rectangle":
        aspect = rng.uniform(0.45, 1.0)
        w, h = diameter * 0.85, diameter * 0.85 * aspect
        poly(cv2.boxPoints(((cx, cy), (w, h), math.degrees(angle))))
    elif name == "triangle":
        th = angle + np.array([0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-0.2, 0.2, 3)
        poly(np.stack([cx + r * np.cos(th), cy + r * np.sin(th)], 1))
    elif name == "star":
        k = np.arange(10)
        radii = np.where(k % 2 == 0, r, r * rng.uniform(0.38, 0.5))
        th = angle + k * math.pi / 5
        poly(np.stack([cx + radii * np.cos(th), cy + radii * np.sin(th)], 1))
    return mask


def _contrasting_colour(rng: np.random.Generator, local: np.ndarray) -> np.ndarray:
    """A saturated colour far (L1 >= 150) from the local background mean ``local``."""
    best, best_d = None, -1.0
    for _ in range(12):
        c = rng.uniform(0, 255, 3)
        c[rng.integers(0, 3)] = rng.choice([rng.uniform(0, 40), rng.uniform(215, 255)])
        d = float(np.abs(c - local).sum())
        if d > best_d:
            best, best_d = c, d
        if d >= 150:
            break
    return best


def _iou_cover(box: np.ndarray, boxes: np.ndarray) -> tuple[float, float]:
    """Max IoU of ``box`` with ``boxes`` and the max fraction of any of ``boxes`` it covers."""
    if not len(boxes):
        return 0.0, 0.0
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    a = (box[2] - box[0]) * (box[3] - box[1])
    b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return float((inter / (a + b - inter)).max()), float((inter / b).max())


def render_sample(rng: np.random.Generator, img_size: int = 320, min_objects: int = 1, max_objects: int = 6,
                  size_range=(24, 120)) -> tuple[np.ndarray, np.ndarray]:
    """Draw one image.

    Returns:
        uint8 ``(img_size, img_size, 3)`` RGB and float32 ``(n, 5)`` ``[class, x1, y1, x2, y2]``
        pixels (the full extent of each shape, also where a later shape hides part of it).
    """
    s = img_size
    k = s / 320.0
    lo, hi = size_range[0] * k, size_range[1] * k
    img = _background(rng, s)
    n = int(rng.integers(min_objects, max_objects + 1))
    boxes, labels = np.zeros((0, 4), np.float32), []
    for _ in range(n):
        for _attempt in range(25):
            cls = int(rng.integers(0, len(CLASSES)))
            d = float(rng.uniform(lo, hi))
            cx, cy = rng.uniform(d / 2 * 0.7, s - d / 2 * 0.7, 2)  # may be cut a little by the border
            angle = float(rng.uniform(0, 2 * math.pi))
            mask = _shape_mask(cls, s, (cx, cy), d, angle, rng)
            x, y, w, h = cv2.boundingRect(mask)
            if w < lo * 0.6 or h < lo * 0.6:
                continue
            box = np.array([x, y, x + w, y + h], np.float32)
            iou, cover = _iou_cover(box, boxes)
            if iou > 0.3 or cover > 0.4:
                continue
            local = img[y:y + h, x:x + w].reshape(-1, 3).mean(0)
            colour = _contrasting_colour(rng, local)
            shade = rng.uniform(0.85, 1.0)
            m = mask.astype(bool)
            img[m] = colour * shade
            boxes = np.concatenate([boxes, box[None]], 0)
            labels.append([cls, *box])
            break
    if rng.random() < 0.35:  # clutter lines: partial occlusion and distractors
        for _ in range(int(rng.integers(1, 3))):
            p1, p2 = rng.uniform(0, s, 2), rng.uniform(0, s, 2)
            col = tuple(float(c) for c in rng.uniform(0, 255, 3))
            cv2.line(img, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), col, int(rng.integers(2, 6)))
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    img += rng.normal(0, rng.uniform(3, 10), img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).round().astype(np.uint8)
    return img, np.asarray(labels, np.float32).reshape(-1, 5)


def generate_synthetic(out_dir: str | os.PathLike, n_train: int = 256, n_val: int = 64, img_size: int = 320,
                       seed: int = 0, min_objects: int = 1, max_objects: int = 6) -> Path:
    """Write the synthetic data set to ``out_dir`` (skipped when it already holds the same set).

    Returns:
        path of ``out_dir/data.yaml`` (train ``images/train``, val ``images/val``, 5 names).
    """
    out = Path(out_dir)
    params = dict(version=VERSION, n_train=int(n_train), n_val=int(n_val), img_size=int(img_size), seed=int(seed),
                  min_objects=int(min_objects), max_objects=int(max_objects), classes=list(CLASSES))
    marker = out / MARKER
    yaml_path = out / "data.yaml"
    splits = {"train": int(n_train), "val": int(n_val)}
    if marker.is_file() and yaml_path.is_file():
        try:
            same = json.loads(marker.read_text()) == params
        except (OSError, ValueError):
            same = False
        if same and all((out / "images" / sp / f"{sp}_{i:05d}.jpg").is_file() and
                        (out / "labels" / sp / f"{sp}_{i:05d}.txt").is_file()
                        for sp, n in splits.items() for i in range(n)):
            LOGGER.info("synthetic data set already in %s", out)
            return yaml_path
    if marker.exists():
        marker.unlink()
    for split_id, (sp, n) in enumerate(splits.items()):
        img_dir, lab_dir = out / "images" / sp, out / "labels" / sp
        img_dir.mkdir(parents=True, exist_ok=True)
        lab_dir.mkdir(parents=True, exist_ok=True)
        for old in list(img_dir.glob(f"{sp}_*.jpg")) + list(lab_dir.glob(f"{sp}_*.txt")):
            old.unlink()  # a previous set with other parameters
        stale = out / "labels" / f"{sp}.cache"
        if stale.exists():
            stale.unlink()
        for i in range(n):
            rng = np.random.default_rng([int(seed), split_id, i])
            img, labels = render_sample(rng, img_size, min_objects, max_objects)
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
            data.tofile(str(img_dir / f"{sp}_{i:05d}.jpg"))
            lines = []
            for c, x1, y1, x2, y2 in labels.tolist():
                lines.append(f"{int(c)} {(x1 + x2) / 2 / img_size:.6f} {(y1 + y2) / 2 / img_size:.6f} "
                             f"{(x2 - x1) / img_size:.6f} {(y2 - y1) / img_size:.6f}\n")
            (lab_dir / f"{sp}_{i:05d}.txt").write_text("".join(lines), encoding="utf-8")
    with open(yaml_path, "w", encoding="utf-8") as f:
        f.write("# synthetic shapes (repyolo.data.synthetic); paths relative to this file\n")
        f.write("train: images/train\nval: images/val\n")
        f.write(f"nc: {len(CLASSES)}\nnames: [{', '.join(CLASSES)}]\n")
    marker.write_text(json.dumps(params))
    LOGGER.info("synthetic data set: %d train + %d val images (%d px) in %s", n_train, n_val, img_size, out)
    return yaml_path
