"""Post-processing speed: confidence filter + top-k cap + NMS + max_det, ms per image.

Raw predictions are ``(B, 8400, 84)`` (640x640 input, strides 8/16/32, 80 classes). Two score
distributions:

* ``realistic``: what a trained detector emits on a busy image: 20 objects, ~6% of the anchors
  see one of them (jittered copies of its box, score 0.1-0.95 for its class, a weaker score for
  a second class), every other anchor/class has a low score (sigmoid of N(-7, 1.5));
* ``uniform``: every score uniform in 0..1 (worst case: every anchor passes; the 30000 top-k cap
  and max_det bound the work).

Both NMS implementations (``repyolo.ops.nms.nms``, plain torch; :func:`nms_cv2` below, OpenCV) are timed
for the single-label prediction setting and the multi-label evaluation setting.

    python benchmarks/postprocess_speed.py [--repeats 10] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from repyolo.ops import nms as nms_mod
from repyolo.ops.postprocess import non_max_suppression

A, NC, SIZE = 8400, 80, 640


def nms_cv2(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float, classes: torch.Tensor | None = None,
            max_det: int | None = None) -> torch.Tensor:
    """Greedy NMS through OpenCV (``cv2.dnn.NMSBoxes``, ``NMSBoxesBatched`` when class-aware).

    Same contract as :func:`nms`. OpenCV computes IoU in float64, so a pair whose IoU is within
    float32 rounding of ``iou_thres`` may be decided differently.
    """
    import cv2

    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    b = boxes.detach().double().cpu().numpy()
    xywh = np.concatenate((b[:, :2], b[:, 2:] - b[:, :2]), 1)
    # OpenCV wants scores above a threshold >= 0: pass ranks (same order, ties broken by index)
    order = torch.sort(scores.detach().cpu(), descending=True, stable=True).indices
    rank = torch.empty(len(order), dtype=torch.float64)
    rank[order] = torch.arange(len(order), 0, -1, dtype=torch.float64)
    s = rank.float().numpy()
    low = 0.5
    if classes is None:
        idx = cv2.dnn.NMSBoxes(xywh, s, low, float(iou_thres))
    else:
        c = classes.detach().cpu().numpy().astype(np.int32)
        idx = cv2.dnn.NMSBoxesBatched(xywh, s, c, low, float(iou_thres))
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)  # by decreasing score
    if max_det is not None:  # (cv2's top_k caps the candidates before NMS, not the kept boxes)
        idx = idx[: int(max_det)]
    return torch.from_numpy(idx).to(boxes.device)


def make_preds(batch: int, kind: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cxy = torch.rand(batch, A, 2, generator=g) * SIZE
    wh = torch.rand(batch, A, 2, generator=g) * 120 + 8
    if kind == "uniform":
        scores = torch.rand(batch, A, NC, generator=g)
    else:
        scores = torch.sigmoid(torch.randn(batch, A, NC, generator=g) * 1.5 - 7)
        n_obj = 20
        obj_c = torch.rand(batch, n_obj, 2, generator=g) * SIZE
        obj_wh = torch.rand(batch, n_obj, 2, generator=g) * 200 + 20
        obj_cls = torch.randint(0, NC, (batch, n_obj), generator=g)
        for b in range(batch):
            idx = torch.randperm(A, generator=g)[: int(0.06 * A)]
            k = torch.randint(0, n_obj, (len(idx),), generator=g)
            cxy[b, idx] = obj_c[b, k] + torch.randn(len(idx), 2, generator=g) * obj_wh[b, k] * 0.08
            wh[b, idx] = obj_wh[b, k] * torch.exp(torch.randn(len(idx), 2, generator=g) * 0.1)
            scores[b, idx, obj_cls[b, k]] = 0.1 + 0.85 * torch.rand(len(idx), generator=g)
            scores[b, idx, (obj_cls[b, k] + 1) % NC] = 0.05 + 0.2 * torch.rand(len(idx), generator=g)
    boxes = torch.cat((cxy - wh / 2, cxy + wh / 2), -1)
    return torch.cat((boxes, scores), -1)


def time_it(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and median process CPU time of ``fn()``, in ms (CPU time is the steadier
    number on a shared machine; with one thread it is what the wall clock would be when idle)."""
    if repeats > 1:
        fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; input (B, {A}, {4 + NC}); "
          f"median of {args.repeats}; ms per image")
    print("columns: wall / CPU ms per image for repyolo.ops.nms.nms (torch, the default) and nms_cv2 (OpenCV)")
    print(f"{'scores':>9} {'conf':>5} {'B':>2} {'mode':>12} {'cand/img':>8} {'kept/img':>8} "
          f"{'torch wall/cpu':>15} {'cv2 wall/cpu':>15}")
    torch_nms = nms_mod.nms
    for kind in ("realistic", "uniform"):
        for conf in (0.03, 0.25):
            for batch in (1, 8):
                preds = make_preds(batch, kind)
                for mode, kw in (("single-label", dict(iou_thres=0.45, multi_label=False)),
                                 ("multi-label", dict(iou_thres=0.65, multi_label=True))):
                    row = []
                    sc = preds[..., 4:]
                    cand = ((sc > conf).sum() if kw["multi_label"] else (sc.amax(-1) > conf).sum()) / batch
                    for impl in (torch_nms, nms_cv2):
                        # OpenCV has no early stop at max_det: O(candidates x kept); when that is slow
                        # time it once, on batch 1 only
                        reps = 1 if impl is not torch_nms and cand > 5000 else args.repeats
                        if reps == 1 and batch > 1:
                            row.append("(see B=1)")
                            continue
                        # non_max_suppression looks the NMS function up in repyolo.ops.postprocess
                        import repyolo.ops.postprocess as pp

                        pp.nms = impl
                        try:
                            out = non_max_suppression(preds, conf, max_det=300, **kw)
                            wall, cpu = time_it(lambda: non_max_suppression(preds, conf, max_det=300, **kw),  # noqa: B023
                                                reps)
                        finally:
                            pp.nms = torch_nms
                        row.append(f"{wall / batch:.2f} / {cpu / batch:.2f}")
                    kept = sum(len(o) for o in out) / batch
                    print(f"{kind:>9} {conf:>5} {batch:>2} {mode:>12} {min(float(cand), 30000):>8.0f} {kept:>8.0f} "
                          f"{row[0]:>15} {row[1]:>15}")


if __name__ == "__main__":
    main()
