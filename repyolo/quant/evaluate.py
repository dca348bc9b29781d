"""Quick accuracy checks of quantized variants: COCO mAP on a fixed subset of validation images,
and raw-output errors (MSE, SNR, cosine similarity) against the FP32 model.

Both reuse one onnxruntime session per variant (:func:`session_backend`) and images loaded once.
"""
from __future__ import annotations

import contextlib
import copy
import tempfile
from pathlib import Path

import numpy as np
import torch

from repyolo.errors import DataError
from repyolo.ops.image import to_model_input
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

_PER_IMAGE = ("im_files", "labels", "areas", "crowd", "image_ids", "file_names")


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run the block with ``n`` torch intra-op threads. The models run in onnxruntime here; torch
    only does NMS and tensor glue, small ops where spinning worker threads cost far more than
    they give (measured 100x slower NMS with 2 threads than with 1 on a busy 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def subset_dataset(dataset, indices):
    """A shallow copy of a :class:`~repyolo.data.dataset.DetectionDataset` restricted to ``indices``
    (square letterbox only: ``rect`` data sets are refused)."""
    if getattr(dataset, "rect", False):
        raise DataError("subset_dataset needs a rect=False data set")
    idx = [int(i) for i in indices]
    sub = copy.copy(dataset)
    for name in _PER_IMAGE:
        if hasattr(dataset, name):
            setattr(sub, name, [getattr(dataset, name)[i] for i in idx])
    sub.shapes = np.asarray(dataset.shapes)[idx]
    if getattr(dataset, "ims", None) is not None:
        sub.ims = [dataset.ims[i] for i in idx]
    return sub


class SubsetEvaluator:
    """COCO mAP of fixed-input models on ``n_images`` images of a split (seeded subset, cached in RAM).

    Args:
        data: data YAML or ``DataConfig``; img_size: the models' square input size;
        n_images: subset size (``0`` or more than the split: all images); split: ``'val'`` default.
    ``__call__(backend_or_path) -> dict`` is the :class:`~repyolo.engine.evaluator.Evaluator` result.
    """

    def __init__(self, data, img_size: int, n_images: int = 100, split: str = "val", stride: int = 32,
                 seed: int = 0, batch_size: int = 1):
        from repyolo.data.config import DataConfig, load_data_config
        from repyolo.engine.evaluator import Evaluator

        cfg = data if isinstance(data, DataConfig) else load_data_config(data)
        full = cfg.dataset(split, img_size=int(img_size), augment=False, rect=False, stride=int(stride),
                           batch_size=batch_size, prefix=f"{split}: ")
        if len(full) == 0:
            raise DataError(f"{cfg.yaml_path or cfg.path}: the {split} split has no usable images")
        if n_images and n_images < len(full):
            rng = np.random.default_rng(seed)
            idx = np.sort(rng.choice(len(full), size=int(n_images), replace=False))
            ds = subset_dataset(full, idx)
        else:
            ds = full
        if hasattr(ds, "_cache_ram"):  # decoded once, reused by every variant
            ds._cache_ram(1)
        self.dataset = ds
        self.evaluator = Evaluator(dataset=ds, img_size=int(img_size), batch_size=batch_size, workers=0,
                                   rect=False, plots=False, save_json=False)

    def __len__(self) -> int:
        return len(self.dataset)

    def __call__(self, model) -> dict:
        with torch_threads(1):
            return self.evaluator(model)


def session_backend(model, threads: int | None = None, workdir: str | Path | None = None):
    """An :class:`~repyolo.runtime.onnx.OnnxBackend` over an ONNX path or an in-memory
    ``ModelProto`` (written to ``workdir`` / a temporary file first)."""
    import onnx

    from repyolo.runtime.onnx import OnnxBackend

    if isinstance(model, (str, Path)):
        return OnnxBackend(model, threads=threads)
    if workdir is not None:
        path = Path(workdir) / "variant.onnx"
        onnx.save(model, str(path))
        return OnnxBackend(path, threads=threads)  # the session holds the model: the file may be overwritten
    with tempfile.TemporaryDirectory(prefix="repyolo_variant_") as tmp:
        path = Path(tmp) / "variant.onnx"
        onnx.save(model, str(path))
        return OnnxBackend(path, threads=threads)


def raw_outputs(backend, images: np.ndarray, batch: int = 1) -> np.ndarray:
    """Run ``backend`` on uint8 ``(N, 3, H, W)`` images -> float32 ``(N, A, 4 + nc)``."""
    outs = []
    for s in range(0, len(images), batch):
        x = torch.from_numpy(to_model_input(images[s:s + batch]))
        outs.append(backend(x).numpy())
    return np.concatenate(outs)


def normalized(outputs: np.ndarray, img_size) -> np.ndarray:
    """Raw outputs with box coordinates divided by the input size: boxes and scores both in ~0..1,
    so neither dominates the error metrics."""
    out = np.array(outputs, dtype=np.float64)
    h, w = (img_size, img_size) if np.isscalar(img_size) else img_size
    out[..., [0, 2]] /= w
    out[..., [1, 3]] /= h
    return out


def output_errors(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """MSE, SNR (dB) and mean per-image cosine similarity of ``out`` against ``ref`` (same shapes).

    ``snr = 10 log10(sum ref^2 / sum (ref - out)^2)``; ``cosine`` is averaged over images of the
    flattened outputs. Higher MSE / lower SNR / lower cosine = more damage.
    """
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    err = ref - out
    mse = float(np.mean(err ** 2))
    noise = float(np.sum(err ** 2))
    signal = float(np.sum(ref ** 2))
    snr = float("inf") if noise == 0 else 10.0 * np.log10(max(signal, 1e-30) / noise)
    r = ref.reshape(len(ref), -1)
    o = out.reshape(len(out), -1)
    denom = np.linalg.norm(r, axis=1) * np.linalg.norm(o, axis=1)
    cos = np.where(denom > 0, np.sum(r * o, axis=1) / np.maximum(denom, 1e-30), 1.0)
    return {"mse": mse, "snr": float(snr), "cosine": float(np.mean(cos))}


__all__ = ["SubsetEvaluator", "torch_threads", "subset_dataset", "session_backend", "raw_outputs", "normalized",
           "output_errors"]
