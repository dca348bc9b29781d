"""Tiny models and helpers shared by the self-distillation tests."""
from __future__ import annotations

import torch
import torch.nn as nn
from helpers import randomize_bn

from repyolo.nn.model import load_model_config


def tiny_cfg(width: float = 0.125, use_dfl: bool = False, aux_dist: bool = False, base: str = "yolov6n") -> dict:
    """``base`` at width ``width`` and depth 1/6: same topology, a fraction of the cost."""
    cfg = load_model_config(base)
    cfg.update(name=f"{base}-tiny", width_multiple=width, depth_multiple=0.17)
    cfg["head"] = {**cfg["head"], "use_dfl": use_dfl, "aux_dist": aux_dist}
    return cfg


def randomized(model: nn.Module, seed: int) -> nn.Module:
    """The head's prediction convs start at zero weights (constant outputs): give them random ones,
    and random BN statistics, so two models really disagree."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "preds" in name and p.dim() == 4:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return randomize_bn(model, seed)


def bn_frozen_train(model: nn.Module) -> nn.Module:
    """Train mode (dict outputs) with BN using running statistics, like the frozen teacher."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    return model
