"""TorchScript export: ``torch.jit.trace`` of the fused model, metadata in ``_extra_files``.

The trace records the anchor-point grid from the feature-map sizes (the head builds it from
``shape`` while tracing), so the file runs at any batch size and any input size that is a
multiple of the stride. The metadata travels inside the archive as ``metadata.json``.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from repyolo.errors import RepyoloError
from repyolo.runtime.metadata import TORCHSCRIPT_EXTRA_FILE as EXTRA_FILE
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


def export_torchscript(model: torch.nn.Module, path: str | Path, metadata: dict,
                       img_size: tuple[int, int] = (640, 640), batch: int = 1, half: bool = False) -> Path:
    """Trace ``model`` (fused, eval) on a ``(batch, 3, H, W)`` example and save it to ``path``."""
    device = "cpu"
    if half:
        if not torch.cuda.is_available():
            raise RepyoloError("TorchScript --half needs a CUDA device (fp16 inference is a GPU feature); "
                               "export without --half for CPU")
        device = "cuda"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    model = model.to(device, dtype)
    example = torch.zeros(batch, 3, *img_size, device=device, dtype=dtype)
    meta = {**metadata, "dynamic": True, "batch": None}  # traces are shape-generic (see module docstring)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript deprecation notices
        traced = torch.jit.trace(model, example, strict=False, check_trace=False)  # parity is tested
        torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: json.dumps(meta)})
    LOGGER.info("TorchScript: %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path
