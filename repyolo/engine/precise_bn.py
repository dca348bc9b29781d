"""Precise BatchNorm: recompute BN running statistics of fixed weights over real batches.

BN running statistics are an exponential average taken while the weights move. In a
long run (the published recipe: hundreds of thousands of steps, a tiny final LR) they
settle; in a short run they lag far behind the weights (measured: running variances 10-150x
the true ones in the head after an 80-step overfit run, and mAP@0.5 0.00 -> 0.58 once
recomputed). Recomputing them with the final weights fixes eval mode without touching a
single weight (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021).
"""
from __future__ import annotations

import itertools

import torch
import torch.nn as nn

from repyolo.ops.image import to_model_input
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, loader, max_batches: int, device, autocast_dtype: torch.dtype | None = None,
                       memory_format: torch.memory_format = torch.contiguous_format, progress: bool = False) -> int:
    """Replace every BN layer's running mean/var of ``model`` by their exact average over up to
    ``max_batches`` batches of ``loader`` (any iterable of batches whose first item is the uint8
    ``(B, 3, H, W)`` images, e.g. a list of cached batches).

    ``autocast_dtype``: run the convolutions in this precision (the one training used), BN
    statistics are accumulated in float32 either way; ``memory_format``: of the input batch;
    ``progress``: a progress bar. Weights are unchanged; the model's train/eval mode and BN
    momenta are restored. Returns the number of batches used.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or max_batches <= 0:
        return 0
    was_training = model.training
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average = exact mean over the batches
    model.train()
    n = 0
    batches = itertools.islice(loader, max_batches)
    if progress:
        from tqdm import tqdm

        total = min(max_batches, len(loader)) if hasattr(loader, "__len__") else max_batches
        batches = tqdm(batches, total=total, desc="precise BN", mininterval=2.0, leave=False,
                       bar_format="{l_bar}{bar:20}{r_bar}")
    device = torch.device(device)
    for batch in batches:
        x = to_model_input(batch[0].contiguous(memory_format=memory_format), device)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            model(x)
        n += 1
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    model.train(was_training)
    return n
