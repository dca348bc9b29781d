"""One inference interface over several runtimes (PyTorch, onnxruntime, OpenVINO).

``load_backend(weights)`` picks the runtime from the weights' type: a ``.pt`` checkpoint ->
:class:`TorchBackend`; ``.onnx`` -> ONNX Runtime; an OpenVINO IR folder or ``.xml`` -> OpenVINO.
Every backend maps a float ``(B, 3, H, W)`` batch in 0..1 (RGB) to raw predictions
``(B, A, 4 + nc)`` (xyxy input pixels + class scores), the contract of the PyTorch model in
eval mode, so ``val``, ``predict`` and ``bench`` work the same whatever file they are given.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from repyolo.errors import CheckpointError


class Backend:
    """Base class. Attributes: ``names`` (class names), ``stride`` (largest stride),
    ``img_size`` (fixed ``(H, W)`` input or ``None`` when any multiple of ``stride`` works),
    ``batch`` (fixed batch size or ``None``), ``kind`` (``'torch' | 'onnx' | 'openvino'``)."""

    kind = "base"
    names: list[str]
    stride: int = 32
    img_size: tuple[int, int] | None = None
    batch: int | None = None

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``(B, 3, H, W)`` float in 0..1 -> ``(B, A, 4 + nc)`` float32 torch tensor (CPU or model device)."""
        raise NotImplementedError

    @property
    def nc(self) -> int:
        return len(self.names)


class TorchBackend(Backend):
    """A PyTorch checkpoint, fused for inference unless ``fuse=False``; ``half`` on CUDA only."""

    kind = "torch"

    def __init__(self, weights: str | Path | torch.nn.Module, device: str | torch.device = "cpu",
                 fuse: bool = True, half: bool = False):
        from repyolo.engine.checkpoint import load_model

        self.device = torch.device(device)
        model = load_model(weights) if not isinstance(weights, torch.nn.Module) else weights
        model = model.eval()
        if fuse and hasattr(model, "fuse"):
            model.fuse()
        self.half = half and self.device.type == "cuda"
        self.model = model.to(self.device).half() if self.half else model.to(self.device)
        self.names = list(getattr(model, "names", []))
        self.stride = int(getattr(model, "max_stride", 32))

    @torch.inference_mode()
    def __call__(self, x):
        x = torch.as_tensor(x).to(self.device)
        x = x.half() if self.half else x.float()
        return self.model(x).float()


def load_backend(weights: str | Path | torch.nn.Module, device: str | torch.device = "cpu", **kwargs) -> Backend:
    """Open ``weights`` with the matching runtime (see module docstring)."""
    if isinstance(weights, torch.nn.Module):
        return TorchBackend(weights, device, **kwargs)
    path = Path(weights)
    if not path.exists():
        raise CheckpointError(f"{path}: weights not found")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from repyolo.export.onnx_backend import OnnxBackend  # written with the export stage

        return OnnxBackend(path, device, **kwargs)
    if path.is_dir() or suffix == ".xml":
        from repyolo.export.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(path, device, **kwargs)
    return TorchBackend(path, device, **kwargs)
