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
    BN running statistics (float buffers) are averaged too; integer buffers are copied."""

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
        for name, value in self.ema.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(state[name].detach(), alpha=1 - d)
            else:
                value.copy_(state[name])

    def state_dict(self) -> dict:
        return self.ema.state_dict()
