"""``repyolo data check|show``: check a data set, or save a picture of augmented samples.

    repyolo data check DATA [--split train|val|test|all] [--json REPORT.json]
    repyolo data show DATA [--split train] [--out FILE] [--n 16] [--img 640] [--no-augment]

``DATA`` is a data YAML, a folder holding ``data.yaml``, or a single source (image folder,
list file or COCO json).
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_action", metavar="ACTION")
    c = sub.add_parser("check", help="check images and labels; print counts, issues and a class histogram")
    c.add_argument("data", help="data YAML, folder with data.yaml, image folder, list file or COCO json")
    c.add_argument("--split", default="all", choices=["train", "val", "test", "all"])
    c.add_argument("--workers", type=int, default=None, help="checking threads (default: CPU count)")
    c.add_argument("--max-issues", type=int, default=50, help="issues listed per split (default 50)")
    c.add_argument("--json", default=None, help="also write the reports as JSON to this file")
    s = sub.add_parser("show", help="save a grid of (augmented) samples with their boxes")
    s.add_argument("data", help="data YAML, folder with data.yaml, image folder, list file or COCO json")
    s.add_argument("--split", default="train", choices=["train", "val", "test"])
    s.add_argument("--out", default="data_show.jpg", help="output image (default data_show.jpg)")
    s.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    s.add_argument("--img", type=int, default=640, help="network input size (default 640)")
    s.add_argument("--no-augment", action="store_true", help="letterboxed samples without augmentation")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--tile", type=int, default=400, help="pixels per sample in the grid (default 400)")
    parser.set_defaults(_parser=parser)


def _open(data: str):
    """``(config or None, {split: sources}, names)`` for a data YAML or a bare source."""
    from pathlib import Path

    from repyolo.data.config import load_data_config

    p = Path(data)
    if p.suffix.lower() in (".yaml", ".yml") or (p.is_dir() and not _has_images(p)):
        cfg = load_data_config(p)
        return cfg, {s: getattr(cfg, s) for s in ("train", "val", "test") if getattr(cfg, s)}, cfg.names
    return None, {"train": [p], "val": [p], "test": [p]}, _names_near(p)


def _names_near(p):
    """Class names from a ``classes.txt`` in the source's folder or up to 3 folders above."""
    for folder in [p if p.is_dir() else p.parent, *list((p if p.is_dir() else p.parent).parents)[:3]]:
        f = folder / "classes.txt"
        if f.is_file():
            return [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return None


def _has_images(p) -> bool:
    from repyolo.data.io import is_image_file

    return any(is_image_file(f) for f in p.iterdir())


def _dataset(cfg, sources, split, names, **kw):
    from repyolo.data.dataset import DetectionDataset

    if cfg is not None:
        return cfg.dataset(split, **kw)
    return DetectionDataset(sources[split], names=names, prefix=f"{split}: ", **kw)


def run(args) -> int:
    if not getattr(args, "data_action", None):
        args._parser.print_help()
        return 2
    cfg, sources, names = _open(args.data)
    if args.data_action == "check":
        return _check(args, cfg, sources, names)
    return _show(args, cfg, sources, names)


def _check(args, cfg, sources, names) -> int:
    import json
    import logging

    from repyolo.utils.logging import get_logger

    splits = list(sources) if args.split == "all" else [args.split]
    if cfg is None:
        splits = splits[:1]
    seen, reports = set(), {}
    quiet = get_logger("repyolo.data.dataset")
    old = quiet.level
    quiet.setLevel(logging.ERROR)  # the summary is printed below instead
    try:
        for split in splits:
            if split not in sources:
                continue
            key = tuple(map(str, sources[split]))
            if key in seen:
                print(f"{split}: same sources as an earlier split")
                continue
            seen.add(key)
            ds = _dataset(cfg, sources, split, names, workers=args.workers)
            rep = ds.report
            reports[split] = rep.to_dict()
            print(rep.summary(max_issues=args.max_issues))
            print(f"{split}: class histogram (boxes per class)")
            print(rep.histogram())
            if rep.cache_path:
                print(f"{split}: cache {rep.cache_path}")
            print()
    finally:
        quiet.setLevel(old)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(reports, f, indent=1)
    return 0


def _show(args, cfg, sources, names) -> int:
    import numpy as np

    from repyolo.data.io import write_image
    from repyolo.data.visualize import draw_boxes, tile_images

    ds = _dataset(cfg, sources, args.split, names, img_size=args.img, augment=not args.no_augment)
    ds.seed = args.seed
    rng = np.random.default_rng(args.seed)
    n = max(1, min(args.n, len(ds)))
    idx = rng.choice(len(ds), size=n, replace=False)
    tiles = []
    for i in idx:
        img, labels, _, _ = ds[int(i)]
        tiles.append(draw_boxes(img.permute(1, 2, 0).numpy(), labels.numpy(), ds.names))
    write_image(args.out, tile_images(tiles, tile=args.tile))
    print(f"saved {n} {'augmented ' if not args.no_augment else ''}samples of {args.split} to {args.out}")
    return 0
