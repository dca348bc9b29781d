"""Data set checks and previews (``repyolo data check|show``).

``data`` is a data YAML, a folder holding ``data.yaml``, or a single source (an image folder,
list file or COCO json: then every split is that source and names come from a ``classes.txt``
nearby).
"""
from __future__ import annotations

import logging
from pathlib import Path

from repyolo.utils.logging import get_logger
from repyolo.utils.paths import check_output_path

SPLITS = ("train", "val", "test")


def open_data(data: str | Path):
    """``(config or None, {split: sources}, names)`` for a data YAML or a bare source."""
    from repyolo.data.config import load_data_config

    p = Path(data)
    if p.suffix.lower() in (".yaml", ".yml") or (p.is_dir() and not _has_images(p)):
        cfg = load_data_config(p)
        return cfg, {s: getattr(cfg, s) for s in SPLITS if getattr(cfg, s)}, cfg.names
    return None, {"train": [p], "val": [p], "test": [p]}, _names_near(p)


def _names_near(p: Path):
    """Class names from a ``classes.txt`` in the source's folder or up to 3 folders above."""
    folder = p if p.is_dir() else p.parent
    for d in [folder, *list(folder.parents)[:3]]:
        f = d / "classes.txt"
        if f.is_file():
            return [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return None


def _has_images(p: Path) -> bool:
    from repyolo.data.io import is_image_file

    return any(is_image_file(f) for f in p.iterdir())


def _dataset(cfg, sources, split, names, **kw):
    from repyolo.data.dataset import DetectionDataset

    if cfg is not None:
        return cfg.dataset(split, **kw)
    return DetectionDataset(sources[split], names=names, prefix=f"{sources[split][0]}: ", **kw)


def check_data(data: str | Path, split: str = "all", workers: int | None = None) -> dict:
    """Check every image and label of ``split`` (or all splits; a split with the same sources as an
    earlier one is checked once). Returns ``{split: CheckReport}``; a bare source has one split."""
    cfg, sources, names = open_data(data)
    splits = list(sources) if split == "all" else [split]
    if cfg is None:
        splits = splits[:1]
    seen, reports = set(), {}
    quiet = get_logger("repyolo.data.dataset")
    old = quiet.level
    quiet.setLevel(logging.ERROR)  # the caller shows the reports
    try:
        for s in splits:
            if s not in sources:
                continue
            key = tuple(map(str, sources[s]))
            if key in seen:
                reports[s] = None  # same sources as an earlier split
                continue
            seen.add(key)
            reports[s] = _dataset(cfg, sources, s, names, workers=workers).report
    finally:
        quiet.setLevel(old)
    return reports


def show_data(data: str | Path, out: str | Path = "data_show.jpg", split: str = "train", n: int = 16,
              img: int = 640, augment: bool = True, seed: int = 0, tile: int = 400) -> Path:
    """Save a grid of ``n`` (augmented) samples of ``split`` with their boxes to ``out``."""
    import numpy as np

    from repyolo.data.io import write_image
    from repyolo.data.visualize import draw_boxes, tile_images

    check_output_path(out)
    cfg, sources, names = open_data(data)
    ds = _dataset(cfg, sources, split, names, img_size=img, augment=augment)
    ds.seed = seed
    rng = np.random.default_rng(seed)
    count = max(1, min(n, len(ds)))
    tiles = []
    for i in rng.choice(len(ds), size=count, replace=False):
        sample, labels, _, _ = ds[int(i)]
        tiles.append(draw_boxes(sample.permute(1, 2, 0).numpy(), labels.numpy(), ds.names))
    write_image(out, tile_images(tiles, tile=tile))
    return Path(out)
