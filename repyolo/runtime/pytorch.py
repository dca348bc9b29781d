"""PyTorch backend: a repyolo (or official YOLOv6) checkpoint, or an ``nn.Module``, run eagerly."""
from __future__ import annotations

from pathlib import Path

import torch

from repyolo.io.checkpoint import load_model
from repyolo.runtime.base import Backend


class TorchBackend(Backend):
    """A PyTorch checkpoint, fused for inference unless ``fuse=False``; ``half`` on CUDA only;
    ``threads`` sets ``torch.set_num_threads`` (process-wide)."""

    kind = "torch"

    def __init__(self, weights: str | Path | torch.nn.Module, device: str | torch.device = "cpu",
                 fuse: bool = True, half: bool = False, threads: int | None = None):
        self.device = torch.device(device)
        self.source = str(weights) if not isinstance(weights, torch.nn.Module) else type(weights).__name__
        model = load_model(weights) if not isinstance(weights, torch.nn.Module) else weights
        model = model.eval()
        if fuse and hasattr(model, "fuse"):
            model.fuse()
        if threads:
            torch.set_num_threads(int(threads))
        self.half = half and self.device.type == "cuda"
        self.model = model.to(self.device).half() if self.half else model.to(self.device)
        self.names = list(getattr(model, "names", []))
        self.stride = int(getattr(model, "max_stride", 32))

    @torch.inference_mode()
    def __call__(self, x):
        x = torch.as_tensor(x).to(self.device)
        x = x.half() if self.half else x.float()
        return self.model(x).float()
