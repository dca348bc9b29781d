"""Parameter and FLOP counting (GFLOPs = 2 x multiply-adds, as YOLOv6 reports them).

FLOPs are counted on PyTorch's ``meta`` device: the forward pass runs on shape-only tensors, so
counting yolov6l6 at 1280 px costs a fraction of a second and no memory, whatever the machine's
load (a real forward pass of a large model took minutes on a busy 2-core machine).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN statistics and the DFL projection excluded)."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.endswith("proj_conv.weight"))


@torch.no_grad()
def count_gflops(model: nn.Module, img_size: int | tuple[int, int] = 640, batch: int = 1) -> float:
    """GFLOPs of one eval-mode forward pass on a ``(batch, 3, H, W)`` input (2 FLOPs per multiply-add).

    The pass runs on meta tensors (shapes only: nothing is computed, the model is not changed);
    a model that cannot run on the meta device is counted with a real forward pass instead."""
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    was_training = model.training
    model.eval()
    try:
        try:
            return _count(model, torch.zeros(batch, 3, h, w, device="meta"), meta=True)
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
            LOGGER.debug("FLOPs on the meta device failed (%s): counting with a real forward pass", exc)
        p = next(model.parameters())
        return _count(model, torch.zeros(batch, 3, h, w, device=p.device, dtype=p.dtype), meta=False)
    finally:
        model.train(was_training)


def _count(model: nn.Module, x: torch.Tensor, meta: bool) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        if meta:
            tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
            functional_call(model, {k: torch.empty_like(v, device="meta") for k, v in tensors.items()}, (x,))
        else:
            model(x)
    return counter.get_total_flops() / 1e9
