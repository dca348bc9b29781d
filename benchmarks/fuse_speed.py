"""CPU latency of unfused (multi-branch) vs fused (re-parameterized) YOLOv6 models.

Command (recorded in BENCHMARKS.md):
    python benchmarks/fuse_speed.py --models yolov6n yolov6s --img 640 --runs 15 --threads 2

Variants are run interleaved (unfused, fused, unfused, fused, ...) so that the machine's
clock drift hits both alike; the table reports medians and the fused/unfused ratio.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from repyolo import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["yolov6n", "yolov6s"])
    ap.add_argument("--img", type=int, default=640)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.rand(1, 3, args.img, args.img)
    print(f"batch 1, {args.img}x{args.img}, {args.threads} threads, median of {args.runs} interleaved runs")
    print("| model | unfused ms | fused ms | fused / unfused |")
    print("|---|---|---|---|")
    for name in args.models:
        unfused = build_model(name).eval()
        fused = copy.deepcopy(unfused).fuse()
        times = {"unfused": [], "fused": []}
        with torch.inference_mode():
            for _ in range(args.warmup):
                unfused(x), fused(x)
            for _ in range(args.runs):
                for key, m in (("unfused", unfused), ("fused", fused)):
                    t = time.perf_counter()
                    m(x)
                    times[key].append((time.perf_counter() - t) * 1e3)
        u, f = statistics.median(times["unfused"]), statistics.median(times["fused"])
        print(f"| {name} | {u:.1f} | {f:.1f} | {f / u:.2f} |")


if __name__ == "__main__":
    main()
