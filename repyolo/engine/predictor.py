"""Inference on images, folders, globs, list files, videos and streams.

:class:`Predictor` wraps any runtime :func:`~repyolo.export.runtime.load_backend` accepts
(a ``.pt`` checkpoint, an ONNX file, an OpenVINO folder, or an ``nn.Module``):
letterbox (gray 114 padding) -> backend -> NMS -> boxes mapped back to the original pixels,
returned as :class:`Result` objects.

Sources (:func:`resolve_sources`): an image file, a folder (its images and videos, sorted), a glob
pattern, a ``.txt`` list of paths, a video file, a webcam index (``0``) or a stream URL, a numpy
RGB array, or a list of any of these. A source that cannot be used is reported with a one-line
warning and skipped; :class:`~repyolo.errors.DataError` is raised only when nothing is left.
"""
from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from repyolo.errors import DataError, RepyoloError
from repyolo.ops.postprocess import non_max_suppression, scale_boxes
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

VID_FORMATS = frozenset("mp4 avi mov mkv m4v wmv mpeg mpg webm ts flv asf 3gp".split())
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")


def _img_formats() -> frozenset:
    from repyolo.data.io import IMG_FORMATS

    return IMG_FORMATS


def select_device(device: str | int | torch.device | None = "cpu") -> torch.device:
    """``'cpu'``, ``'0'`` / ``0`` / ``'0,1'`` (first listed CUDA device), ``'cuda:N'`` -> a torch device.

    Raises :class:`RepyoloError` when CUDA is asked for but not available.
    """
    if isinstance(device, torch.device):
        return device
    text = "cpu" if device is None or device == "" else str(device).strip().lower()
    if text == "cpu":
        return torch.device("cpu")
    if text.replace(",", "").isdigit():
        text = f"cuda:{text.split(',')[0]}"
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise RepyoloError(f"device {device!r} requested but CUDA is not available (use --device cpu)")
    try:
        return torch.device(text)
    except RuntimeError:
        raise RepyoloError(f"unknown device {device!r} (use cpu, 0, or cuda:N)") from None


def open_backend(weights, device="cpu", **kwargs):
    """:func:`~repyolo.export.runtime.load_backend` with every failure turned into a one-line
    :class:`~repyolo.errors.RepyoloError` naming the file (no traceback for a bad weights file)."""
    from repyolo.errors import CheckpointError
    from repyolo.export.runtime import load_backend

    try:
        return load_backend(weights, device, **kwargs)
    except RepyoloError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("repyolo"):
            raise RepyoloError(f"{weights}: no runtime for this model type yet ({exc.name} is missing)") from None
        raise RepyoloError(f"{weights}: the runtime package {exc.name!r} is not installed") from None
    except MemoryError:
        raise
    except Exception as exc:  # torch.load / onnxruntime / openvino on a file that is not a model
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{weights}: not a loadable model or checkpoint ({type(exc).__name__}: {first})") \
            from None


# ---------------------------------------------------------------------------------------------- sources


@dataclass
class SourceEntry:
    """One thing to read: ``kind`` is ``'image'``, ``'video'``, ``'stream'`` or ``'array'``."""

    kind: str
    target: object  # path str, webcam index / URL, or an ndarray
    name: str


@dataclass
class Frame:
    """One decoded frame: ``img`` uint8 ``(H, W, 3)`` RGB."""

    img: np.ndarray
    path: str | None
    name: str
    kind: str
    index: int = 0           # frame number within a video / stream
    fps: float = 0.0
    n_frames: int = 0        # frames in the video (0 = unknown / stream)
    source_id: int = 0       # which entry of the resolved source list


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _classify(path: Path) -> str | None:
    ext = path.suffix[1:].lower()
    if ext in _img_formats():
        return "image"
    if ext in VID_FORMATS:
        return "video"
    return None


def resolve_sources(source, warn: list[str] | None = None) -> list[SourceEntry]:
    """Expand ``source`` into a flat list of entries.

    Args:
        source: path / glob / list file / folder / webcam index / URL / ndarray, or a list of them.
        warn: list that receives one line per source that was skipped (also logged).
    Raises:
        DataError: nothing usable was found (the message says why).
    """
    warnings = [] if warn is None else warn
    out: list[SourceEntry] = []

    def skip(msg: str) -> None:
        warnings.append(msg)
        LOGGER.warning("%s", msg)

    def add_path(p: Path, from_list: bool = False) -> None:
        kind = _classify(p)
        if kind is None:
            skip(f"{p}: not an image or video file type, skipped")
        else:
            out.append(SourceEntry(kind, str(p), p.name))

    def visit(s) -> None:
        if isinstance(s, SourceEntry):  # already resolved
            out.append(s)
            return
        if isinstance(s, np.ndarray):
            if s.dtype == np.uint8 and s.ndim == 2:  # grayscale
                s = np.repeat(s[:, :, None], 3, 2)
            elif s.dtype == np.uint8 and s.ndim == 3 and s.shape[2] in (1, 4):  # gray / RGBA
                s = np.repeat(s, 3, 2) if s.shape[2] == 1 else np.ascontiguousarray(s[:, :, :3])
            if s.ndim != 3 or s.shape[2] != 3 or s.dtype != np.uint8 or 0 in s.shape:
                skip(f"array of shape {s.shape} dtype {s.dtype}: expected uint8 (H, W, 3) RGB, skipped")
            else:
                out.append(SourceEntry("array", s, f"array{len(out)}"))
            return
        if isinstance(s, (list, tuple)):
            for item in s:
                visit(item)
            return
        if isinstance(s, int) and not isinstance(s, bool):
            out.append(SourceEntry("stream", s, f"webcam{s}"))
            return
        text = str(s)
        if text.isdigit():
            out.append(SourceEntry("stream", int(text), f"webcam{text}"))
            return
        if text.lower().startswith(STREAM_PREFIXES):
            out.append(SourceEntry("stream", text, Path(text.split("?")[0]).stem or "stream"))
            return
        p = Path(os.path.expanduser(text))
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and _classify(f) is not None)
            if not files:
                skip(f"{p}: no images or videos found in this folder")
            for f in files:
                out.append(SourceEntry(_classify(f), str(f), f.name))
            return
        if p.is_file():
            if p.suffix.lower() == ".txt":
                _visit_list(p)
            else:
                add_path(p)
            return
        if _is_glob(text):
            files = sorted(Path(f) for f in glob.glob(os.path.expanduser(text), recursive=True))
            files = [f for f in files if f.is_file() and _classify(f) is not None]
            if not files:
                skip(f"{text}: no images or videos match this pattern")
            for f in files:
                out.append(SourceEntry(_classify(f), str(f), f.name))
            return
        skip(f"{text}: no such file or folder")

    def _visit_list(p: Path) -> None:
        try:
            lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            skip(f"{p}: cannot read list file ({exc})")
            return
        n0 = len(out)
        for ln_no, line in enumerate(lines, 1):
            if not line or line.startswith("#"):
                continue
            q = Path(os.path.expanduser(line))
            if not q.is_absolute() and not q.exists():
                q = p.parent / q
            if q.is_file():
                add_path(q)
            else:
                skip(f"{p}:{ln_no}: {line}: no such file")
        if len(out) == n0:
            skip(f"{p}: list file names no readable image or video")

    visit(source)
    if not out:
        reason = warnings[0] if warnings else f"{source!r}: nothing to read"
        more = f" (and {len(warnings) - 1} more problems)" if len(warnings) > 1 else ""
        raise DataError(f"no images or videos to process: {reason}{more}")
    return out


def iter_frames(entries: Iterable[SourceEntry], vid_stride: int = 1, warn: list[str] | None = None) -> Iterator[Frame]:
    """Decode the entries one frame at a time (RGB). Unreadable images and videos that cannot be
    opened are reported (one line each, appended to ``warn``) and skipped."""
    import cv2

    from repyolo.data.io import read_image

    warnings = [] if warn is None else warn
    for sid, e in enumerate(entries):
        if e.kind == "array":
            yield Frame(e.target, None, e.name, "array", source_id=sid)
        elif e.kind == "image":
            try:
                img = read_image(e.target)
            except DataError as exc:
                warnings.append(str(exc))
                LOGGER.warning("%s (skipped)", exc)
                continue
            yield Frame(img, e.target, e.name, "image", source_id=sid)
        else:
            cap = cv2.VideoCapture(e.target)
            if not cap.isOpened():
                msg = (f"{e.target}: cannot open video (unsupported codec or not a video)" if e.kind == "video"
                       else f"cannot open stream {e.target!r}")
                warnings.append(msg)
                LOGGER.warning("%s (skipped)", msg)
                cap.release()
                continue
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
            n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if e.kind == "video" else 0
            index, got = 0, 0
            try:
                while True:
                    ok, bgr = cap.read()
                    if not ok or bgr is None:
                        break
                    if index % max(int(vid_stride), 1) == 0:
                        got += 1
                        yield Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), str(e.target), e.name, e.kind, index,
                                    fps / max(int(vid_stride), 1), n_frames, sid)
                    index += 1
            finally:
                cap.release()
            if got == 0:
                msg = f"{e.target}: no frame could be decoded"
                warnings.append(msg)
                LOGGER.warning("%s (skipped)", msg)


# ---------------------------------------------------------------------------------------------- results


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
        from repyolo.utils.plots import draw_detections

        base = img if img is not None else self.orig_img
        if base is None:
            if self.path is None:
                raise RepyoloError("this result keeps no image to draw on: pass img=")
            from repyolo.data.io import read_image

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


# ---------------------------------------------------------------------------------------------- predictor


def filter_detections(det: torch.Tensor, conf_thres: float = 0.0, classes=None, max_det: int | None = None):
    """Apply a score threshold, a class filter and a count cap to ``(N, 6)`` detections (e.g. the
    output of an end-to-end model, whose NMS already ran); keeps the highest scores."""
    det = torch.as_tensor(det).float().reshape(-1, 6)
    keep = det[:, 4] > conf_thres
    if classes is not None:
        keep &= torch.isin(det[:, 5].long(), torch.as_tensor(list(classes), dtype=torch.long))
    det = det[keep]
    if max_det is not None and len(det) > max_det:
        det = det[det[:, 4].argsort(descending=True, stable=True)[:max_det]]
    return det


def _letterbox_exact(img: np.ndarray, shape, auto: bool, stride: int):
    """Letterbox ``img`` into ``shape``; returns ``(img, meta)`` with the exact per-axis gains."""
    from repyolo.data.augment import letterbox

    h0, w0 = img.shape[:2]
    out, r, pad = letterbox(img, shape, auto=auto, scaleup=True, stride=stride)
    # the resized (unpadded) size the letterbox used: round(w0 * r) x round(h0 * r)
    nw, nh = max(int(round(w0 * r)), 1), max(int(round(h0 * r)), 1)
    return out, {"orig_shape": (h0, w0), "ratio": (nw / w0, nh / h0), "pad": tuple(pad)}


class Predictor:
    """Run a detector on images.

    Args:
        weights: a path ``load_backend`` opens, a Backend, or an ``nn.Module``.
        device: ``'cpu'``, ``'0'``, ``'cuda:N'``.
        img_size: inference size (long side; square letterbox unless ``rect``).
        conf_thres, iou_thres, max_det, classes, agnostic, multi_label: NMS settings.
        rect: pad only to the next multiple of the stride (smaller input for non-square images);
            images of one batch are then padded to a common shape on the right / bottom.
        batch_size: images per forward pass; half: FP16 on CUDA.
    """

    def __init__(self, weights, device="cpu", img_size: int = 640, conf_thres: float = 0.25,
                 iou_thres: float = 0.45, max_det: int = 300, classes=None, agnostic: bool = False,
                 multi_label: bool = False, rect: bool = False, batch_size: int = 1, half: bool = False):
        from repyolo.export.runtime import Backend

        self.device = select_device(device)
        if isinstance(weights, Backend):
            self.backend = weights
        else:
            self.backend = open_backend(weights, self.device, **({"half": True} if half else {}))
        fixed = getattr(self.backend, "img_size", None)
        self.img_size = tuple(int(v) for v in fixed) if fixed is not None else (int(img_size), int(img_size))
        self.rect = bool(rect) and fixed is None
        self.stride = int(getattr(self.backend, "stride", 32) or 32)
        if fixed is None and any(v % self.stride for v in self.img_size):
            new = tuple(int(np.ceil(v / self.stride) * self.stride) for v in self.img_size)
            LOGGER.warning("img size %s is not a multiple of the stride %d: using %s", self.img_size, self.stride, new)
            self.img_size = new
        self.conf_thres, self.iou_thres, self.max_det = float(conf_thres), float(iou_thres), int(max_det)
        self.classes = list(classes) if classes is not None else None
        self.agnostic, self.multi_label = bool(agnostic), bool(multi_label)
        fixed_batch = getattr(self.backend, "batch", None)
        self.fixed_batch = int(fixed_batch) if fixed_batch else None
        self.batch_size = self.fixed_batch or max(int(batch_size), 1)
        self.names = list(self.backend.names) if getattr(self.backend, "names", None) else []

    # ------------------------------------------------------------------ core

    def preprocess(self, imgs: list[np.ndarray]) -> tuple[torch.Tensor, list[dict]]:
        """RGB uint8 images -> float ``(B, 3, H, W)`` in 0..1 and their letterbox metas."""
        boxed, metas = [], []
        for img in imgs:
            out, meta = _letterbox_exact(img, self.img_size, self.rect, self.stride)
            boxed.append(out)
            metas.append(meta)
        H = max(b.shape[0] for b in boxed)
        W = max(b.shape[1] for b in boxed)
        n = max(len(boxed), self.fixed_batch or 0)
        batch = np.full((n, H, W, 3), 114, dtype=np.uint8)
        for i, b in enumerate(boxed):
            batch[i, : b.shape[0], : b.shape[1]] = b  # extra padding right / bottom keeps meta["pad"] valid
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        return x.contiguous(), metas

    @torch.inference_mode()
    def predict_arrays(self, imgs: list[np.ndarray]) -> tuple[list[np.ndarray], dict]:
        """Detections ``(N, 6)`` float32 ``x1 y1 x2 y2 score class`` in original pixels for each
        RGB image, and the per-image speed ``{"preprocess", "inference", "nms"}`` in ms."""
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        x, metas = self.preprocess(imgs)
        sync()
        t1 = time.perf_counter()
        if getattr(self.backend, "end2end", False):  # NMS inside the model file
            dets = [filter_detections(d, self.conf_thres, self.classes, self.max_det)
                    for d in self.backend.detect(x, self.conf_thres)[: len(imgs)]]
            sync()
            t2 = time.perf_counter()
        else:
            preds = torch.as_tensor(self.backend(x))[: len(imgs)]
            sync()
            t2 = time.perf_counter()
            if self.names and preds.shape[-1] - 4 != len(self.names):
                raise RepyoloError(f"model output has {preds.shape[-1] - 4} classes but {len(self.names)} names")
            dets = non_max_suppression(preds, self.conf_thres, self.iou_thres, self.classes, self.agnostic,
                                       self.multi_label, self.max_det)
        out = [scale_boxes(d.float().cpu(), m).numpy() for d, m in zip(dets, metas)]
        t3 = time.perf_counter()
        n = max(len(imgs), 1)
        speed = {"preprocess": (t1 - t0) * 1e3 / n, "inference": (t2 - t1) * 1e3 / n, "nms": (t3 - t2) * 1e3 / n}
        return out, speed

    def _results(self, frames: list[Frame]) -> list[Result]:
        dets, speed = self.predict_arrays([f.img for f in frames])
        names = self.names or [str(i) for i in range(int(max((d[:, 5].max() for d in dets if len(d)),
                                                                default=-1)) + 1)]
        return [Result(d[:, :4].astype(np.float32), d[:, 4].astype(np.float32), d[:, 5].astype(np.int64), names,
                       f.path, tuple(f.img.shape[:2]), f.img, f.index if f.kind in ("video", "stream") else None,
                       dict(speed)) for d, f in zip(dets, frames)]

    def stream(self, source, vid_stride: int = 1, warn: list[str] | None = None) -> Iterator[tuple[Frame, Result]]:
        """Yield ``(frame, result)`` for every readable frame of ``source``, batching up to
        ``batch_size`` consecutive frames. Raises DataError when ``source`` holds nothing usable."""
        warnings = [] if warn is None else warn
        entries = resolve_sources(source, warnings)
        pending: list[Frame] = []
        count = 0
        for frame in iter_frames(entries, vid_stride, warnings):
            pending.append(frame)
            live = frame.kind == "stream"
            if len(pending) >= self.batch_size or live:
                for f, r in zip(pending, self._results(pending)):
                    count += 1
                    yield f, r
                pending = []
        if pending:
            for f, r in zip(pending, self._results(pending)):
                count += 1
                yield f, r
        if count == 0:
            reason = warnings[0] if warnings else "no frames"
            more = f" (and {len(warnings) - 1} more problems)" if len(warnings) > 1 else ""
            raise DataError(f"nothing could be processed: {reason}{more}")

    def __call__(self, source, vid_stride: int = 1) -> list[Result]:
        """Results for every image / frame of ``source`` (see :func:`resolve_sources`)."""
        return [r for _, r in self.stream(source, vid_stride)]


def _image_id(stem: str):
    return int(stem) if stem.isdigit() else stem


class PredictionWriter:
    """Writes results as they arrive into ``save_dir``: annotated images (``<stem>.<ext>``) and
    videos (``<stem>.mp4``), YOLO txt labels (``labels/<stem>.txt``, ``<stem>_<frame>.txt`` for
    videos: ``class cx cy w h conf`` normalised) and ``predictions.json`` (COCO-style results with
    ``file_name``; ``image_id`` = the numeric stem, else the stem). Call :meth:`close` at the end."""

    def __init__(self, save_dir: str | Path, save_img: bool = True, save_txt: bool = False, save_json: bool = False,
                 line_width: int | None = None, hide_labels: bool = False, hide_conf: bool = False):
        self.dir = Path(save_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.save_img, self.save_txt, self.save_json = save_img, save_txt, save_json
        self.line_width, self.hide_labels, self.hide_conf = line_width, hide_labels, hide_conf
        self.writers: dict[int, object] = {}
        self.json: list[dict] = []
        self.used: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def _unique(self, key: tuple, stem: str) -> str:
        """One output stem per source (two files named a.jpg in different folders -> a, a_2)."""
        k = str(key)
        if k not in self.used:
            n = self.counts.get(stem, 0) + 1
            self.counts[stem] = n
            self.used[k] = stem if n == 1 else f"{stem}_{n}"
        return self.used[k]

    def add(self, frame: Frame, result: Result) -> None:
        import cv2

        from repyolo.data.io import write_image

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
        for w in self.writers.values():
            w.release()
        if self.save_json:
            (self.dir / "predictions.json").write_text(json.dumps(self.json), encoding="utf-8")


def predict_to_dir(weights, sources, out_dir: str | Path, img_size: int = 640, conf: float = 0.25, iou: float = 0.45,
                   save_txt: bool = False, save_json: bool = False, device="cpu", **kwargs) -> Path:
    """Run a :class:`Predictor` over ``sources`` and write annotated images (and optionally txt /
    JSON) into ``out_dir`` (created; reused if it exists). ``kwargs`` go to :class:`Predictor`.
    Returns ``out_dir``."""
    predictor = Predictor(weights, device=device, img_size=img_size, conf_thres=conf, iou_thres=iou, **kwargs)
    writer = PredictionWriter(out_dir, save_txt=save_txt, save_json=save_json)
    try:
        for frame, result in predictor.stream(sources):
            writer.add(frame, result)
    finally:
        writer.close()
    return Path(out_dir)


def increment_path(path: str | Path, exist_ok: bool = False) -> Path:
    """``runs/predict/exp`` -> the first of ``exp``, ``exp2``, ``exp3``... that does not exist."""
    path = Path(path)
    if exist_ok or not path.exists():
        return path
    n = 2
    while (path.parent / f"{path.name}{n}").exists():
        n += 1
    return path.parent / f"{path.name}{n}"


__all__ = ["Predictor", "Result", "PredictionWriter", "predict_to_dir", "open_backend", "filter_detections",
           "Frame", "SourceEntry", "resolve_sources", "iter_frames", "select_device", "increment_path", "VID_FORMATS"]
