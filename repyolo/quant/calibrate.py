"""Calibration data and activation ranges for post-training quantization.

:class:`CalibrationImages` picks ``n`` images of a data set split and letterboxes them exactly
like evaluation (square ``img_size`` canvas, gray 114 border, no up-scaling), so the INT8 model
is calibrated on the distribution it will see. :class:`CalibrationReader` feeds them to
onnxruntime's calibrators (a ``CalibrationDataReader``).

:func:`collect_ranges` runs one calibration pass over an FP32 ONNX model and returns the range
of every tensor the quantizer may need (onnxruntime ``TensorsData``); :func:`save_ranges` writes
them as onnxruntime's calibration cache JSON, which ``quantize_static(calibration_cache_path=...)``
reads back. Calibrating once and reusing the cache is what makes sensitivity analysis and
partial quantization cheap: every variant is built from the same ranges.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np

from repyolo.errors import DataError, RepyoloError
from repyolo.ops.image import to_model_input
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

CALIBRATORS = ("minmax", "percentile", "entropy")


def calibration_method(name: str):
    """``'minmax' | 'percentile' | 'entropy'`` -> onnxruntime ``CalibrationMethod``."""
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
             "entropy": CalibrationMethod.Entropy}
    key = str(name).lower()
    if key not in table:
        raise RepyoloError(f"unknown calibrator {name!r}; choose one of {', '.join(CALIBRATORS)}")
    return table[key]


class CalibrationImages:
    """``n`` images of one split of a data set, letterboxed like evaluation.

    Args:
        data: a data YAML path or a :class:`~repyolo.data.config.DataConfig`.
        n: number of images (all of the split when it has fewer); a seeded random subset.
        img_size: square network input size (the static ONNX input).
        split: ``'train'`` (default), ``'val'`` or ``'test'``; ``'train'`` falls back to ``'val'``
            when the data set has no train split.
        stride: model stride (letterbox geometry).
        seed: subset seed.

    ``images()`` -> uint8 ``(n, 3, S, S)`` RGB array (loaded once, cached); ``batches(b)`` yields
    float32 ``(b, 3, S, S)`` arrays in 0..1.
    """

    def __init__(self, data, n: int = 100, img_size: int = 640, split: str = "train", stride: int = 32,
                 seed: int = 0):
        from repyolo.data.config import DataConfig, load_data_config

        if n < 1:
            raise RepyoloError(f"--calib {n}: need at least one calibration image")
        cfg = data if isinstance(data, DataConfig) else load_data_config(data)
        if split == "train" and not cfg.train:
            LOGGER.info("the data set has no train split: calibrating on val images")
            split = "val"
        self.cfg, self.split, self.img_size, self.stride = cfg, split, int(img_size), int(stride)
        self.dataset = cfg.dataset(split, img_size=self.img_size, augment=False, rect=False, stride=self.stride,
                                   batch_size=1, prefix=f"calibration ({split}): ")
        if len(self.dataset) == 0:
            raise DataError(f"{cfg.yaml_path or cfg.path}: the {split} split has no usable images to calibrate on")
        total = len(self.dataset)
        rng = np.random.default_rng(seed)
        self.indices = np.sort(rng.choice(total, size=min(int(n), total), replace=False)).tolist()
        if n > total:
            LOGGER.info("calibration: the %s split has only %d images (asked for %d)", split, total, n)
        self._images = None

    def __len__(self) -> int:
        return len(self.indices)

    def images(self) -> np.ndarray:
        """uint8 ``(n, 3, S, S)`` letterboxed RGB images (cached after the first call)."""
        if self._images is None:
            first = self.dataset[self.indices[0]][0]
            out = np.empty((len(self.indices), *first.shape), dtype=np.uint8)
            out[0] = first.numpy()
            for k, i in enumerate(self.indices[1:], 1):
                out[k] = self.dataset[i][0].numpy()
            self._images = out
            LOGGER.info("calibration: %d %s images at %dx%d", len(out), self.split, out.shape[2], out.shape[3])
        return self._images

    def batches(self, batch: int = 1):
        """Float32 ``(batch, 3, S, S)`` arrays in 0..1 (the last one may be smaller)."""
        ims = self.images()
        for s in range(0, len(ims), batch):
            yield to_model_input(ims[s:s + batch])


def as_float(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, 3, H, W)`` -> float32 in 0..1 (:func:`repyolo.ops.image.to_model_input`)."""
    return to_model_input(images)


class CalibrationReader:
    """An onnxruntime ``CalibrationDataReader`` over uint8 ``(N, 3, H, W)`` images, batch ``batch``.

    ``get_next()`` returns ``{input_name: float32 (batch, 3, H, W)}`` then ``None``;
    ``rewind()`` starts over; ``set_range(start, end)`` restricts it to images ``start:end``.
    """

    def __init__(self, images: np.ndarray, input_name: str = "images", batch: int = 1):
        if images.ndim != 4 or images.shape[1] != 3:
            raise RepyoloError(f"calibration images must be (N, 3, H, W), got {images.shape}")
        self.images, self.input_name, self.batch = images, input_name, int(batch)
        self.start, self.end = 0, len(images)
        self._pos = 0

    def __len__(self) -> int:
        return self.end - self.start

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end = int(start_index), min(int(end_index), len(self.images))
        self._pos = self.start

    def rewind(self) -> None:
        self._pos = self.start

    def get_next(self) -> dict | None:
        if self._pos >= self.end:
            return None
        part = self.images[self._pos:min(self._pos + self.batch, self.end)]
        self._pos += len(part)
        if len(part) < self.batch:  # static batch: pad the last chunk by repeating its last image
            part = np.concatenate([part, np.repeat(part[-1:], self.batch - len(part), 0)])
        return {self.input_name: as_float(part)}

    def __iter__(self):
        self.rewind()
        while (item := self.get_next()) is not None:
            yield item


def _as_reader_class():
    """Register :class:`CalibrationReader` as a virtual subclass of onnxruntime's reader ABC."""
    from onnxruntime.quantization import CalibrationDataReader

    if not issubclass(CalibrationReader, CalibrationDataReader):
        CalibrationDataReader.register(CalibrationReader)


def collect_ranges(model_path: str | Path, images: np.ndarray, method: str = "minmax",
                   op_types: list[str] | None = None, chunk: int = 16, percentile: float = 99.999,
                   input_name: str = "images", batch: int = 1):
    """Run the FP32 ONNX model on ``images`` and return the calibrated ranges of its tensors.

    Args:
        model_path: FP32 ONNX model (static input, batch ``batch``).
        images: uint8 ``(N, 3, H, W)`` letterboxed calibration images.
        method: ``'minmax'`` (min / max), ``'percentile'`` (``percentile`` of a 2048-bin histogram)
            or ``'entropy'`` (KL-divergence threshold, TensorRT style).
        op_types: calibrate the outputs of these op types (``None``: every float tensor).
        chunk: images per collection step of the histogram methods (bounds memory: onnxruntime
            keeps every intermediate tensor of a step; min-max keeps only per-tensor extremes).
    Returns:
        onnxruntime ``TensorsData`` (tensor name -> range).
    """
    from onnxruntime.quantization.calibrate import create_calibrator

    _as_reader_class()
    cal_method = calibration_method(method)
    extra = {"symmetric": False}
    if method == "percentile":
        extra["percentile"] = float(percentile)
    with tempfile.TemporaryDirectory(prefix="repyolo_calib_") as tmp:
        calibrator = create_calibrator(Path(model_path), op_types or [], Path(tmp) / "augmented.onnx",
                                       calibrate_method=cal_method, extra_options=extra)
        reader = CalibrationReader(images, input_name, batch)
        sink = io.StringIO()  # the histogram collector prints progress lines
        with contextlib.redirect_stdout(sink):
            if method == "minmax":
                calibrator.collect_data(reader)
            else:
                for start in range(0, len(images), max(1, int(chunk))):
                    reader.set_range(start, start + max(1, int(chunk)))
                    calibrator.collect_data(reader)
            ranges = calibrator.compute_data()
        del calibrator
    LOGGER.info("calibrated %d tensors on %d images (%s)", len(ranges.data), len(images), method)
    return ranges


def save_ranges(ranges, path: str | Path) -> Path:
    """Write ``TensorsData`` as onnxruntime's calibration cache JSON (``calibration_cache_path``)."""
    from onnxruntime.quantization.calibrate import save_tensors_data

    path = Path(path)
    save_tensors_data(ranges, path)
    return path


def load_ranges(path: str | Path):
    """Read a calibration cache JSON written by :func:`save_ranges` -> ``TensorsData``."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    path = Path(path)
    if not path.is_file():
        raise RepyoloError(f"{path}: calibration cache not found")
    try:
        return load_tensors_data(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise RepyoloError(f"{path}: not a calibration cache ({exc})") from None


def range_of(ranges, name: str) -> tuple[float, float] | None:
    """``(min, max)`` of tensor ``name`` in ``TensorsData`` (``None`` if absent)."""
    item = ranges.data.get(name) if hasattr(ranges, "data") else None
    if item is None:
        return None
    lo, hi = item.range_value
    return float(np.asarray(lo).reshape(-1)[0]), float(np.asarray(hi).reshape(-1)[0])


__all__ = ["CALIBRATORS", "CalibrationImages", "CalibrationReader", "calibration_method", "collect_ranges",
           "save_ranges", "load_ranges", "range_of", "as_float"]
