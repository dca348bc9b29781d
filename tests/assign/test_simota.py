"""SimOTA assigner: dynamic k, centre prior, lowest-cost conflicts, empty images, loop reference."""
from __future__ import annotations

import math

import pytest
import torch
from assign_reference import assert_matches_reference, random_batch
from assign_reference import simota as simota_reference

from repyolo.assign import SimOTAAssigner
from repyolo.ops.boxes import make_anchors

# one 8x8 level of stride 8 (a 64 x 64 image); point index = row * 8 + col, points at 4, 12, ..., 60
POINTS, STRIDES = make_anchors([(8, 8)], [8], dtype=torch.float64)
A = 64
GT = (8.0, 8.0, 40.0, 40.0)  # centre (24, 24); prior = points 12..36 on both axes (|p - 24| < 20, inside)
FAR = (60.0, 60.0, 61.0, 61.0)  # a prediction with IoU 0


def idx(x, y):
    return int(y // 8) * 8 + int(x // 8)


def batch(gts):
    labels = torch.tensor([[[c] for c, _ in gts]], dtype=torch.long).reshape(1, len(gts), 1)
    boxes = torch.tensor([[b for _, b in gts]], dtype=torch.float64).reshape(1, len(gts), 4)
    return labels, boxes, torch.ones(1, len(gts), 1, dtype=torch.bool)


def test_dynamic_k_and_centre_prior():
    scores = torch.full((1, A, 2), 0.5, dtype=torch.float64)  # equal class cost everywhere
    preds = torch.tensor(FAR, dtype=torch.float64).repeat(1, A, 1)
    preds[0, idx(20, 20)] = torch.tensor(GT)                      # IoU 1
    preds[0, idx(28, 20)] = torch.tensor([8.0, 8.0, 40.0, 36.8])  # IoU 921.6 / 1024 = 0.9
    preds[0, idx(20, 28)] = torch.tensor([8.0, 8.0, 40.0, 35.2])  # IoU 0.85
    preds[0, idx(4, 4)] = torch.tensor(GT)  # a perfect box at (4, 4), outside the prior: ignored
    # k = int(1 + 0.9 + 0.85) = 2 -> the two cheapest (highest IoU) points
    labels, boxes, tscores, fg = SimOTAAssigner(2)(scores, preds, POINTS, *batch([(1, GT)]), strides=STRIDES)
    assert fg[0].nonzero()[:, 0].tolist() == sorted([idx(20, 20), idx(28, 20)])
    assert tscores[0, idx(20, 20)].tolist() == pytest.approx([0.0, 1.0])
    assert tscores[0, idx(28, 20)].tolist() == pytest.approx([0.0, 0.9])
    assert (labels[0, fg[0]] == 1).all() and torch.equal(boxes[0, idx(20, 20)], torch.tensor(GT, dtype=torch.float64))


def test_dynamic_k_is_at_least_one():
    scores = torch.full((1, A, 2), 0.5, dtype=torch.float64)
    scores[0, idx(28, 28), 1] = 0.9  # the cheapest class cost -> the one positive
    preds = torch.tensor(FAR, dtype=torch.float64).repeat(1, A, 1)  # all IoUs 0 -> k = max(1, 0) = 1
    _, _, tscores, fg = SimOTAAssigner(2)(scores, preds, POINTS, *batch([(1, GT)]), strides=STRIDES)
    assert fg[0].nonzero()[:, 0].tolist() == [idx(28, 28)]
    assert tscores.sum() == 0  # one-hot x IoU 0


def test_conflict_goes_to_lowest_cost():
    # two GTs on the same box; each has k = 1 and both want the point whose prediction is perfect
    scores = torch.full((1, A, 2), 0.5, dtype=torch.float64)
    scores[0, idx(20, 20)] = torch.tensor([0.9, 0.1])
    preds = torch.tensor(FAR, dtype=torch.float64).repeat(1, A, 1)
    preds[0, idx(20, 20)] = torch.tensor(GT)
    # cost with GT 0 (class 1): -log 0.1 - log 0.1 = 4.61; with GT 1 (class 0): -log 0.9 - log 0.9 = 0.21
    assigner = SimOTAAssigner(2)
    cost = assigner.cost(scores, torch.ones(1, 2, A, dtype=torch.float64), torch.tensor([[[1], [0]]]))
    assert cost[0, :, idx(20, 20)].tolist() == pytest.approx([-2 * math.log(0.1), -2 * math.log(0.9)])
    labels, boxes, tscores, fg = assigner(scores, preds, POINTS, *batch([(1, GT), (0, GT)]), strides=STRIDES)
    assert fg[0].nonzero()[:, 0].tolist() == [idx(20, 20)]
    assert labels[0, idx(20, 20)] == 0 and tscores[0, idx(20, 20)].tolist() == pytest.approx([1.0, 0.0])


def test_class_cost_equals_summed_bce():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(2, 7, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (2, 3, 1), generator=g)
    cost = SimOTAAssigner(5, iou_weight=0.0).cost(p, torch.ones(2, 3, 7, dtype=torch.float64), labels)
    onehot = torch.nn.functional.one_hot(labels[..., 0], 5).double()[:, :, None, :]  # (2, 3, 1, 5)
    bce = torch.nn.functional.binary_cross_entropy(p[:, None].expand(-1, 3, -1, -1), onehot.expand(-1, -1, 7, -1),
                                                   reduction="none").sum(-1)
    assert torch.allclose(cost, bce)


def test_boundary_points_are_not_in_the_box():
    # a 16x6 box whose left, right and top edges pass through points: no point is strictly inside,
    # so every point of the prior is "in the centre region only" and pays the big cost
    gt = (12.0, 4.0, 28.0, 10.0)
    scores = torch.full((1, A, 2), 0.5, dtype=torch.float64)
    preds = torch.tensor(gt, dtype=torch.float64).repeat(1, A, 1)  # IoU 1 everywhere -> k = 10
    _, _, _, fg = SimOTAAssigner(2)(scores, preds, POINTS, *batch([(0, gt)]), strides=STRIDES)
    assert fg.sum() == 10
    # grown by 0.01 px, (12, 4) and (20, 4) are strictly inside (and in the centre): the cheapest two
    gt2 = (11.99, 3.99, 28.0, 10.0)
    preds2 = torch.tensor(gt2, dtype=torch.float64).repeat(1, A, 1)  # k = 2 (top-2 IoUs of 1)
    _, _, _, fg2 = SimOTAAssigner(2, candidate_topk=2)(scores, preds2, POINTS, *batch([(0, gt2)]), strides=STRIDES)
    assert fg2[0].nonzero()[:, 0].tolist() == [idx(12, 4), idx(20, 4)]


def test_empty_image_and_empty_batch():
    scores = torch.rand(2, A, 3, dtype=torch.float64)
    preds = torch.tensor(GT, dtype=torch.float64).repeat(2, A, 1)
    boxes = torch.tensor([[GT], [GT]], dtype=torch.float64)
    mask = torch.tensor([[[True]], [[False]]])
    labels, _, tscores, fg = SimOTAAssigner(3)(scores, preds, POINTS, torch.tensor([[[1]], [[1]]]), boxes, mask,
                                               strides=STRIDES)
    assert fg[0].any() and not fg[1].any() and (labels[1] == 3).all() and tscores[1].sum() == 0
    out = SimOTAAssigner(3)(scores, preds, POINTS, torch.zeros(2, 0, 1, dtype=torch.long),
                            torch.zeros(2, 0, 4, dtype=torch.float64), torch.zeros(2, 0, 1, dtype=torch.bool),
                            strides=STRIDES)
    assert not out[3].any() and (out[0] == 3).all()


def test_float32_scores_of_one_stay_finite():
    scores = torch.ones(1, A, 2)
    preds = torch.tensor(GT).repeat(1, A, 1)
    labels, boxes, mask = batch([(1, GT)])
    _, _, tscores, fg = SimOTAAssigner(2)(scores, preds, POINTS.float(), labels, boxes.float(), mask,
                                          strides=STRIDES.float())
    assert fg.sum() == 10 and torch.isfinite(tscores).all()


def test_matches_loop_reference_on_random_batches():
    points, strides = make_anchors([(8, 8), (4, 4), (2, 2)], [8, 16, 32], dtype=torch.float64)
    boxes, classes, mask, scores, preds = random_batch(2, points, b=3, n=4, nc=3, min_side=4, spread=14)
    mask[2, 1:] = False
    scores = scores * 0.98 + 0.01
    out = SimOTAAssigner(3)(scores, preds, points, classes, boxes, mask, [64, 16, 4], [8, 16, 32])
    assert_matches_reference(out, classes, boxes, mask, lambda i, gts: simota_reference(
        points.tolist(), strides.view(-1).tolist(), scores[i].tolist(), preds[i].tolist(), gts), check_boxes=False)
