"""Device selection: one parser for every ``--device`` value the CLI and the API accept."""
from __future__ import annotations

import torch

from repyolo.errors import RepyoloError


def parse_device_ids(device: str | int | None) -> list[int] | None:
    """``'cpu'`` / ``''`` / ``None`` -> ``None``; ``'0'``, ``0``, ``'0,1'``, ``'cuda:1'`` -> CUDA ids."""
    text = "cpu" if device is None or device == "" else str(device).strip().lower()
    if text == "cpu":
        return None
    if text.startswith("cuda"):
        rest = text[4:].lstrip(":")
        return [int(rest)] if rest.isdigit() else [0]
    ids = [d.strip() for d in text.split(",") if d.strip()]
    if not ids or not all(d.isdigit() for d in ids):
        raise RepyoloError(f"unknown device {device!r} (use cpu, 0, 0,1 or cuda:N)")
    return [int(d) for d in ids]


def select_device(device: str | int | torch.device | None = "cpu", local_rank: int = 0) -> torch.device:
    """A torch device from ``'cpu'``, ``'0'`` / ``0``, ``'0,1'``, ``'cuda:N'`` or a ``torch.device``.

    With several ids (DDP under torchrun), process ``local_rank`` takes ``ids[local_rank % len(ids)]``.
    Raises :class:`RepyoloError` when CUDA is asked for but not available.
    """
    if isinstance(device, torch.device):
        return device
    ids = parse_device_ids(device)
    if ids is None:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RepyoloError(f"device {device!r} requested but torch sees no CUDA GPU (use --device cpu)")
    return torch.device("cuda", ids[local_rank % len(ids)])
