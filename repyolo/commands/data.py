"""``repyolo data check|show``: check a data set, or save a picture of augmented samples.

    repyolo data check DATA [--split train|val|test|all] [--json REPORT.json]
    repyolo data show DATA [--split train] [--out FILE] [--n 16] [--img 640] [--no-augment]

``DATA`` is a data YAML, a folder holding ``data.yaml``, or a single source (image folder,
list file or COCO json). Calls :func:`repyolo.api.check_data` / :func:`repyolo.api.show_data`.
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_action", metavar="ACTION")
    c = sub.add_parser("check", help="check images and labels; print counts, issues and a class histogram")
    c.add_argument("data", help="data YAML, folder with data.yaml, image folder, list file or COCO json")
    c.add_argument("--split", default="all", choices=["train", "val", "test", "all"], help="split(s) to check")
    c.add_argument("--workers", type=int, default=None, help="checking threads (default: CPU count)")
    c.add_argument("--max-issues", type=int, default=50, help="issues listed per split (default 50)")
    c.add_argument("--json", default=None, help="also write the reports as JSON to this file")
    s = sub.add_parser("show", help="save a grid of (augmented) samples with their boxes")
    s.add_argument("data", help="data YAML, folder with data.yaml, image folder, list file or COCO json")
    s.add_argument("--split", default="train", choices=["train", "val", "test"], help="split to sample")
    s.add_argument("--out", default="data_show.jpg", help="output image (default data_show.jpg)")
    s.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    s.add_argument("--img", type=int, default=640, help="network input size (default 640)")
    s.add_argument("--no-augment", action="store_true", help="letterboxed samples without augmentation")
    s.add_argument("--seed", type=int, default=0, help="seed of the sample choice and augmentation")
    s.add_argument("--tile", type=int, default=400, help="pixels per sample in the grid (default 400)")
    parser.set_defaults(_parser=parser)


def run(args) -> int:
    if not getattr(args, "data_action", None):
        args._parser.print_help()
        return 2
    if args.data_action == "check":
        return _check(args)
    from repyolo.api import show_data

    out = show_data(args.data, args.out, split=args.split, n=args.n, img=args.img, augment=not args.no_augment,
                    seed=args.seed, tile=args.tile)
    print(f"saved {'augmented ' if not args.no_augment else ''}samples of {args.split} to {out}")
    return 0


def _check(args) -> int:
    import json

    from repyolo.api import check_data
    from repyolo.utils.paths import check_output_path

    if args.json:
        check_output_path(args.json)
    reports = check_data(args.data, args.split, workers=args.workers)
    for split, rep in reports.items():
        if rep is None:
            print(f"{split}: same sources as an earlier split")
            continue
        print(rep.summary(max_issues=args.max_issues))
        print(f"{rep.prefix}class histogram (boxes per class)")
        print(rep.histogram())
        if rep.cache_path:
            print(f"{rep.prefix}cache {rep.cache_path}")
        print()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({s: r.to_dict() for s, r in reports.items() if r is not None}, f, indent=1)
    return 0
