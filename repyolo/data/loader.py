"""PyTorch DataLoader for :class:`~repyolo.data.dataset.DetectionDataset`.

Determinism: the shuffle order of epoch ``e`` is a permutation drawn from ``seed + e``, and
every sample's augmentation from ``(seed, e, index)``; so the same seed and epoch give the
same batches whatever the worker count, and a resumed run continues exactly.
Call :func:`set_loader_epoch` before iterating each epoch. Workers are not persistent, so
they start every epoch from the data set's current state (epoch, mosaic switch).
"""
from __future__ import annotations

import os
import random

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler, SequentialSampler

from repyolo.data.augment import PAD_VALUE
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


class EpochRandomSampler(Sampler[int]):
    """Random permutation of ``range(n)`` seeded with ``seed + epoch`` (see :meth:`set_epoch`)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def collate_fn(batch):
    """Stack samples into a batch.

    Returns:
        imgs: uint8 ``(B, 3, H, W)`` RGB (images of different sizes are padded right/bottom
        with gray, which keeps every ``meta['pad']`` valid);
        targets: float32 ``(M, 6)`` ``[batch_idx, class, x1, y1, x2, y2]`` input pixels;
        paths: list of ``B`` str; metas: list of ``B`` dicts.
    """
    imgs, labels, paths, metas = zip(*batch)
    H = max(im.shape[1] for im in imgs)
    W = max(im.shape[2] for im in imgs)
    if all(im.shape[1] == H and im.shape[2] == W for im in imgs):
        out = torch.stack(imgs, 0)
    else:
        out = torch.full((len(imgs), 3, H, W), PAD_VALUE, dtype=torch.uint8)
        for k, im in enumerate(imgs):
            out[k, :, : im.shape[1], : im.shape[2]] = im
    targets = [torch.cat([torch.full((len(lab), 1), float(k)), lab], 1) for k, lab in enumerate(labels)]
    targets = torch.cat(targets, 0) if targets else torch.zeros((0, 6))
    return out, targets.float(), list(paths), list(metas)


def _worker_init(worker_id: int) -> None:
    """Seed Python/numpy/torch of a worker from ``(seed, epoch, worker id)``; one OpenCV thread."""
    info = torch.utils.data.get_worker_info()
    ds = info.dataset
    seed = int(getattr(ds, "seed", 0))
    epoch = int(getattr(ds, "epoch", 0))
    ss = np.random.SeedSequence([seed, epoch, worker_id])
    s32 = int(ss.generate_state(1)[0])
    random.seed(s32)
    np.random.seed(s32)
    torch.manual_seed(s32)
    cv2.setNumThreads(0)


def build_dataloader(dataset, batch_size: int, workers: int = 2, shuffle: bool = True, seed: int = 0,
                     rank: int = -1, world_size: int = 1, drop_last: bool = False,
                     pin_memory: bool = False) -> DataLoader:
    """A DataLoader with :func:`collate_fn`, seeded shuffling and optional DistributedSampler.

    ``pin_memory``: page-locked batches (for asynchronous copies to a CUDA device).

    ``rect`` data sets are never shuffled (their batches are built in order). With
    ``world_size > 1`` each of the ``world_size`` ranks gets a disjoint shard
    (``DistributedSampler``, seeded the same way).
    """
    if getattr(dataset, "rect", False) and shuffle:
        LOGGER.warning("rect=True is incompatible with shuffle; not shuffling")
        shuffle = False
    if hasattr(dataset, "seed"):
        dataset.seed = int(seed)
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=max(rank, 0), shuffle=shuffle,
                                     seed=seed, drop_last=drop_last)
    elif shuffle:
        sampler = EpochRandomSampler(len(dataset), seed)
    else:
        sampler = SequentialSampler(dataset)
    workers = max(0, min(int(workers), os.cpu_count() or 1, max(batch_size, 1)))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate_fn, worker_init_fn=_worker_init if workers else None,
                      drop_last=drop_last, pin_memory=bool(pin_memory), persistent_workers=False)


def set_loader_epoch(loader: DataLoader, epoch: int, strong_aug: bool = True) -> None:
    """Make the next iteration of ``loader`` epoch ``epoch``: shuffle order and augmentation
    depend on ``(seed, epoch)`` only; ``strong_aug=False`` switches mosaic and mixup off."""
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    ds = loader.dataset
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch, strong_aug)
