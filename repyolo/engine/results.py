"""Detections of one image (:class:`Result`) and writing them out (:class:`PredictionWriter`)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from repyolo.data.io import read_image, write_image
from repyolo.data.media import Frame
from repyolo.errors import RepyoloError
from repyolo.utils.plots import draw_detections


@dataclass
class Result:
    """Detections of one image, in its original pixels.

    Attributes:
        boxes: float32 ``(N, 4)`` xyxy; scores: float32 ``(N,)``; class_ids: int64 ``(N,)``.
        class_names: all class names of the model (index = class id).
        path: source file (``None`` for an array); orig_shape: ``(h, w)``; orig_img: the RGB image.
        frame: frame number for videos and streams; speed: ms for ``preprocess / inference / nms``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    path: str | None
    orig_shape: tuple[int, int]
    orig_img: np.ndarray | None = field(default=None, repr=False)
    frame: int | None = None
    speed: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def names(self) -> list[str]:
        """The class name of each box."""
        return [self.class_names[int(c)] if 0 <= int(c) < len(self.class_names) else str(int(c))
                for c in self.class_ids]

    def to_coco(self, image_id, category_ids=None) -> list[dict]:
        """COCO results: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``;
        ``category_ids`` maps class index -> category id (default: the class index)."""
        cats = list(range(max(len(self.class_names), int(self.class_ids.max(initial=-1)) + 1))) \
            if category_ids is None else list(category_ids)
        b = self.boxes.astype(np.float64)
        xywh = np.round(np.concatenate((b[:, :2], b[:, 2:] - b[:, :2]), 1), 3).tolist()
        return [{"image_id": image_id, "category_id": int(cats[int(c)]), "bbox": bb, "score": round(float(s), 5)}
                for bb, s, c in zip(xywh, self.scores.tolist(), self.class_ids.tolist())]

    def to_yolo_txt(self, with_conf: bool = True) -> str:
        """YOLO label lines ``class cx cy w h [conf]``, coordinates normalised to 0..1."""
        h, w = self.orig_shape
        lines = []
        for (x1, y1, x2, y2), s, c in zip(self.boxes.tolist(), self.scores.tolist(), self.class_ids.tolist()):
            row = f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            lines.append(row + (f" {s:.5f}" if with_conf else ""))
        return "\n".join(lines) + ("\n" if lines else "")

    def plot(self, line_width: int | None = None, hide_labels: bool = False, hide_conf: bool = False,
             img: np.ndarray | None = None) -> np.ndarray:
        """The image with boxes and labels drawn: uint8 ``(H, W, 3)`` RGB."""
        base = img if img is not None else self.orig_img
        if base is None:
            if self.path is None:
                raise RepyoloError("this result keeps no image to draw on: pass img=")
            base = read_image(self.path)
        return draw_detections(base, self.boxes, self.scores, self.class_ids, self.class_names, line_width,
                               hide_labels, hide_conf)

    def summary(self) -> str:
        """``'2 persons, 1 dog'``-style count of the detections."""
        if not len(self):
            return "no detections"
        names, counts = np.unique(np.asarray(self.names), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return ", ".join(f"{counts[i]} {names[i]}" for i in order)


def _image_id(stem: str):
    return int(stem) if stem.isdigit() else stem


class PredictionWriter:
    """Writes results as they arrive into ``save_dir``: annotated images (``<stem>.<ext>``) and
    videos (``<stem>.mp4``), YOLO txt labels (``labels/<stem>.txt``, ``<stem>_<frame>.txt`` for
    videos: ``class cx cy w h conf`` normalised) and ``predictions.json`` (COCO-style results with
    ``file_name``; ``image_id`` = the numeric stem, else the stem). Call :meth:`close` at the end.

    ``background=True`` draws and writes in one worker thread, in arrival order (OpenCV's drawing
    and JPEG encoding release the GIL, so this overlaps with the next inference); at most
    ``BACKLOG`` results wait, and an error in the worker is raised by the next :meth:`add` or by
    :meth:`close`."""

    BACKLOG = 4

    def __init__(self, save_dir: str | Path, save_img: bool = True, save_txt: bool = False, save_json: bool = False,
                 line_width: int | None = None, hide_labels: bool = False, hide_conf: bool = False,
                 background: bool = False):
        self.dir = Path(save_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.save_img, self.save_txt, self.save_json = save_img, save_txt, save_json
        self.line_width, self.hide_labels, self.hide_conf = line_width, hide_labels, hide_conf
        self.writers: dict[int, object] = {}
        self.json: list[dict] = []
        self.used: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self._pool = None
        self._pending: list = []
        if background:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="repyolo-writer")

    def _unique(self, key: tuple, stem: str) -> str:
        """One output stem per source (two files named a.jpg in different folders -> a, a_2)."""
        k = str(key)
        if k not in self.used:
            n = self.counts.get(stem, 0) + 1
            self.counts[stem] = n
            self.used[k] = stem if n == 1 else f"{stem}_{n}"
        return self.used[k]

    def add(self, frame: Frame, result: Result) -> None:
        """Write one result (now, or queued for the worker thread with ``background``)."""
        if self._pool is None:
            self._write(frame, result)
            return
        self._pending.append(self._pool.submit(self._write, frame, result))
        while len(self._pending) > self.BACKLOG:
            self._pending.pop(0).result()

    def _write(self, frame: Frame, result: Result) -> None:
        import cv2

        stem = self._unique((frame.source_id, frame.path), Path(frame.name).stem or "image")
        video = frame.kind in ("video", "stream")
        label_stem = f"{stem}_{frame.index}" if video else stem
        if self.save_img:
            drawn = result.plot(self.line_width, self.hide_labels, self.hide_conf)
            if video:
                w = self.writers.get(frame.source_id)
                if w is None:
                    h, wd = drawn.shape[:2]
                    path = self.dir / f"{stem}.mp4"
                    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), frame.fps or 30.0, (wd, h))
                    self.writers[frame.source_id] = w
                w.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            else:
                ext = Path(frame.name).suffix.lower() if frame.kind == "image" else ".jpg"
                ext = ext if ext in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff") else ".jpg"
                write_image(self.dir / f"{stem}{ext}", drawn)
        if self.save_txt:
            (self.dir / "labels").mkdir(parents=True, exist_ok=True)
            (self.dir / "labels" / f"{label_stem}.txt").write_text(result.to_yolo_txt(), encoding="utf-8")
        if self.save_json:
            image_id = label_stem if video else _image_id(stem)
            for d in result.to_coco(image_id):
                d["file_name"] = frame.path if frame.path is not None else frame.name
                if video:
                    d["frame"] = frame.index
                self.json.append(d)

    def close(self) -> None:
        if self._pool is not None:
            try:
                for f in self._pending:
                    f.result()
            finally:
                self._pending = []
                self._pool.shutdown(wait=True)
                self._pool = None
        for w in self.writers.values():
            w.release()
        if self.save_json:
            (self.dir / "predictions.json").write_text(json.dumps(self.json), encoding="utf-8")
