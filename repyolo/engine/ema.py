"""Exponential moving average of model weights (YOLOv6: decay 0.9999 ramped over 2000 updates)."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel wrappers."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


class ModelEMA:
    """Keeps ``ema = d * ema + (1 - d) * weights`` after every optimizer step, with
    ``d = decay * (1 - exp(-updates / tau))`` so early updates follow the model closely.
    BN running statistics (float buffers) are averaged too; integer buffers are copied.

    The update is two ``torch._foreach_*`` calls over all floating tensors (the same element-wise
    ``mul_`` then ``add_`` as a per-tensor loop, bit for bit, without ~700 Python-level calls)."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.ema = copy.deepcopy(unwrap(model)).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        state = unwrap(model).state_dict()
        ema_f, src_f = [], []
        for name, value in self.ema.state_dict().items():
            if value.dtype.is_floating_point:
                ema_f.append(value)
                src_f.append(state[name].detach())
            else:
                value.copy_(state[name])
        if ema_f:
            torch._foreach_mul_(ema_f, d)
            torch._foreach_add_(ema_f, src_f, alpha=1 - d)

    def state_dict(self) -> dict:
        return self.ema.state_dict()
