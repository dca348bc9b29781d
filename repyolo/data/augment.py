"""Geometric and photometric augmentations of YOLOv6 training (numpy / OpenCV).

Images are uint8 ``(H, W, 3)`` RGB arrays; labels are float32 ``(n, 5)`` rows
``[class, x1, y1, x2, y2]`` in pixels of that image. Every function returns new boxes that
lie inside the returned image; boxes that become too small are dropped. Randomness comes
from the ``rng`` (a ``numpy.random.Generator``) argument only, so a sample's augmentation
is a function of its seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


def _empty_labels() -> np.ndarray:
    return np.zeros((0, 5), np.float32)


@dataclass(frozen=True)
class LetterboxGeometry:
    """Where :func:`letterbox` put an image: everything needed to map boxes back.

    ``orig_shape`` ``(h, w)`` of the input; ``size`` ``(nw, nh)`` of the resized content; ``pad``
    ``(left, top, right, bottom)``; ``ratio_xy`` ``(nw / w, nh / h)``, the exact per-axis gains
    (they differ from the uniform scale by the rounding to whole pixels); ``stretched`` when the
    image was resized straight to the target without padding (``stretch_tol``).
    Original pixels are ``(xy' - pad[:2]) / ratio_xy``.
    """

    orig_shape: tuple[int, int]
    size: tuple[int, int]
    pad: tuple[int, int, int, int]
    ratio_xy: tuple[float, float]
    stretched: bool = False

    @property
    def ratio(self) -> float:
        """The gain of the long side (exact: that side is resized to the target)."""
        h, w = self.orig_shape
        return self.ratio_xy[0] if (w >= h or self.stretched) else self.ratio_xy[1]

    def meta(self) -> dict:
        """The ``{"orig_shape", "ratio", "pad"}`` dict :func:`repyolo.ops.postprocess.scale_boxes` takes."""
        return {"orig_shape": self.orig_shape, "ratio": self.ratio_xy, "pad": self.pad[:2]}


def letterbox_geometry(shape, new_shape=(640, 640), auto: bool = False, scaleup: bool = True, stride: int = 32,
                       center: bool = True, stretch_tol: float = 0.0) -> LetterboxGeometry:
    """Where :func:`letterbox` puts an ``(h, w)`` image (arguments as there), without resizing it."""
    h, w = int(shape[0]), int(shape[1])
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    H, W = int(new_shape[0]), int(new_shape[1])
    r = min(H / h, W / w)
    if not scaleup:
        r = min(r, 1.0)
    nw, nh = max(1, int(round(w * r))), max(1, int(round(h * r)))
    if stretch_tol > 0 and not auto and abs(W - nw) <= stretch_tol * W and abs(H - nh) <= stretch_tol * H:
        return LetterboxGeometry((h, w), (W, H), (0, 0, 0, 0), (W / w, H / h), stretched=True)
    dw, dh = W - nw, H - nh
    if auto:
        dw, dh = dw % stride, dh % stride
    left, top = (dw // 2, dh // 2) if center else (0, 0)
    return LetterboxGeometry((h, w), (nw, nh), (left, top, dw - left, dh - top), (nw / w, nh / h))


def letterbox(img: np.ndarray, new_shape=(640, 640), color=(PAD_VALUE,) * 3, auto: bool = False,
              scaleup: bool = True, stride: int = 32, center: bool = True,
              stretch_tol: float = 0.0) -> tuple[np.ndarray, LetterboxGeometry]:
    """Resize keeping the aspect ratio, then pad with ``color`` (gray 114) to ``new_shape``.

    Args:
        img: ``(h, w, 3)`` uint8.
        new_shape: ``(H, W)`` or an int for a square.
        auto: pad only up to the next multiple of ``stride`` (minimum rectangle).
        scaleup: allow enlarging (False for evaluation keeps small images small).
        center: split the padding on both sides (else all on the right/bottom).
        stretch_tol: the YOLOv6 evaluation trick: when the image already has the target aspect
            (the aspect-preserving size misses the target by at most this fraction per side),
            resize straight to ``new_shape`` without padding. ``0`` disables it.
    Returns:
        the ``new_shape`` image (or the ``auto`` rectangle) and its :class:`LetterboxGeometry`.
    """
    g = letterbox_geometry(img.shape[:2], new_shape, auto, scaleup, stride, center, stretch_tol)
    nw, nh = g.size
    left, top, right, bottom = g.pad
    if (nw, nh) != (img.shape[1], img.shape[0]):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    if left or top or right or bottom:
        img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=tuple(color))
    return img, g


def scale_labels(labels: np.ndarray, ratio, pad=(0, 0)) -> np.ndarray:
    """Apply a resize gain (float or ``(rx, ry)``) and a ``(left, top)`` shift to ``(n, 5)`` labels."""
    out = labels.astype(np.float64, copy=True)
    rx, ry = (ratio, ratio) if np.isscalar(ratio) else ratio
    out[:, [1, 3]] = out[:, [1, 3]] * rx + pad[0]
    out[:, [2, 4]] = out[:, [2, 4]] * ry + pad[1]
    return out.astype(np.float32)


def augment_hsv(img: np.ndarray, hgain: float = 0.5, sgain: float = 0.5, vgain: float = 0.5,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Random hue/saturation/value gains via lookup tables (in place on ``img``, also returned)."""
    if not (hgain or sgain or vgain):
        return img
    rng = rng or np.random.default_rng()
    r = rng.uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * r[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB, dst=img)
    return img


def box_candidates(before: np.ndarray, after: np.ndarray, wh_thr: float = 2.0, ar_thr: float = 20.0,
                   area_thr: float = 0.1, eps: float = 1e-16) -> np.ndarray:
    """Which transformed boxes to keep: at least ``wh_thr`` px wide and high, aspect < ``ar_thr``,
    and at least ``area_thr`` of the (scaled) original area left. Boxes are ``(n, 4)`` xyxy."""
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def affine_matrix(in_shape, out_shape, degrees=0.0, translate=0.1, scale=0.5, shear=0.0,
                  rng: np.random.Generator | None = None) -> tuple[np.ndarray, float]:
    """Random ``3x3`` affine map from an ``in_shape`` image into an ``out_shape`` one.

    The input centre goes to the output centre, then rotation (``+-degrees``), scale
    (``1 +- scale``), shear (``+-shear`` degrees) and translation (``+-translate`` of the
    output size). Returns the matrix and the scale factor drawn.
    """
    rng = rng or np.random.default_rng()
    h, w = in_shape[:2]
    H, W = out_shape[:2]
    C = np.eye(3)
    C[0, 2], C[1, 2] = -w / 2, -h / 2
    a = rng.uniform(-degrees, degrees) if degrees else 0.0
    s = rng.uniform(1 - scale, 1 + scale) if scale else 1.0
    R = np.eye(3)
    R[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=a, scale=s)
    S = np.eye(3)
    if shear:
        S[0, 1] = math.tan(math.radians(rng.uniform(-shear, shear)))
        S[1, 0] = math.tan(math.radians(rng.uniform(-shear, shear)))
    T = np.eye(3)
    tx = rng.uniform(-translate, translate) if translate else 0.0
    ty = rng.uniform(-translate, translate) if translate else 0.0
    T[0, 2], T[1, 2] = (0.5 + tx) * W, (0.5 + ty) * H
    return T @ S @ R @ C, s


def clipped_quad_boxes(quads: np.ndarray, width: float, height: float) -> np.ndarray:
    """Extent of convex quadrilaterals after clipping them to the image ``[0, W] x [0, H]``.

    The clipped polygon's extreme points are among: its corners inside the image, the
    crossings of its edges with the image borders, and the image corners inside it. This is
    exact for transformed rectangles, where clipping the 4-corner box is not (a rotated
    box cut by a border would keep the width of its hidden part).

    Args:
        quads: ``(n, 4, 2)`` corners in order around the quadrilateral.
    Returns:
        ``(n, 4)`` xyxy float32; all zeros for a quad entirely outside.
    """
    n = len(quads)
    if n == 0:
        return np.zeros((0, 4), np.float32)
    eps = 1e-6
    a = quads
    b = np.roll(quads, -1, axis=1)  # edge k goes a[k] -> b[k]
    cands = [a]
    valid = [(a[..., 0] >= -eps) & (a[..., 0] <= width + eps) & (a[..., 1] >= -eps) & (a[..., 1] <= height + eps)]
    d = b - a
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # non-finite t: no crossing
        for axis, limit in ((0, 0.0), (0, width), (1, 0.0), (1, height)):
            t = (limit - a[..., axis]) / d[..., axis]
            p = a + t[..., None] * d
            p[..., axis] = limit
            other = 1 - axis
            hi = height if other == 1 else width
            ok = (t >= -eps) & (t <= 1 + eps) & (p[..., other] >= -eps) & (p[..., other] <= hi + eps)
            cands.append(np.nan_to_num(p))
            valid.append(ok & np.isfinite(t))
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)  # (4, 2)
    # image corner inside the convex quad: same side of every edge
    cross = (d[:, :, None, 0] * (corners[None, None, :, 1] - a[:, :, None, 1])
             - d[:, :, None, 1] * (corners[None, None, :, 0] - a[:, :, None, 0]))  # (n, 4 edges, 4 corners)
    inside = (cross >= -eps).all(1) | (cross <= eps).all(1)
    cands.append(np.broadcast_to(corners, (n, 4, 2)))
    valid.append(inside)
    pts = np.concatenate(cands, 1)  # (n, 24, 2)
    ok = np.concatenate(valid, 1)  # (n, 24)
    big = np.float64(np.inf)
    lo = np.where(ok[..., None], pts, big).min(1)
    hi = np.where(ok[..., None], pts, -big).max(1)
    out = np.concatenate([lo, hi], 1)
    out[~ok.any(1)] = 0.0
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out.astype(np.float32)


def transform_boxes(boxes: np.ndarray, M: np.ndarray, out_shape) -> np.ndarray:
    """Map ``(n, 4)`` xyxy boxes through a ``3x3`` affine ``M`` by their 4 corners; the result is
    the extent of the transformed box's part inside ``out_shape`` (see :func:`clipped_quad_boxes`)."""
    n = len(boxes)
    if n == 0:
        return boxes.reshape(0, 4).astype(np.float32)
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(n * 4, 2).astype(np.float64)
    xy = (corners @ M[:2, :2].T + M[:2, 2]).reshape(n, 4, 2)
    H, W = out_shape[:2]
    return clipped_quad_boxes(xy, float(W), float(H))


def random_affine(img: np.ndarray, labels: np.ndarray, degrees=0.0, translate=0.1, scale=0.5, shear=0.0,
                  out_shape=None, rng: np.random.Generator | None = None, area_thr: float = 0.1):
    """Random rotation / scale / shear / translation (``cv2.warpAffine``, gray border).

    Args:
        img: ``(h, w, 3)``; labels: ``(n, 5)`` xyxy pixels of ``img``.
        out_shape: output ``(H, W)`` (default: the input size). Mosaic passes half its canvas.
    Returns:
        ``(img (H, W, 3), labels (m, 5))``; boxes are the transformed corners' extent, clipped,
        with too small / too thin / mostly-cut boxes dropped (:func:`box_candidates`).
    """
    out_shape = tuple(out_shape[:2]) if out_shape is not None else img.shape[:2]
    M, s = affine_matrix(img.shape, out_shape, degrees, translate, scale, shear, rng)
    H, W = out_shape
    if img.shape[:2] != (H, W) or not np.allclose(M, np.eye(3)):
        img = cv2.warpAffine(img, M[:2], dsize=(W, H), flags=cv2.INTER_LINEAR, borderValue=(PAD_VALUE,) * 3)
    if len(labels):
        boxes = transform_boxes(labels[:, 1:5], M, out_shape)
        keep = box_candidates(labels[:, 1:5] * s, boxes, area_thr=area_thr)
        labels = np.concatenate([labels[keep, :1], boxes[keep]], 1).astype(np.float32)
    else:
        labels = _empty_labels()
    return img, labels


def flip(img: np.ndarray, labels: np.ndarray, axis: int):
    """Mirror across ``axis`` (1: left-right, ``x -> W - x``; 0: top-bottom, ``y -> H - y``); labels
    ``(N, 5)`` ``[class, x1, y1, x2, y2]`` pixels."""
    size = img.shape[axis]
    cols = [1, 3] if axis == 1 else [2, 4]
    labels = labels.copy()
    labels[:, cols] = size - labels[:, cols[::-1]]
    return cv2.flip(img, axis), labels


def fliplr(img: np.ndarray, labels: np.ndarray):
    """Mirror left-right: ``x -> W - x``."""
    return flip(img, labels, 1)


def flipud(img: np.ndarray, labels: np.ndarray):
    """Mirror top-bottom: ``y -> H - y``."""
    return flip(img, labels, 0)


def random_flip(img: np.ndarray, labels: np.ndarray, fliplr_p: float = 0.5, flipud_p: float = 0.0,
                rng: np.random.Generator | None = None):
    """Flip left-right with probability ``fliplr_p`` and up-down with ``flipud_p``."""
    rng = rng or np.random.default_rng()
    if flipud_p and rng.random() < flipud_p:
        img, labels = flipud(img, labels)
    if fliplr_p and rng.random() < fliplr_p:
        img, labels = fliplr(img, labels)
    return img, labels


def mosaic4(imgs: list[np.ndarray], labels: list[np.ndarray], size: int, rng: np.random.Generator | None = None,
            min_visible: float = 0.1):
    """Tile 4 images around a random centre of a ``(2*size, 2*size)`` gray canvas.

    Args:
        imgs: 4 images (each typically resized so its long side is ``size``); labels: their
            ``(n, 5)`` pixel boxes.
        min_visible: drop a box when less than this fraction of it lies in the visible part
            of its tile (boxes are clipped to that part, so they never cover a neighbour).
    Returns:
        ``(canvas (2s, 2s, 3), labels (m, 5))`` in canvas pixels.
    """
    rng = rng or np.random.default_rng()
    s = int(size)
    canvas = np.full((2 * s, 2 * s, 3), PAD_VALUE, dtype=np.uint8)
    xc, yc = (int(v) for v in rng.uniform(0.5 * s, 1.5 * s, 2))
    out = []
    for k, (img, lab) in enumerate(zip(imgs, labels)):
        h, w = img.shape[:2]
        if k == 0:  # top left: image's bottom-right corner at the centre
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b = w - (x2a - x1a), h - (y2a - y1a)
        elif k == 1:  # top right
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * s), yc
            x1b, y1b = 0, h - (y2a - y1a)
        elif k == 2:  # bottom left
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(2 * s, yc + h)
            x1b, y1b = w - (x2a - x1a), 0
        else:  # bottom right
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * s), min(2 * s, yc + h)
            x1b, y1b = 0, 0
        tw, th = x2a - x1a, y2a - y1a
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y1b + th, x1b:x1b + tw]
        if len(lab):
            dx, dy = x1a - x1b, y1a - y1b
            b = lab[:, 1:5] + np.array([dx, dy, dx, dy], np.float32)
            c = b.copy()
            c[:, [0, 2]] = c[:, [0, 2]].clip(x1a, x2a)
            c[:, [1, 3]] = c[:, [1, 3]].clip(y1a, y2a)
            area0 = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            cw, ch = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
            keep = (cw >= 1) & (ch >= 1) & (cw * ch >= min_visible * area0)
            out.append(np.concatenate([lab[keep, :1], c[keep]], 1))
    labels_out = np.concatenate(out, 0).astype(np.float32) if out else _empty_labels()
    return canvas, labels_out


def mixup(img1: np.ndarray, labels1: np.ndarray, img2: np.ndarray, labels2: np.ndarray,
          rng: np.random.Generator | None = None):
    """Blend two same-size images with a ``Beta(32, 32)`` weight; keep both images' boxes."""
    rng = rng or np.random.default_rng()
    r = float(rng.beta(32.0, 32.0))
    img = cv2.addWeighted(img1, r, img2, 1.0 - r, 0.0)
    return img, np.concatenate([labels1, labels2], 0).astype(np.float32)
