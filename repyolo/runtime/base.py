"""The runtime Backend interface, and the base class of the exported-file backends.

Every backend maps a float ``(B, 3, H, W)`` batch in 0..1 (RGB) to raw predictions
``(B, A, 4 + nc)`` (xyxy input pixels + class scores), the contract of the PyTorch model in
eval mode, so ``val``, ``predict`` and ``bench`` work the same whatever file they are given.

Exported files describe themselves (:mod:`repyolo.runtime.metadata`): ``names``, ``stride``,
``img_size`` (the fixed input size, ``None`` when the file takes any size) and ``batch``
(fixed batch or ``None``). A fixed-batch file still accepts any batch: the input is split
into chunks of that size and the last chunk is zero-padded.

End-to-end files (exported with ``--nms``) have no raw output: ``backend.end2end`` is
``True``, ``backend(x)`` raises, and ``backend.detect(x)`` returns the in-graph detections,
one ``(N, 6)`` tensor ``x1 y1 x2 y2 score class`` per image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from repyolo.errors import CheckpointError, RepyoloError
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


class Backend:
    """Base class. Attributes: ``names`` (class names), ``stride`` (largest stride),
    ``img_size`` (fixed ``(H, W)`` input or ``None`` when any multiple of ``stride`` works),
    ``batch`` (fixed batch size or ``None``), ``kind`` (``'torch' | 'onnx' | 'openvino' | 'torchscript'``),
    ``end2end`` (the file contains NMS; use :meth:`detect`), ``metadata`` (the file's metadata dict)."""

    kind = "base"
    names: list[str]
    stride: int = 32
    img_size: tuple[int, int] | None = None
    batch: int | None = None
    end2end: bool = False
    metadata: dict | None = None
    source: str = ""
    ignored_options: frozenset[str] = frozenset({"fuse", "half"})  # TorchBackend options an exported file ignores

    def _check_options(self, options: dict) -> None:
        """TypeError for keyword options this backend does not take (``ignored_options`` pass)."""
        unknown = set(options) - self.ignored_options
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected options {sorted(unknown)}")

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``(B, 3, H, W)`` float in 0..1 -> ``(B, A, 4 + nc)`` float32 torch tensor (CPU or model device)."""
        raise NotImplementedError

    def detect(self, x: torch.Tensor | np.ndarray, conf: float = 0.0) -> list[torch.Tensor]:
        """End-to-end files only: per image ``(N, 6)`` ``x1 y1 x2 y2 score class`` (float32, CPU) with
        ``score > conf`` (the file's own threshold, fixed at export, applies first)."""
        raise RepyoloError(f"{self.source or self.kind}: raw-output model; run post-processing "
                           "(repyolo.ops.postprocess) on backend(x)")

    @property
    def nc(self) -> int:
        return len(self.names)

    def check_input(self, x: torch.Tensor | np.ndarray) -> None:
        """Raise a one-line error when ``x`` is not ``(B, 3, H, W)`` of the size this file takes."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise RepyoloError(f"{self.source}: expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
        h, w = int(x.shape[2]), int(x.shape[3])
        if self.img_size is not None and (h, w) != tuple(self.img_size):
            raise RepyoloError(f"{self.source}: exported for {self.img_size[0]}x{self.img_size[1]} input, "
                               f"got {h}x{w}; use --img {self.img_size[0]} or re-export with --dynamic")
        if h % self.stride or w % self.stride:
            raise RepyoloError(f"{self.source}: input {h}x{w} is not a multiple of the stride {self.stride}")


def resolve_pair(path: str | Path, suffix: str, kind: str) -> Path:
    """A folder holding exactly one ``*suffix`` file, or that file -> its path; the ``.bin`` weights of
    the same name must be beside it (OpenVINO ``.xml``, NCNN ``.param``). One-line errors name the path."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob(f"*{suffix}"))
        if len(found) != 1:
            raise CheckpointError(f"{path}: expected one {kind} {suffix} in the folder, found {len(found)}")
        path = found[0]
    if not path.is_file():
        raise CheckpointError(f"{path}: {kind} model not found")
    if not path.with_suffix(".bin").is_file():
        raise CheckpointError(f"{path}: the weights file {path.with_suffix('.bin').name} is missing beside it")
    return path


def run_in_batches(fn: Callable[[np.ndarray], list[np.ndarray]], x: np.ndarray, batch: int | None) -> list[np.ndarray]:
    """Run ``fn`` (fixed batch ``batch``, or any batch when ``None``) on ``x`` of any batch size.

    ``x`` is split into chunks of ``batch``; the last chunk is zero-padded and the padding rows
    are cut from every output (outputs are batch-first). Returns ``fn``'s outputs concatenated.
    """
    n = x.shape[0]
    if batch is None or n == batch:
        return fn(x)
    chunks = []
    for start in range(0, n, batch):
        part = x[start:start + batch]
        m = part.shape[0]
        if m < batch:
            pad = np.zeros((batch - m, *part.shape[1:]), dtype=part.dtype)
            part = np.concatenate((part, pad))
        chunks.append([o[:m] for o in fn(np.ascontiguousarray(part))])
    return [np.concatenate(outs) for outs in zip(*chunks)]


def as_numpy(x: torch.Tensor | np.ndarray, dtype=np.float32) -> np.ndarray:
    """A contiguous CPU numpy array of ``dtype``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=dtype)


def end2end_to_detections(num_dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                          conf: float = 0.0) -> list[torch.Tensor]:
    """Fixed-size end-to-end outputs -> per image ``(N, 6)`` float32 tensors (padding rows dropped)."""
    out = []
    for i in range(num_dets.shape[0]):
        k = int(num_dets[i].reshape(-1)[0])
        det = np.concatenate((boxes[i, :k], scores[i, :k, None], classes[i, :k, None]), 1).astype(np.float32)
        det = det[det[:, 4] > conf]
        out.append(torch.from_numpy(np.ascontiguousarray(det)))
    return out


class FileBackend(Backend):
    """Shared by the exported-file backends: fixed-batch splitting and end-to-end (``--nms``) files.

    Subclasses set ``path``, ``batch``, ``end2end``, ``input_dtype`` and implement ``_run(x) -> outputs``.
    """

    input_dtype = np.float32
    end2end = False

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def _forward(self, x) -> list[np.ndarray]:
        self.check_input(x)
        return run_in_batches(self._run, as_numpy(x, self.input_dtype), self.batch)

    def __call__(self, x) -> torch.Tensor:
        if self.end2end:
            raise RepyoloError(f"{self.path}: end-to-end model (exported with --nms): its outputs are final "
                               "detections; use backend.detect(x)")
        return torch.from_numpy(self._forward(x)[0]).float()

    def detect(self, x, conf: float = 0.0) -> list[torch.Tensor]:
        if not self.end2end:
            return super().detect(x, conf)
        return end2end_to_detections(*self._forward(x), conf=conf)
