"""Parameter and FLOP counting (GFLOPs = 2 x multiply-adds, as YOLOv6 reports them)."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN statistics and the DFL projection excluded)."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.endswith("proj_conv.weight"))


@torch.no_grad()
def count_gflops(model: nn.Module, img_size: int | tuple[int, int] = 640, batch: int = 1) -> float:
    """GFLOPs of one eval-mode forward pass on a ``(batch, 3, H, W)`` input (2 FLOPs per multiply-add)."""
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    x = torch.zeros(batch, 3, h, w, device=p.device, dtype=p.dtype)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9
