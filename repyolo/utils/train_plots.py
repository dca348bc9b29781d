"""Training plots: loss and mAP curves from results.csv, label distribution of a data set."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_results(csv_path: str | Path, out: str | Path) -> Path:
    """One panel per column of ``results.csv`` (losses, LR, mAP) against the epoch."""
    plt = _pyplot()
    rows = list(csv.DictReader(Path(csv_path).open()))
    keys = [k for k in rows[0] if k not in ("epoch", "time_s")]
    epochs = [int(r["epoch"]) for r in rows]
    fig, axes = plt.subplots(2, (len(keys) + 1) // 2, figsize=(3.2 * ((len(keys) + 1) // 2), 6), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(e, float(r[key])) for e, r in zip(epochs, rows) if r.get(key) not in (None, "")]
        if pts:
            ax.plot(*zip(*pts), marker=".")
        ax.set_title(key)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_labels(dataset, out: str | Path) -> Path:
    """Instances per class and the distribution of box sizes (relative to the image) of ``dataset``."""
    plt = _pyplot()
    labels = [lb for lb in dataset.labels if len(lb)]
    nc = len(dataset.names)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    if labels:
        lab = np.concatenate(labels)
        shapes = np.concatenate([np.repeat(np.asarray(s, dtype=np.float32)[None], len(lb), 0)
                                 for s, lb in zip(dataset.shapes, dataset.labels) if len(lb)])
        counts = np.bincount(lab[:, 0].astype(int), minlength=nc)
        a1.bar(range(nc), counts)
        if nc <= 30:
            a1.set_xticks(range(nc), dataset.names, rotation=90, fontsize=7)
        w = (lab[:, 3] - lab[:, 1]) / shapes[:, 1]
        h = (lab[:, 4] - lab[:, 2]) / shapes[:, 0]
        a2.hist2d(w, h, bins=30)
    a1.set_title("instances per class")
    a2.set_title("box width / height (fraction of image)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
