"""Checkpoints: plain dicts of tensors and Python literals, written atomically, read with
``torch.load(weights_only=True)`` so that loading never runs code from the file.

Layout (``format: "repyolo"``)::

    {"format": "repyolo", "version": 1,
     "model_cfg": {...},            # the model YAML as a dict, with "nc"
     "names": ["person", ...],
     "fused": False,                # True for deploy checkpoints (re-parameterized)
     "model": state_dict,           # raw training weights (float32)
     "ema": state_dict | None,      # EMA weights: what inference uses when present
     "ema_updates": int,
     "optimizer": dict | None, "scheduler": dict | None, "scaler": dict | None,
     "epoch": int,                  # last completed epoch (-1 = none)
     "step": int,                   # optimizer steps so far
     "args": {...}, "metrics": {...}, "best_fitness": float,
     "rng": {...}}                  # torch / numpy / python RNG states for exact resume
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from repyolo.errors import CheckpointError
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)
FORMAT = "repyolo"
VERSION = 1


def save_checkpoint(ckpt: dict, path: str | Path) -> Path:
    """Write ``ckpt`` to ``path`` atomically: a temp file in the same folder, fsync, then rename.

    A process killed at any moment leaves either the previous file or the new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"format": FORMAT, "version": VERSION, **ckpt}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a repyolo checkpoint safely (``weights_only=True``); official YOLOv6 files are converted.

    Raises :class:`CheckpointError` with a one-line reason for a missing, corrupt or foreign file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: weights file not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, IndexError, KeyError) as exc:
        official = _try_official(path, exc)
        if official is not None:
            return official
        raise CheckpointError(f"{path}: not a loadable checkpoint ({_short(exc)})") from None
    except (EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({_short(exc)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a repyolo checkpoint (no 'format: repyolo' entry)")
    if "model_cfg" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path}: repyolo checkpoint without a model config or weights")
    return ckpt


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _try_official(path: Path, exc: Exception) -> dict | None:
    """If ``path`` is an official YOLOv6 checkpoint, return it converted to the repyolo layout."""
    try:
        from repyolo.io import official
    except ImportError:
        return None
    if not official.looks_official(path):
        return None
    LOGGER.info("%s: official YOLOv6 checkpoint, converting (no code from the file is run)", path)
    return official.convert_official(path)


def model_from_checkpoint(ckpt: dict, use_ema: bool = True):
    """Build the model a checkpoint dict describes and load its (EMA) weights. Returns it in eval mode."""
    from repyolo.nn.model import YOLOv6

    cfg = ckpt["model_cfg"]
    model = YOLOv6(cfg, cfg.get("nc", 80))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps, m.momentum = 1e-3, 0.03
    if ckpt.get("fused"):
        model.fuse()
    state = ckpt.get("ema") if use_ema and ckpt.get("ema") else ckpt["model"]
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"checkpoint weights do not fit its model config: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    names = ckpt.get("names") or [str(i) for i in range(model.nc)]
    model.names = list(names)
    return model.eval()


def load_model(weights: str | Path, device="cpu"):
    """Load the model of a checkpoint file on ``device``, in eval mode (EMA weights when present)."""
    return model_from_checkpoint(read_checkpoint(weights)).to(device)


def training_checkpoint(model, names=None, **extra) -> dict:
    """A checkpoint dict for a model in training form (not fused): loadable, fine-tunable, exportable."""
    state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
    return {"model_cfg": dict(model.cfg), "names": list(names or model.names), "fused": False, "model": state,
            "ema": None, "epoch": 0, **extra}


def deploy_checkpoint(model, names=None, **extra) -> dict:
    """A checkpoint dict for a fused (re-parameterized) model: loads straight into the deploy form."""
    model.fuse()
    state = {k: v.detach().float().cpu() if v.is_floating_point() else v.cpu()
             for k, v in model.state_dict().items()}
    return {"model_cfg": model.cfg, "names": list(names or model.names), "fused": True, "model": state,
            "ema": None, "epoch": -1, **extra}
