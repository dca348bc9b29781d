"""Images/second of the training data pipeline (decode + augment + collate) on the real sets.

Command (from the repo root; needs ../shared/datasets):

    python benchmarks/loader_speed.py --img 640 --workers 2 --batch 16 --epochs 2

For coco128 (images/train, 128 images) and BCCD (train split, 205 images, converted to YOLO
in a temporary folder) it times full epochs through ``build_dataloader`` with mosaic on
(published defaults: mosaic 1.0, HSV, translate 0.1, scale 0.5, flip-lr 0.5) and with mosaic
off (letterbox + the same affine/HSV/flip), and prints a table. Worker start-up is included
(workers are re-created every epoch, as in training). The label check runs once beforehand
(its time is printed separately; caches go to a temporary folder).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from repyolo.data import DetectionDataset, build_dataloader, set_loader_epoch, voc_to_yolo  # noqa: E402
from repyolo.data.config import load_data_config  # noqa: E402


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the loader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def time_loader(ds, batch: int, workers: int, epochs: int) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (all processes) and samples for ``epochs`` epochs."""
    loader = build_dataloader(ds, batch_size=batch, workers=workers, shuffle=True, seed=0)
    n = 0
    c0, t0 = _cpu_seconds(), time.perf_counter()
    for epoch in range(epochs):
        set_loader_epoch(loader, epoch)
        for imgs, *_ in loader:
            n += imgs.shape[0]
    return time.perf_counter() - t0, _cpu_seconds() - c0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--img", type=int, default=640)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--datasets", help="folder holding coco128/ and bccd/",
                    default=os.environ.get("REPYOLO_SHARED_DATASETS", str(REPO.parent / "shared" / "datasets")))
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="loader_speed_") as tmp:
        os.environ["REPYOLO_CACHE_DIR"] = str(Path(tmp) / "cache")
        rows = run(Path(args.datasets), Path(tmp), args)
    print_table(rows, args)


def run(shared: Path, tmp: Path, args) -> list[tuple]:
    """One row per (data set, mosaic on/off): name, images, label, samples, s, img/s, CPU ms/img, check s."""
    sets = {}
    coco = shared / "coco128"
    names = [n.strip() for n in (coco / "classes.txt").read_text().splitlines() if n.strip()]
    sets["coco128"] = dict(sources=coco / "images" / "train", names=names)
    cfg = load_data_config(voc_to_yolo(shared / "bccd", tmp / "bccd"))
    sets["bccd"] = dict(sources=cfg.train, names=cfg.names)

    rows = []
    for name, spec in sets.items():
        t0 = time.perf_counter()
        DetectionDataset(spec["sources"], names=spec["names"], img_size=args.img)
        check_s = time.perf_counter() - t0
        for label, hyp in (("mosaic on", {"mosaic": 1.0}), ("mosaic off", {"mosaic": 0.0})):
            ds = DetectionDataset(spec["sources"], names=spec["names"], img_size=args.img, augment=True, hyp=hyp)
            secs, cpu, n = time_loader(ds, args.batch, args.workers, args.epochs)
            rows.append((name, len(ds), label, n, secs, n / secs, 1000 * cpu / n, check_s))
    return rows


def print_table(rows: list[tuple], args) -> None:
    load = os.getloadavg()[0]
    print(f"\nloader speed: img {args.img}, batch {args.batch}, workers {args.workers}, {args.epochs} epochs, "
          f"{os.cpu_count()} CPUs (load average {load:.1f} at the end), torch {torch.__version__}")
    print("img/s = wall-clock throughput; CPU ms/img = CPU time of all processes per image "
          "(independent of other load on the machine)")
    print(f"{'data set':<9} {'images':>6} {'augmentation':<12} {'samples':>7} {'seconds':>8} {'img/s':>7} "
          f"{'CPU ms/img':>10} {'check s':>8}")
    for name, n_img, label, n, secs, ips, cpu_ms, check_s in rows:
        print(f"{name:<9} {n_img:>6} {label:<12} {n:>7} {secs:>8.2f} {ips:>7.1f} {cpu_ms:>10.1f} {check_s:>8.2f}")


if __name__ == "__main__":
    main()
