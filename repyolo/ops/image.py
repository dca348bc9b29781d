"""The model input convention in one place: uint8 RGB pixels -> float 0..1."""
from __future__ import annotations

import numpy as np
import torch

PIXEL_SCALE = 255.0


def to_model_input(images: torch.Tensor | np.ndarray, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor | np.ndarray:
    """uint8 ``(B, 3, H, W)`` RGB images -> ``dtype`` in 0..1 (what every model and exported file takes).

    A tensor is moved to ``device`` first (``non_blocking``; the conversion then runs there); a
    numpy array stays a float32 numpy array (for ONNX Runtime and the other file runtimes).
    """
    if isinstance(images, np.ndarray):
        return np.ascontiguousarray(images, dtype=np.float32) / np.float32(PIXEL_SCALE)
    if device is not None:
        images = images.to(device, non_blocking=True)
    return images.to(dtype).div_(PIXEL_SCALE)
