"""RepVGG vs RepOpt vs plain SGD on a tiny YOLOv6 detector (synthetic shapes set).

Command (recorded in the RepOpt report / BENCHMARKS.md):
    python benchmarks/repopt_compare.py --img 128 --width 0.125 --depth 0.33 --steps 300 --batch 16 --threads 1

Four runs with the same seed, data, batch order and budget (``--steps`` optimizer steps,
SGD Nesterov 0.937, lr0 0.02 with linear warm-up and cosine decay, weight decay 5e-4, gradient
clipping 10, the YOLOv6 loss of :func:`repyolo.loss.detection.build_loss`):

1. ``repvgg``      -- yolov6n topology with RepVGG blocks (3x3+BN, 1x1+BN, identity BN), plain SGD;
2. ``hypersearch`` -- the same topology with CSLA blocks and learnable scales (step 2 of RepOpt);
3. ``repopt``      -- the plain network (3x3 Conv-BN-ReLU blocks) trained with RepOptimizer,
                      masks and initial kernels from the scales of run 2;
4. ``plain-sgd``   -- the same plain network trained with plain SGD (default init, no masks).

It prints the training-loss curve (mean total loss over windows of the run), the final
loss components, mAP on the validation split (raw final weights, conf 0.03, IoU 0.65), the
train / deploy parameter counts and the time per step. Images are decoded once; batches are
drawn with a fixed generator, with random horizontal flips.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

from repyolo.ops.image import to_model_input


def load_split(root: Path, split: str, img: int):
    """A split as one uint8 tensor ``(N, 3, img, img)`` and targets ``(M, 6)`` (image index, class, xyxy)."""
    from repyolo.data.dataset import DetectionDataset
    from repyolo.data.loader import collate_fn

    ds = DetectionDataset(str(root / "images" / split), img_size=img, augment=False, label_cache=False)
    imgs, targets, _, _ = collate_fn([ds[i] for i in range(len(ds))])
    return ds, imgs, targets


def make_batch(imgs: torch.Tensor, targets: torch.Tensor, batch: int, g: torch.Generator):
    """A random batch with random horizontal flips (boxes flipped with the images)."""
    n, w = imgs.shape[0], imgs.shape[-1]
    idx = torch.randperm(n, generator=g)[:batch]
    flip = torch.rand(batch, generator=g) < 0.5
    pos = torch.full((n,), -1, dtype=torch.long)
    pos[idx] = torch.arange(batch)
    t = targets[pos[targets[:, 0].long()] >= 0].clone()
    t[:, 0] = pos[t[:, 0].long()].float()
    x = imgs[idx].clone()
    x[flip] = x[flip].flip(-1)
    f = flip[t[:, 0].long()]
    x1 = t[f, 2].clone()
    t[f, 2] = w - t[f, 4]
    t[f, 4] = w - x1
    return to_model_input(x), t


def train(model, optimizer, loss_fn, imgs, targets, steps: int, batch: int, seed: int, lr0: float, warmup: int):
    """Run ``steps`` optimizer steps; returns per-step loss items ``(steps, 4)`` [total, cls, iou, dfl] and ms/step."""
    from repyolo.engine.optim import Schedule

    schedule = Schedule(lr0, epochs=steps, lrf=0.01, kind="cosine", warmup_iters=warmup)
    g = torch.Generator().manual_seed(seed)
    model.train()
    hist = torch.zeros(steps, 4)
    t0 = time.perf_counter()
    for i in range(steps):
        schedule.apply(optimizer, i, i)
        x, t = make_batch(imgs, targets, batch, g)
        loss, items = loss_fn(model(x), t, epoch=10, batch_size=x.shape[0])
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss became {loss.item()} at step {i}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        hist[i, 0], hist[i, 1:] = loss.detach(), items
    return hist, (time.perf_counter() - t0) / steps * 1e3


def evaluate(model, val_ds) -> dict:
    from repyolo.engine.evaluator import Evaluator

    ev = Evaluator(dataset=val_ds, batch_size=16, workers=0, plots=False, save_json=False)
    return ev(model.eval())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--img", type=int, default=128)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--depth", type=float, default=0.33)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--hs-steps", type=int, default=None, help="hyper-search budget (default: --steps)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr0", type=float, default=0.02)
    ap.add_argument("--n-train", type=int, default=128)
    ap.add_argument("--n-val", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None, help="where the synthetic set goes (default: a temp folder)")
    ap.add_argument("--no-map", action="store_true", help="skip the mAP evaluation")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from repyolo import build_model
    from repyolo.cfg.settings import Hyp
    from repyolo.data.synthetic import generate_synthetic
    from repyolo.engine.optim import build_optimizer
    from repyolo.engine.repoptimizer import build_repoptimizer, extract_scales, hypersearch_config
    from repyolo.loss.detection import build_loss
    from repyolo.utils.flops import count_params

    t_start = time.perf_counter()
    root = Path(args.data_dir or tempfile.mkdtemp(prefix="repopt_cmp_"))
    generate_synthetic(root, n_train=args.n_train, n_val=args.n_val, img_size=args.img, seed=args.seed)
    _, imgs, targets = load_split(root, "train", args.img)
    val_ds = load_split(root, "val", args.img)[0] if not args.no_map else None
    nc = 5
    size = dict(width_multiple=args.width, depth_multiple=args.depth)
    warmup = max(args.steps // 20, 1)
    wd = 5e-4

    def build(cfg):
        torch.manual_seed(args.seed)
        return build_model(cfg, num_classes=nc, **size)

    runs, scales = {}, None
    for name in ("repvgg", "hypersearch", "repopt", "plain-sgd"):
        cfg = {"repvgg": "yolov6n", "hypersearch": hypersearch_config("yolov6n-repopt")}.get(name, "yolov6n-repopt")
        model = build(cfg)
        if name == "repopt":
            opt = build_repoptimizer(model, scales, args.lr0, 0.937, wd)  # re-initialises from the scales
        else:
            opt = build_optimizer(model, "SGD", args.lr0, 0.937, wd)
        loss_fn = build_loss(model, Hyp.resolve(model.cfg))
        steps = (args.hs_steps or args.steps) if name == "hypersearch" else args.steps
        hist, ms = train(model, opt, loss_fn, imgs, targets, steps, args.batch, args.seed, args.lr0, warmup)
        if name == "hypersearch":
            scales = extract_scales(model)
        train_params = count_params(model)
        metrics = evaluate(model, val_ds) if val_ds is not None else {}
        model.fuse()
        runs[name] = dict(hist=hist, ms=ms, metrics=metrics, params=(train_params, count_params(model)))
        print(f"[{time.perf_counter() - t_start:6.0f}s] {name}: final loss {hist[-max(steps // 10, 1):, 0].mean():.4f}",
              flush=True)

    s3 = torch.cat([v["scale_3x3"] for v in scales.values()])
    s1 = torch.cat([v["scale_1x1"] for v in scales.values()])
    print(f"\nyolov6n topology, width {args.width}, depth {args.depth}, {args.img} px, batch {args.batch}, "
          f"{args.steps} steps, lr0 {args.lr0}, seed {args.seed}, {args.threads} thread(s); "
          f"{args.n_train} train / {args.n_val} val synthetic images")
    print(f"hyper-searched scales over {len(scales)} blocks: s (3x3) mean {s3.mean():.3f} "
          f"[{s3.min():.3f}, {s3.max():.3f}], t (1x1) mean {s1.mean():.3f} [{s1.min():.3f}, {s1.max():.3f}]\n")
    marks = [0.25, 0.5, 0.75, 1.0]
    head = " | ".join(f"loss @{int(m * 100)}%" for m in marks)
    print(f"| run | {head} | cls | iou | mAP50 | mAP50-95 | params train / deploy | ms/step |")
    print("|---|" + "---|" * (len(marks) + 6))
    for name, r in runs.items():
        h = r["hist"]
        n = h.shape[0]
        w = max(n // 10, 1)  # each point: mean over the 10% of steps ending there
        curve = " | ".join(f"{h[max(int(m * n) - w, 0):int(m * n), 0].mean():.3f}" for m in marks)
        end = h[-w:].mean(0)
        mm = r["metrics"]
        m50 = f"{mm['map50']:.3f}" if mm else "-"
        m = f"{mm['map']:.3f}" if mm else "-"
        label = name if n == args.steps else f"{name} ({n} steps)"
        print(f"| {label} | {curve} | {end[1]:.3f} | {end[2]:.3f} | {m50} | {m} | "
              f"{r['params'][0]:,} / {r['params'][1]:,} | {r['ms']:.0f} |")
    print(f"\ntotal time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
