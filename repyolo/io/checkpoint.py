"""Checkpoints: plain dicts of tensors and Python literals, written atomically, read with
``torch.load(weights_only=True)`` (:mod:`repyolo.io.torchfile`) so that loading never runs code
from the file.

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
import tempfile
from pathlib import Path

import torch

from repyolo.errors import CheckpointError
from repyolo.io.ncnn_import import convert_ncnn, looks_ncnn
from repyolo.io.official import convert_official, looks_official
from repyolo.io.torchfile import load_torch_file
from repyolo.nn.model import YOLOv6
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
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is as readable as any output
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete the ``.NAME.*.tmp`` files that :func:`save_checkpoint` leaves when a process is killed
    mid-write (never a finished checkpoint). Returns how many were removed."""
    n = 0
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            n += 1
    return n


def read_checkpoint(path: str | Path) -> dict:
    """Read a repyolo checkpoint safely; an official YOLOv6 checkpoint, or a released YOLOv6-Lite NCNN
    ``.param`` (with its ``.bin``), is converted on the fly.

    The file is read by :func:`repyolo.io.torchfile.load_torch_file` (torch's weights-only
    unpickler; nothing from the file runs). Raises :class:`CheckpointError` with a one-line reason
    naming the file: missing, a folder, empty, what else it is (an image, an ONNX model ...),
    corrupt or truncated, referencing code (refused by name), or not a repyolo checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: weights file not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty")
    if looks_ncnn(path):
        LOGGER.info("%s: NCNN model, converting (YOLOv6-Lite graphs only)", path)
        return {"format": FORMAT, "version": VERSION, **convert_ncnn(path)}
    if looks_official(path):
        converted = convert_official(path)  # refuses unsafe files before anything is logged as "official"
        LOGGER.info("%s: official YOLOv6 checkpoint, converted (no code from the file was run)", path)
        return {"format": FORMAT, "version": VERSION, **converted}
    ckpt = load_torch_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: a torch file, but not a repyolo checkpoint (no 'format: repyolo' entry)")
    if "model_cfg" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path}: repyolo checkpoint without a model config or weights")
    return ckpt


def training_img_size(ckpt: dict) -> int | None:
    """The input size a checkpoint's model was trained at (``args.img``), else its model config's
    ``img_size``; ``None`` when neither is recorded."""
    img = (ckpt.get("args") or {}).get("img") or (ckpt.get("model_cfg") or {}).get("img_size")
    return int(img) if img else None


def model_from_checkpoint(ckpt: dict, use_ema: bool = True):
    """Build the model a checkpoint dict describes and load its (EMA) weights. Returns it in eval mode."""
    cfg = ckpt["model_cfg"]
    model = YOLOv6(cfg, cfg.get("nc", 80))
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
