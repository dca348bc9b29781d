"""Training recipes: the published YOLOv6 schedule, and one that scales with short runs.

The published recipe (COCO, 118k images, 300-400 epochs) warms up for
``max(3 epochs, 1000 iterations)``, accumulates gradients to a nominal batch of 64 and
keeps an EMA with decay 0.9999 ramped over 2000 updates. On a data set of a few hundred
images those constants outlast the run: the warm-up can cover every iteration, the EMA
barely moves from the random init, and accumulation leaves a few dozen optimizer steps.
The ``small`` recipe scales all three with the run's own length; ``auto`` picks it when the
published recipe would give fewer than ``SMALL_RUN_STEPS`` optimizer steps.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from repyolo.cfg.settings import Hyp

SMALL_RUN_STEPS = 20_000


@dataclass
class Recipe:
    """The resolved schedule constants of one training run."""

    name: str
    accumulate: int          # batches per optimizer step
    warmup_iters: int        # batches of warm-up
    lr0: float
    weight_decay: float
    ema_decay: float
    ema_tau: float
    reason: str
    close_mosaic: int = 15   # epochs at the end without mosaic / mixup (the one place this is decided)
    bn_recal_images: int = 0  # recompute BN statistics over this many training images before evaluating

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_recipe(hyp: Hyp, batch_size: int, batches_per_epoch: int, epochs: int, world_size: int = 1) -> Recipe:
    """Turn ``hyp`` (``recipe: auto | yolov6 | small``) and the run's size into concrete constants.

    ``batch_size`` is per process; the effective batch is ``batch_size * world_size``.
    """
    total_batch = batch_size * world_size
    nb, choice = max(batches_per_epoch, 1), hyp.recipe
    accumulate = max(round(hyp.nominal_batch / total_batch), 1)
    steps_published = epochs * nb // accumulate
    if choice == "auto":
        choice = "small" if steps_published < SMALL_RUN_STEPS else "yolov6"
        reason = (f"auto: the published recipe would make {steps_published} optimizer steps "
                  f"({'<' if choice == 'small' else '>='} {SMALL_RUN_STEPS})")
    else:
        reason = "chosen by the user"
    if choice == "yolov6":
        warmup = max(round(hyp.warmup_epochs * nb), hyp.warmup_min_iters)
        wd = hyp.weight_decay * total_batch * accumulate / hyp.nominal_batch
        return Recipe("yolov6", accumulate, warmup, hyp.lr0, wd, hyp.ema_decay, hyp.ema_tau, reason,
                      hyp.close_mosaic, _bn_recal(hyp, 0))
    total_iters = epochs * nb
    # warm-up: the published 3 epochs, but never more than 10% of the run
    warmup = int(min(max(hyp.warmup_epochs * nb, 1), max(total_iters // 10, 1)))
    # EMA: average over roughly the last 5% of the run instead of the last 10k updates
    window = max(total_iters / 20, 10)
    ema_decay = min(hyp.ema_decay, 1 - 1 / window)
    ema_tau = min(hyp.ema_tau, max(total_iters / 20, 1))
    # no accumulation: every batch is an optimizer step; LR scaled from batch 32
    lr = hyp.lr0 * min(total_batch / 32, 1.0) ** 0.5
    wd = hyp.weight_decay * total_batch / hyp.nominal_batch
    # strong augmentation off for the published 15 of 300-400 epochs: at most ~1/5 of a short run
    close = min(hyp.close_mosaic, max(epochs // 5, 1))
    return Recipe("small", 1, warmup, lr, wd, ema_decay, ema_tau, reason, close, _bn_recal(hyp, 256))


def _bn_recal(hyp: Hyp, default: int) -> int:
    """Images for precise-BN before evaluation: ``hyp.bn_recal_images``, or the recipe's default
    (off for the published recipe, whose long schedule lets BN statistics settle by themselves)."""
    return default if hyp.bn_recal_images is None else int(hyp.bn_recal_images)


def eval_epochs(epochs: int, interval: int | None = None) -> list[int]:
    """The (1-based) epochs after which the trainer evaluates; the last epoch is always one.

    ``interval`` N: every N-th epoch (the behaviour before the automatic schedule; N = 1 is every
    epoch). ``None``: automatic, as often as choosing ``best.pt`` needs. Over the first 90% of a
    run mAP mostly rises and only shows progress, so it is measured every ~10% of the run; over
    the last 10% (where the LR has decayed, mosaic is off and the best epoch usually is) it is
    measured after every epoch. 80 epochs -> 8, 16, ..., 72 and 73..80 (17 evaluations, not 80).
    """
    epochs = max(int(epochs), 1)
    if interval is not None and int(interval) > 0:
        n = int(interval)
        return sorted({e for e in range(n, epochs + 1, n)} | {epochs})
    tail = max(1, math.ceil(epochs / 10))
    step = max(1, round(epochs / 10))
    return sorted({e for e in range(step, epochs + 1, step)} | set(range(epochs - tail + 1, epochs + 1)))


def describe_eval_epochs(epochs: list[int]) -> str:
    """``[8, 16, 24, 73, 74, 75]`` -> ``'8, 16, 24, 73-75'`` (for the log)."""
    parts, run = [], []
    for e in sorted(epochs):
        if run and e == run[-1] + 1:
            run.append(e)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 2 else ", ".join(map(str, run)))
        run = [e]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 2 else ", ".join(map(str, run)))
    return ", ".join(parts)
