"""Inference on images, folders, globs, list files, videos and streams.

:class:`Predictor` wraps any runtime :func:`repyolo.runtime.load_backend` accepts (a ``.pt``
checkpoint, an ONNX file, an OpenVINO folder, or an ``nn.Module``): letterbox (gray 114 padding)
-> backend -> NMS -> boxes mapped back to the original pixels, returned as
:class:`~repyolo.engine.results.Result` objects. Sources are resolved by
:func:`repyolo.data.media.resolve_sources`.

The letterbox pads only to the next multiple of the stride by default (``rect``, as the official
tools do): a 640x480 photo runs at 640x480, not 640x640, and its boxes are the same to a fraction
of a pixel (``tests/eval/test_predict.py``). Decoding and letterboxing run one thread ahead of
inference (:class:`~repyolo.data.media.Prefetcher`) for files; live streams are read as they come.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from repyolo.data.augment import letterbox
from repyolo.data.media import Frame, Prefetcher, iter_frames, resolve_sources
from repyolo.engine.results import PredictionWriter, Result
from repyolo.errors import DataError, RepyoloError
from repyolo.ops.image import to_model_input
from repyolo.ops.postprocess import filter_detections, non_max_suppression, scale_boxes
from repyolo.runtime import Backend, load_backend
from repyolo.utils.device import select_device
from repyolo.utils.logging import get_logger
from repyolo.utils.threads import apply_threads

LOGGER = get_logger(__name__)


class Predictor:
    """Run a detector on images.

    Args:
        weights: a path ``load_backend`` opens, a Backend, or an ``nn.Module``.
        device: ``'cpu'``, ``'0'``, ``'cuda:N'``.
        img_size: inference size (long side; a square ``img_size`` letterbox when ``rect=False``).
        conf_thres, iou_thres, max_det, classes, agnostic, multi_label: NMS settings.
        rect: pad only to the next multiple of the stride (default; smaller input for non-square
            images); images of one batch are then padded to a common shape on the right / bottom.
        batch_size: images per forward pass; half: FP16 on CUDA.
        threads: intra-op threads (``None``: the thread policy of :mod:`repyolo.utils.threads`);
            set process-wide for PyTorch, passed to the runtime for exported files it opens.
        prefetch: decode and letterbox image / video files one thread ahead of inference.
    """

    def __init__(self, weights, device="cpu", img_size: int = 640, conf_thres: float = 0.25,
                 iou_thres: float = 0.45, max_det: int = 300, classes=None, agnostic: bool = False,
                 multi_label: bool = False, rect: bool = True, batch_size: int = 1, half: bool = False,
                 threads: int | None = None, prefetch: bool = True):
        self.device = select_device(device)
        # the prefetch thread is light (decode + letterbox, a few ms per frame): not counted as a worker
        self.threads = apply_threads(threads, workers=0, who="predict")
        self.prefetch = bool(prefetch)
        if isinstance(weights, Backend):
            self.backend = weights
        else:
            opts = {"half": True} if half else {}
            if not isinstance(weights, torch.nn.Module):
                opts["threads"] = self.threads
            self.backend = load_backend(weights, self.device, **opts)
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

    def letterbox(self, img: np.ndarray) -> tuple[np.ndarray, dict]:
        """One RGB image -> its letterboxed network input (uint8 ``(H, W, 3)``) and its meta."""
        out, geom = letterbox(img, self.img_size, auto=self.rect, scaleup=True, stride=self.stride)
        return out, geom.meta()

    def stack(self, boxed: list[np.ndarray]) -> torch.Tensor:
        """Letterboxed images -> the float ``(B, 3, H, W)`` batch in 0..1 (padded right / bottom
        to the largest image, and to the backend's fixed batch)."""
        H = max(b.shape[0] for b in boxed)
        W = max(b.shape[1] for b in boxed)
        n = max(len(boxed), self.fixed_batch or 0)
        if n == 1 and len(boxed) == 1:
            batch = boxed[0][None]
        else:
            batch = np.full((n, H, W, 3), 114, dtype=np.uint8)
            for i, b in enumerate(boxed):
                batch[i, : b.shape[0], : b.shape[1]] = b  # extra padding right / bottom keeps meta["pad"] valid
        x = to_model_input(torch.from_numpy(batch).permute(0, 3, 1, 2), self.device)
        return x.contiguous()

    @torch.inference_mode()
    def predict_arrays(self, imgs: list[np.ndarray]) -> tuple[list[np.ndarray], dict]:
        """Detections ``(N, 6)`` float32 ``x1 y1 x2 y2 score class`` in original pixels for each
        RGB image, and the per-image speed ``{"preprocess", "inference", "nms"}`` in ms."""
        t0 = time.perf_counter()
        boxed, metas = zip(*(self.letterbox(img) for img in imgs))
        return self._predict_boxed(list(boxed), list(metas), (time.perf_counter() - t0) * 1e3)

    @torch.inference_mode()
    def _predict_boxed(self, boxed: list[np.ndarray], metas: list[dict], letterbox_ms: float
                       ) -> tuple[list[np.ndarray], dict]:
        """Inference + NMS on already letterboxed images (``letterbox_ms``: what letterboxing took)."""
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        x = self.stack(boxed)
        sync()
        t1 = time.perf_counter()
        n_img = len(boxed)
        if getattr(self.backend, "end2end", False):  # NMS inside the model file
            dets = [filter_detections(d, self.conf_thres, self.classes, self.max_det)
                    for d in self.backend.detect(x, self.conf_thres)[:n_img]]
            sync()
            t2 = time.perf_counter()
        else:
            preds = torch.as_tensor(self.backend(x))[:n_img]
            sync()
            t2 = time.perf_counter()
            if self.names and preds.shape[-1] - 4 != len(self.names):
                raise RepyoloError(f"model output has {preds.shape[-1] - 4} classes but {len(self.names)} names")
            dets = non_max_suppression(preds, self.conf_thres, self.iou_thres, self.classes, self.agnostic,
                                       self.multi_label, self.max_det)
        out = [scale_boxes(d.float().cpu(), m).numpy() for d, m in zip(dets, metas)]
        t3 = time.perf_counter()
        n = max(n_img, 1)
        speed = {"preprocess": ((t1 - t0) * 1e3 + letterbox_ms) / n, "inference": (t2 - t1) * 1e3 / n,
                 "nms": (t3 - t2) * 1e3 / n}
        return out, speed

    def _results(self, prepared: list) -> list[tuple[Frame, Result]]:
        """``(frame, Result)`` for a batch of :meth:`_prepared` items."""
        frames, boxed, metas, ms = zip(*prepared)
        dets, speed = self._predict_boxed(list(boxed), list(metas), sum(ms))
        names = self.names or [str(i) for i in range(int(max((d[:, 5].max() for d in dets if len(d)),
                                                                default=-1)) + 1)]
        return [(f, Result(d[:, :4].astype(np.float32), d[:, 4].astype(np.float32), d[:, 5].astype(np.int64), names,
                           f.path, tuple(f.img.shape[:2]), f.img, f.index if f.kind in ("video", "stream") else None,
                           dict(speed))) for d, f in zip(dets, frames)]

    def _prepared(self, frames):
        """``(frame, letterboxed image, meta, letterbox ms)`` for each frame."""
        for frame in frames:
            t0 = time.perf_counter()
            boxed, meta = self.letterbox(frame.img)
            yield frame, boxed, meta, (time.perf_counter() - t0) * 1e3

    def stream(self, source, vid_stride: int = 1, warn: list[str] | None = None) -> Iterator[tuple[Frame, Result]]:
        """Yield ``(frame, result)`` for every readable frame of ``source``, batching up to
        ``batch_size`` consecutive frames. Raises DataError when ``source`` holds nothing usable."""
        warnings = [] if warn is None else warn
        entries = resolve_sources(source, warnings)
        prepared = self._prepared(iter_frames(entries, vid_stride, warnings))
        live = any(e.kind == "stream" for e in entries)
        if self.prefetch and not live:  # a live stream is read as it comes, never buffered ahead
            prepared = Prefetcher(prepared, depth=2 * self.batch_size + 2)
        pending: list = []
        count = 0
        try:
            for item in prepared:
                pending.append(item)
                if len(pending) >= self.batch_size or item[0].kind == "stream":
                    for pair in self._results(pending):
                        count += 1
                        yield pair
                    pending = []
            for pair in self._results(pending) if pending else []:
                count += 1
                yield pair
        finally:
            if isinstance(prepared, Prefetcher):
                prepared.close()
        if count == 0:
            reason = warnings[0] if warnings else "no frames"
            more = f" (and {len(warnings) - 1} more problems)" if len(warnings) > 1 else ""
            raise DataError(f"nothing could be processed: {reason}{more}")

    def __call__(self, source, vid_stride: int = 1) -> list[Result]:
        """Results for every image / frame of ``source`` (see :func:`resolve_sources`)."""
        return [r for _, r in self.stream(source, vid_stride)]


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


__all__ = ["Predictor", "predict_to_dir"]
