"""One inference interface over several runtimes (PyTorch, ONNX Runtime, OpenVINO, TorchScript, NCNN).

:func:`load_backend` picks the runtime from the weights' type: a ``.pt`` checkpoint (or an
``nn.Module``) -> :class:`~repyolo.runtime.pytorch.TorchBackend`; ``.onnx`` -> ONNX Runtime; an
NCNN ``.param`` or a folder holding one -> NCNN; an OpenVINO IR folder or ``.xml`` -> OpenVINO;
``.torchscript`` -> TorchScript. Every backend maps a
float ``(B, 3, H, W)`` RGB batch in 0..1 to ``(B, A, 4 + nc)`` raw predictions (see
:class:`~repyolo.runtime.base.Backend`). Any failure to open a file is one
:class:`~repyolo.errors.RepyoloError` line naming it, never a traceback from the runtime.
"""
from __future__ import annotations

from pathlib import Path

import torch

from repyolo.errors import CheckpointError, RepyoloError, one_line
from repyolo.runtime.base import Backend

__all__ = ["Backend", "load_backend"]


def _open(weights: str | Path | torch.nn.Module, device, **kwargs) -> Backend:
    if isinstance(weights, torch.nn.Module):
        from repyolo.runtime.pytorch import TorchBackend

        return TorchBackend(weights, device, **kwargs)
    path = Path(weights)
    if not path.exists():
        raise CheckpointError(f"{path}: weights not found")
    suffix = path.suffix.lower()
    if suffix == ".param" or (path.is_dir() and any(path.glob("*.param"))):
        from repyolo.runtime.ncnn import NcnnBackend

        return NcnnBackend(path, device, **kwargs)
    if suffix == ".onnx":
        from repyolo.runtime.onnx import OnnxBackend

        return OnnxBackend(path, device, **kwargs)
    if path.is_dir() or suffix == ".xml":
        from repyolo.runtime.openvino import OpenVinoBackend

        return OpenVinoBackend(path, device, **kwargs)
    if suffix == ".torchscript":
        from repyolo.runtime.torchscript import TorchScriptBackend

        return TorchScriptBackend(path, device, **kwargs)
    from repyolo.runtime.pytorch import TorchBackend

    return TorchBackend(path, device, **kwargs)


def load_backend(weights: str | Path | torch.nn.Module | Backend, device: str | torch.device = "cpu",
                 **kwargs) -> Backend:
    """Open ``weights`` with the matching runtime (a :class:`Backend` is returned as it is).

    ``kwargs`` go to the backend (``fuse``, ``half`` for PyTorch; ``threads`` for all). Raises a
    one-line :class:`~repyolo.errors.RepyoloError` naming the file for anything that cannot be
    opened: missing, corrupt, foreign, or needing a runtime package that is not installed.
    """
    if isinstance(weights, Backend):
        return weights
    try:
        return _open(weights, torch.device(device) if not isinstance(device, torch.device) else device, **kwargs)
    except (RepyoloError, MemoryError, TypeError):
        raise
    except ModuleNotFoundError as exc:
        raise RepyoloError(f"{weights}: the runtime package {exc.name!r} is not installed") from None
    except Exception as exc:  # torch.load / onnxruntime / openvino on a file that is not a model
        raise CheckpointError(f"{weights}: not a loadable model or checkpoint ({one_line(exc)})") from None
