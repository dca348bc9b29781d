"""Helpers of the evaluation / inference tests: a fake runtime backend, tiny synthetic data sets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from repyolo.runtime import Backend


class BoxBackend(Backend):
    """A fake runtime: for every image it predicts the box ``box_fn(x)`` (input pixels) with score
    ``score`` for class ``cls`` on anchor 0, and nothing (score 0) on the other anchors.

    ``box_fn`` receives the single ``(3, H, W)`` input and returns xyxy input pixels (or ``None``).
    """

    kind = "fake"

    def __init__(self, box_fn, names=("a", "b", "c"), cls: int = 1, score: float = 0.9, anchors: int = 16,
                 img_size=None, batch=None):
        self.box_fn, self.names, self.cls, self.score, self.anchors = box_fn, list(names), cls, score, anchors
        self.img_size, self.batch, self.stride = img_size, batch, 32
        self.calls = []

    def __call__(self, x):
        x = torch.as_tensor(x)
        self.calls.append(tuple(x.shape))
        out = torch.zeros(x.shape[0], self.anchors, 4 + len(self.names))
        out[:, :, 2:4] = 1.0
        for i in range(x.shape[0]):
            box = self.box_fn(x[i])
            if box is None:  # nothing found: no detection for this image
                continue
            out[i, 0, :4] = torch.as_tensor(box, dtype=torch.float32)
            out[i, 0, 4 + self.cls] = self.score
        return out


def gray_content_box(x: torch.Tensor, pad_value: float = 114 / 255) -> list[float]:
    """xyxy (input pixels) of the non-padding region of a letterboxed input ``(3, H, W)``."""
    content = (x - pad_value).abs().amax(0) > 1e-3
    ys = torch.nonzero(content.any(1)).squeeze(1)
    xs = torch.nonzero(content.any(0)).squeeze(1)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def write_image(path: Path, img: np.ndarray) -> Path:
    from repyolo.data.io import write_image as _w

    _w(path, img)
    return path


def white_box(x: torch.Tensor):
    """xyxy (input pixels) of the white object: pixels brighter than 0.5 (the 114 padding and the
    dark background are darker); ``None`` when there is none."""
    mask = x.mean(0) > 0.5
    if not mask.any():
        return None
    ys = torch.nonzero(mask.any(1)).squeeze(1)
    xs = torch.nonzero(mask.any(0)).squeeze(1)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def scene(h: int, w: int, box, seed: int = 0) -> np.ndarray:
    """A dark noisy ``h x w`` RGB image with a white rectangle at ``box`` (x1, y1, x2, y2), or none."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    if box is not None:
        x1, y1, x2, y2 = box
        img[y1:y2, x1:x2] = 255
    return img


SHAPES = [(200, 300), (333, 120), (64, 96), (480, 640), (97, 211), (256, 256), (150, 500)]


def make_box_dataset(root: Path, cls: int = 1, names=("a", "b", "c"), shapes=SHAPES, background: bool = True) -> Path:
    """A YOLO-txt data set of PNG scenes, one white box of class ``cls`` each (plus one image
    without objects); returns its data YAML (train = val)."""
    img_dir, lab_dir = root / "images" / "val", root / "labels" / "val"
    lab_dir.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(shapes):
        box = (w // 5, h // 4, w // 5 + max(w // 3, 8), h // 4 + max(h // 2, 8))
        write_image(img_dir / f"{i + 1:06d}.png", scene(h, w, box, seed=i))
        x1, y1, x2, y2 = box
        (lab_dir / f"{i + 1:06d}.txt").write_text(
            f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n")
    if background:
        write_image(img_dir / "000099.png", scene(120, 160, None, seed=99))
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/val\nval: images/val\nnames: {list(names)}\n")
    return data


class EndToEndBackend(BoxBackend):
    """A fake end-to-end runtime (NMS inside the file): ``detect(x, conf)`` returns per image
    ``(N, 6)`` ``x1 y1 x2 y2 score class`` in input pixels; ``backend(x)`` is unavailable."""

    end2end = True

    def __call__(self, x):
        raise RuntimeError("end-to-end model: use detect()")

    def detect(self, x, conf: float = 0.0):
        raw = BoxBackend.__call__(self, x)
        out = []
        for r in raw:
            s, c = r[:, 4:].max(1)
            keep = s > conf
            out.append(torch.cat((r[keep, :4], s[keep, None], c[keep, None].float()), 1))
        return out
