"""Micro-benchmark (not a test): assigner + loss against a yolov6n training step on CPU.

    python tests/loss/bench_loss.py [--batch 8] [--img 320] [--gts 10] [--threads 1] [--repeats 5]

Prints the median wall time and CPU time of (a) the model's forward + backward (loss = sum of the
outputs, i.e. without the detection loss), (b) each assigner alone, (c) DetectionLoss forward +
backward into the (detached) head outputs, for TAL / ATSS / SimOTA, and (c) as a share of (a) + (c).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import repyolo
from repyolo.cfg.settings import Hyp
from repyolo.loss import DetectionLoss
from repyolo.loss.detection import levels_of, pad_targets


def timed(fn, repeats):
    walls, cpus = [], []
    fn()  # warm-up
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def random_targets(batch, img, gts, nc, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = batch * gts
    xy = torch.rand(n, 2, generator=g) * img * 0.8
    wh = torch.rand(n, 2, generator=g) * img * 0.3 + 8
    boxes = torch.cat((xy, (xy + wh).clamp(max=img)), 1)
    idx = torch.arange(batch).repeat_interleave(gts).float()[:, None]
    cls = torch.randint(0, nc, (n, 1), generator=g).float()
    return torch.cat((idx, cls, boxes), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--img", type=int, default=320)
    ap.add_argument("--gts", type=int, default=10)
    ap.add_argument("--nc", type=int, default=80)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = repyolo.build_model("yolov6n", num_classes=args.nc).train()
    x = torch.rand(args.batch, 3, args.img, args.img)
    targets = random_targets(args.batch, args.img, args.gts, args.nc)

    def step():
        model.zero_grad(set_to_none=True)
        out = model(x)
        (out["cls"].sum() + out["reg"].sum()).backward()

    model_wall, model_cpu = timed(step, args.repeats)
    with torch.no_grad():
        out = model(x)
    out = {k: v.detach() if torch.is_tensor(v) else v for k, v in out.items()}
    a = out["cls"].shape[1]
    print(f"yolov6n nc={args.nc} batch {args.batch} img {args.img} anchors {a} gts/img {args.gts} "
          f"threads {args.threads}")
    print(f"{'part':34s} {'wall ms':>9s} {'cpu ms':>9s} {'share':>7s}")
    print(f"{'model forward + backward':34s} {model_wall * 1e3:9.1f} {model_cpu * 1e3:9.1f}")

    labels, boxes, mask = pad_targets(targets, args.batch)
    for name in ("tal", "atss", "simota"):
        fn = DetectionLoss(args.nc, hyp=Hyp(assigner=name, atss_warmup_epochs=0, iou_type="siou"))
        cls = out["cls"].clone().requires_grad_()
        reg = out["reg"].clone().requires_grad_()
        outputs = {**out, "cls": cls, "reg": reg}
        points_s = out["anchors"] / out["strides"]
        pred = (fn.decode(reg.detach(), points_s) * out["strides"])
        levels, strides = levels_of(out["strides"])

        def assign():
            fn.assigner(cls.detach().sigmoid(), pred, out["anchors"], labels, boxes, mask, levels, strides)

        def loss_step():
            cls.grad = reg.grad = None
            fn(outputs, targets, 10, args.batch)[0].backward()

        aw, ac = timed(assign, args.repeats)
        lw, lc = timed(loss_step, args.repeats)
        print(f"{name + ' assigner':34s} {aw * 1e3:9.1f} {ac * 1e3:9.1f}")
        print(f"{name + ' loss fwd+bwd (incl. assigner)':34s} {lw * 1e3:9.1f} {lc * 1e3:9.1f} "
              f"{lw / (lw + model_wall):7.1%}")


if __name__ == "__main__":
    main()
