"""Training throughput of YOLOv6 on the CPU, and where a step's time goes.

Command (recorded in BENCHMARKS.md):
    python benchmarks/train_speed.py --model yolov6n --imgs 320 640 --batch 8 --steps 6 --threads 2

For each size it times, on one fixed batch of real-looking targets (synthetic shapes data):
the network's forward+backward alone, and the full training step (forward, assigner + loss,
backward, optimizer, EMA), both interleaved; "overhead" is the share of the full step spent
outside the network's own forward+backward. Data loading is measured separately
(benchmarks/loader_speed.py) because the loader runs in worker processes in parallel.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from repyolo.ops.image import to_model_input


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov6n")
    ap.add_argument("--imgs", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from repyolo import build_model
    from repyolo.cfg.settings import Hyp
    from repyolo.data.dataset import DetectionDataset
    from repyolo.data.loader import collate_fn
    from repyolo.data.synthetic import generate_synthetic
    from repyolo.engine.ema import ModelEMA
    from repyolo.engine.optim import build_optimizer
    from repyolo.loss.detection import build_loss

    tmp = tempfile.mkdtemp()
    print(f"{args.model}, batch {args.batch}, {args.threads} threads, median of {args.steps} interleaved steps")
    print("| img | fwd+bwd ms | full step ms | overhead share | train img/s |")
    print("|---|---|---|---|---|")
    for img in args.imgs:
        data = generate_synthetic(f"{tmp}/syn{img}", n_train=args.batch, n_val=1, img_size=img, seed=0)
        ds = DetectionDataset(f"{tmp}/syn{img}/images/train", img_size=img, augment=False, label_cache=False)
        imgs, targets, _, _ = collate_fn([ds[i] for i in range(args.batch)])
        x = to_model_input(imgs)
        model = build_model(args.model, num_classes=ds.nc).train()
        hyp = Hyp.resolve(model.cfg)
        loss_fn = build_loss(model, hyp)
        opt = build_optimizer(model, "SGD", 0.01, 0.937, 5e-4)
        ema = ModelEMA(model)
        bare, full = [], []
        for step in range(args.steps + 1):
            t = time.perf_counter()
            out = model(x)
            (out["cls"].float().mean() + out["reg"].float().mean()).backward()
            opt.zero_grad(set_to_none=True)
            t1 = time.perf_counter()
            out = model(x)
            loss, _ = loss_fn(out, targets, epoch=10, batch_size=args.batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            ema.update(model)
            t2 = time.perf_counter()
            if step:  # the first step warms caches
                bare.append((t1 - t) * 1e3)
                full.append((t2 - t1) * 1e3)
        b, f = statistics.median(bare), statistics.median(full)
        print(f"| {img} | {b:.0f} | {f:.0f} | {100 * (f - b) / f:.0f}% | {args.batch / f * 1e3:.1f} |")
    del data


if __name__ == "__main__":
    main()
