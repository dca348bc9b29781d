"""Helpers shared by tests of several areas (import as ``from helpers import ...``: the tests
folder is on ``sys.path`` because it holds the root ``conftest.py``)."""
from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def randomize_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm under ``module`` (or ``module`` itself) non-trivial statistics and
    affine parameters, so that re-parameterization and fusion are tested on more than identities.
    Returns ``module``."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            if m.affine:
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
    return module


def save_model(model: nn.Module, path) -> str:
    """Write ``model`` as a repyolo training checkpoint at ``path``; returns the path as a string."""
    from repyolo.io.checkpoint import save_checkpoint, training_checkpoint

    save_checkpoint(training_checkpoint(model), path)
    return str(path)
