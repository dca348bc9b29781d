"""Slow, loop-per-box reference assigners written straight from the algorithm descriptions.

They work on one image with plain Python floats and lists, so they share no code with the
vectorized assigners under test. Each returns ``{anchor index: (gt index, target score)}``.
"""
from __future__ import annotations

import math


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda r: max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter + 1e-9)


def inside(p, box, eps=1e-9):
    return min(p[0] - box[0], p[1] - box[1], box[2] - p[0], box[3] - p[1]) > eps


def atss(points, strides, levels, gts, topk=9, scale=5.0):
    """points: [(x, y)], strides: [s per point], levels: [count per level], gts: [(cls, box)]."""
    anchor_boxes = [(x - scale * s / 2, y - scale * s / 2, x + scale * s / 2, y + scale * s / 2)
                    for (x, y), s in zip(points, strides)]
    claims = {}
    for j, (_, box) in enumerate(gts):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        cand, start = [], 0
        for count in levels:
            idx = sorted(range(start, start + count),
                         key=lambda a: (points[a][0] - cx) ** 2 + (points[a][1] - cy) ** 2)[:topk]
            cand += idx
            start += count
        ious = [iou(box, anchor_boxes[a]) for a in cand]
        mean = sum(ious) / len(ious)
        std = math.sqrt(sum((v - mean) ** 2 for v in ious) / (len(ious) - 1))
        for a, v in zip(cand, ious):
            if v > mean + std and inside(points[a], box):
                claims.setdefault(a, []).append((v, j))
    return {a: (max(c)[1], 1.0) for a, c in claims.items()}


def tal(points, scores, preds, gts, topk=13, alpha=1.0, beta=6.0):
    """scores: [[p per class] per point]; preds: [box per point]."""
    claims, metric, overlap = {}, {}, {}
    for j, (c, box) in enumerate(gts):
        cand = [a for a in range(len(points)) if inside(points[a], box)]
        for a in cand:
            overlap[a, j] = iou(box, preds[a])
            metric[a, j] = scores[a][c] ** alpha * overlap[a, j] ** beta
        for a in sorted(cand, key=lambda a: -metric[a, j])[:topk]:
            claims.setdefault(a, []).append((overlap[a, j], j))
    owner = {a: max(c)[1] for a, c in claims.items()}
    out = {}
    for a, j in owner.items():
        mine = [b for b, k in owner.items() if k == j]
        t_max = max(metric[b, j] for b in mine)
        u_max = max(overlap[b, j] for b in mine)
        out[a] = (j, metric[a, j] / (t_max + 1e-9) * u_max)
    return out


def simota(points, strides, scores, preds, gts, iou_weight=3.0, radius=2.5, big=1e5):
    claims, cost, overlap = {}, {}, {}
    for j, (c, box) in enumerate(gts):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        prior = []
        for a, ((x, y), s) in enumerate(zip(points, strides)):
            in_box = inside((x, y), box, 1e-8)
            in_centre = abs(x - cx) < radius * s and abs(y - cy) < radius * s
            if not (in_box or in_centre):
                continue
            prior.append(a)
            overlap[a, j] = iou(box, preds[a])
            p = [min(max(v, 1e-6), 1 - 1e-6) for v in scores[a]]
            bce = sum(-math.log(v) if k == c else -math.log(1 - v) for k, v in enumerate(p))
            cost[a, j] = bce - iou_weight * math.log(overlap[a, j] + 1e-8) + (0 if in_box and in_centre else big)
        k = max(1, int(sum(sorted((overlap[a, j] for a in prior), reverse=True)[:10]) + 1e-6))
        for a in sorted(prior, key=lambda a: cost[a, j])[:k]:
            claims.setdefault(a, []).append((cost[a, j], j))
    out = {}
    for a, c in claims.items():
        j = min(c)[1]
        out[a] = (j, overlap[a, j])
    return out


def random_batch(seed: int, points, b: int, n: int, nc: int, min_side: float, spread: float):
    """A seeded float64 batch for comparing an assigner with its reference: ``boxes`` ``(b, n, 4)``,
    ``classes`` ``(b, n, 1)``, ``mask`` ``(b, n, 1)`` (all True), ``scores`` ``(b, A, nc)`` in [0, 1),
    ``preds`` ``(b, A, 4)`` boxes around the anchor ``points`` ``(A, 2)`` (half-sides 2 .. 2 + spread)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    a = len(points)
    xy = rand(b, n, 2) * 40
    boxes = torch.cat((xy, xy + rand(b, n, 2) * 30 + min_side), -1)
    classes = torch.randint(0, nc, (b, n, 1), generator=g)
    mask = torch.ones(b, n, 1, dtype=torch.bool)
    scores = rand(b, a, nc)
    centre = points + (rand(b, a, 2) - 0.5) * 8
    preds = torch.cat((centre - spread * rand(b, a, 2) - 2, centre + spread * rand(b, a, 2) + 2), -1)
    return boxes, classes, mask, scores, preds


def assert_matches_reference(out, classes, boxes, mask, reference, check_boxes: bool = True) -> None:
    """``out`` (an assigner's result for the batch) equals ``reference(i, gts)`` (the loop reference of
    image ``i`` with its ``[(class, box), ...]``) on every image: same positives, labels, scores (and boxes)."""
    import pytest

    labels, tboxes, tscores, fg = out
    for i in range(len(classes)):
        gts = [(int(classes[i, j, 0]), boxes[i, j].tolist()) for j in range(classes.shape[1]) if mask[i, j, 0]]
        ref = reference(i, gts)
        assert set(fg[i].nonzero()[:, 0].tolist()) == set(ref)
        for anchor, (j, score) in ref.items():
            assert labels[i, anchor] == gts[j][0]
            if check_boxes:
                assert tboxes[i, anchor].tolist() == pytest.approx(gts[j][1])
            assert float(tscores[i, anchor].sum()) == pytest.approx(score, rel=1e-6, abs=1e-9)
