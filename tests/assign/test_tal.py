"""Task-aligned assigner: metric, top-k, normalised targets, conflicts, boundary, empty images."""
from __future__ import annotations

import pytest
import torch
from assign_reference import assert_matches_reference, random_batch
from assign_reference import tal as tal_reference

from repyolo.assign import TaskAlignedAssigner
from repyolo.ops.boxes import make_anchors

# one 4x4 level of stride 8 (a 32 x 32 image); point index = row * 4 + col, points at 4, 12, 20, 28
POINTS, _ = make_anchors([(4, 4)], [8], dtype=torch.float64)
A = 16


def batch(gts):
    labels = torch.tensor([[[c] for c, _ in gts]], dtype=torch.long).reshape(1, len(gts), 1)
    boxes = torch.tensor([[b for _, b in gts]], dtype=torch.float64).reshape(1, len(gts), 4)
    return labels, boxes, torch.ones(1, len(gts), 1, dtype=torch.bool)


def test_topk_by_metric_and_normalised_scores():
    gt = (0.0, 0.0, 32.0, 16.0)  # class 1; points 0..7 (rows y=4 and y=12) are inside
    scores = torch.full((1, A, 2), 0.9, dtype=torch.float64)  # outside points score high: not candidates
    scores[0, :8, 1] = torch.arange(1, 9, dtype=torch.float64) / 10  # 0.1 .. 0.8
    preds = torch.tensor(gt, dtype=torch.float64).repeat(1, A, 1)  # IoU 1 everywhere ...
    preds[0, 7] = torch.tensor([0.0, 0.0, 32.0, 8.0])  # ... except point 7: IoU 0.5 -> metric 0.8 * 0.5^6
    labels, boxes, tscores, fg = TaskAlignedAssigner(2, topk=3)(scores, preds, POINTS, *batch([(1, gt)]))
    # metrics: 0.1 .. 0.7 for points 0..6, 0.0125 for point 7 -> top 3 = points 6, 5, 4
    assert fg[0].nonzero()[:, 0].tolist() == [4, 5, 6]
    # target = metric / max metric of the GT * max IoU of its positives (1)
    assert tscores[0, [4, 5, 6], 1].tolist() == pytest.approx([0.5 / 0.7, 0.6 / 0.7, 1.0])
    assert tscores[0, :, 0].sum() == 0 and (labels[0, fg[0]] == 1).all() and (labels[0, ~fg[0]] == 2).all()
    assert torch.equal(boxes[0, 4], torch.tensor(gt, dtype=torch.float64))

    # every prediction IoU 0.5: same ranking (0.8, 0.7, 0.6), scores scaled by the best IoU 0.5
    preds[0, :] = torch.tensor([0.0, 0.0, 32.0, 8.0])
    _, _, tscores, fg = TaskAlignedAssigner(2, topk=3)(scores, preds, POINTS, *batch([(1, gt)]))
    assert fg[0].nonzero()[:, 0].tolist() == [5, 6, 7]
    assert tscores[0, [5, 6, 7], 1].tolist() == pytest.approx([0.6 / 0.8 * 0.5, 0.7 / 0.8 * 0.5, 0.5])


def test_conflict_goes_to_highest_iou():
    a, b = (0.0, 0.0, 32.0, 16.0), (0.0, 0.0, 16.0, 32.0)  # both contain points 0, 1, 4, 5
    scores = torch.full((1, A, 2), 0.5, dtype=torch.float64)
    preds = torch.tensor([0.0, 0.0, 16.0, 16.0], dtype=torch.float64).repeat(1, A, 1)
    preds[0, 0] = torch.tensor(b)                 # IoU with B 1, with A 1/3 -> B
    preds[0, 1] = torch.tensor([0, 0, 20.0, 16])  # IoU with A 320/512 = 0.625, with B 256/576 = 0.444 -> A
    preds[0, 4] = torch.tensor([0, 0, 16.0, 20])  # the mirror case -> B
    preds[0, 5] = torch.tensor(a)                 # -> A
    labels, boxes, tscores, fg = TaskAlignedAssigner(2, topk=16)(scores, preds, POINTS, *batch([(1, a), (0, b)]))
    owner_a, owner_b = [1, 2, 3, 5, 6, 7], [0, 4, 8, 9, 12, 13]
    assert fg[0].nonzero()[:, 0].tolist() == sorted(owner_a + owner_b)
    assert (labels[0, owner_a] == 1).all() and (labels[0, owner_b] == 0).all()
    assert torch.equal(boxes[0, 0], torch.tensor(b, dtype=torch.float64))
    # each anchor has exactly one non-zero class target
    assert ((tscores[0] > 0).sum(-1) == fg[0].long()).all()


def test_boundary_points_are_not_candidates():
    gt = (12.0, 4.0, 28.0, 12.0)  # the edges pass through points (12, *), (28, *), (*, 4), (*, 12)
    scores = torch.full((1, A, 2), 0.5, dtype=torch.float64)
    preds = torch.tensor(gt, dtype=torch.float64).repeat(1, A, 1)
    *_, fg = TaskAlignedAssigner(2)(scores, preds, POINTS, *batch([(0, gt)]))
    assert not fg.any()
    *_, fg = TaskAlignedAssigner(2)(scores, preds, POINTS, *batch([(0, (11.99, 3.99, 28.0, 12.0))]))
    assert fg[0].nonzero()[:, 0].tolist() == [1, 2]  # (12, 4) and (20, 4)


def test_empty_image_and_empty_batch():
    scores = torch.rand(2, A, 3, dtype=torch.float64)
    preds = torch.tensor([0.0, 0.0, 32.0, 32.0], dtype=torch.float64).repeat(2, A, 1)
    boxes = torch.tensor([[[0.0, 0, 32, 32]], [[1.0, 1, 31, 31]]], dtype=torch.float64)
    mask = torch.tensor([[[True]], [[False]]])
    labels, tboxes, tscores, fg = TaskAlignedAssigner(3)(scores, preds, POINTS, torch.tensor([[[1]], [[9]]]),
                                                         boxes, mask)
    assert fg[0].sum() == 13 and not fg[1].any() and (labels[1] == 3).all() and tscores[1].sum() == 0
    out = TaskAlignedAssigner(3)(scores, preds, POINTS, torch.zeros(2, 0, 1, dtype=torch.long),
                                 torch.zeros(2, 0, 4, dtype=torch.float64), torch.zeros(2, 0, 1, dtype=torch.bool))
    assert not out[3].any() and (out[0] == 3).all() and out[2].shape == (2, A, 3)


def test_matches_loop_reference_on_random_batches():
    points, _ = make_anchors([(8, 8), (4, 4), (2, 2)], [8, 16, 32], dtype=torch.float64)
    boxes, classes, mask, scores, preds = random_batch(1, points, b=3, n=4, nc=5, min_side=6, spread=12)
    mask[0, 2:] = False
    out = TaskAlignedAssigner(5, topk=5)(scores, preds, points, classes, boxes, mask)
    assert_matches_reference(out, classes, boxes, mask, lambda i, gts: tal_reference(
        points.tolist(), scores[i].tolist(), preds[i].tolist(), gts, topk=5))
