"""Fixtures of the self-distillation tests."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from distill_helpers import randomized, tiny_cfg

from repyolo.nn.model import build_model


@pytest.fixture
def student() -> nn.Module:
    """A v3-N-style student (no DFL) with the DLD branch, as the trainer builds it for --distill."""
    torch.manual_seed(0)
    return randomized(build_model(tiny_cfg(aux_dist=True), num_classes=3), seed=1)


@pytest.fixture
def imgs() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
