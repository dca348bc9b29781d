"""ATSS assigner: hand-worked cases, the boundary rule, conflicts, empty images, and a loop reference."""
from __future__ import annotations

import statistics

import pytest
import torch
from assign_reference import atss as atss_reference

from repyolo.assign import ATSSAssigner
from repyolo.ops.boxes import make_anchors

# a 64 x 64 image: levels 8x8 (stride 8), 4x4 (16), 2x2 (32) -> 84 anchor points
LEVELS, STRIDES = [64, 16, 4], [8, 16, 32]
POINTS, STRIDE_T = make_anchors([(8, 8), (4, 4), (2, 2)], STRIDES, dtype=torch.float64)


def idx(x, y, stride=8, width=8):
    """Index of the stride-8 anchor point at pixel (x, y)."""
    return int((y // stride) * width + x // stride)


def run(gts, nc=2, preds=None, assigner=None):
    """gts: list of (class, (x1, y1, x2, y2)) for one image."""
    labels = torch.tensor([[[c] for c, _ in gts]], dtype=torch.long).reshape(1, len(gts), 1)
    boxes = torch.tensor([[b for _, b in gts]], dtype=torch.float64).reshape(1, len(gts), 4)
    mask = torch.ones(1, len(gts), 1, dtype=torch.bool)
    scores = torch.full((1, len(POINTS), nc), 0.5, dtype=torch.float64)
    assigner = assigner or ATSSAssigner(nc)
    return assigner(scores, preds, POINTS, labels, boxes, mask, LEVELS, STRIDES)


def positives(fg_mask, labels, b=0):
    return {int(a): int(labels[b, a]) for a in fg_mask[b].nonzero()[:, 0]}


def test_hand_worked_two_boxes():
    # GT0 24x24 centred on a stride-8 grid corner (32, 32). Its 22 candidates:
    #   level 8: the 4 points around the centre, anchor boxes 40x40 contain the GT: IoU 576/1600 = 0.36;
    #            5 of the 8 next-ring points (tie), e.g. (20, 28): box [0,40]x[8,48], inter 20*24 = 480,
    #            IoU 480 / (1600 + 576 - 480) = 0.2830
    #   level 16: all 16 points (k = 9 of them), boxes 80x80 contain the GT: 576/6400 = 0.09
    #   level 32: all 4 points, 576/25600 = 0.0225
    ious = [0.36] * 4 + [480 / 1696] * 5 + [0.09] * 9 + [0.0225] * 4
    threshold = statistics.mean(ious) + statistics.stdev(ious)
    assert 480 / 1696 < threshold < 0.36  # only the 4 central points pass
    # GT1 24x16 centred at (16, 12): the two points (12, 12), (20, 12) whose boxes contain it
    fg_labels, _, scores, fg = run([(1, (20.0, 20.0, 44.0, 44.0)), (0, (4.0, 4.0, 28.0, 20.0))])
    expected = {idx(28, 28): 1, idx(36, 28): 1, idx(28, 36): 1, idx(36, 36): 1, idx(12, 12): 0, idx(20, 12): 0}
    assert positives(fg, fg_labels) == expected
    # one-hot targets without predictions, background label nc and zero scores elsewhere
    assert torch.equal(scores[0, idx(28, 28)], torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert (fg_labels[~fg] == 2).all() and scores[~fg].sum() == 0


def test_points_on_the_boundary_are_not_inside():
    # an 8x8 GT whose corners are exactly the 4 nearest anchor points: none is strictly inside
    *_, fg = run([(0, (12.0, 12.0, 20.0, 20.0))])
    assert not fg.any()
    # grown by 0.01 px the same 4 points are inside and become the positives
    labels, _, _, fg = run([(0, (11.99, 11.99, 20.01, 20.01))])
    assert positives(fg, labels) == {idx(12, 12): 0, idx(20, 12): 0, idx(12, 20): 0, idx(20, 20): 0}


def test_conflict_goes_to_highest_iou():
    a, b = (8.0, 8.0, 40.0, 40.0), (16.0, 16.0, 48.0, 40.0)
    fg_a, fg_b = run([(0, a)])[3], run([(1, b)])[3]
    shared = set(fg_a[0].nonzero()[:, 0].tolist()) & set(fg_b[0].nonzero()[:, 0].tolist())
    # (28, 20) and (28, 28): their 40x40 anchor boxes contain both GTs -> IoU 1024/1600 = 0.64 with A,
    # 768/1600 = 0.48 with B -> both go to A
    assert shared == {idx(28, 20), idx(28, 28)}
    labels, boxes, _, fg = run([(0, a), (1, b)])
    for anchor in shared:
        assert labels[0, anchor] == 0
        assert torch.equal(boxes[0, anchor], torch.tensor(a, dtype=torch.float64))
    assert fg.sum() == fg_a.sum() + fg_b.sum() - len(shared)


def test_iou_weighted_scores_use_the_prediction():
    gt = (20.0, 20.0, 44.0, 44.0)
    preds = torch.zeros(1, len(POINTS), 4, dtype=torch.float64)
    preds[0, :] = torch.tensor([20.0, 20.0, 44.0, 32.0], dtype=torch.float64)  # IoU 0.5 with the GT
    preds[0, idx(28, 28)] = torch.tensor(gt, dtype=torch.float64)  # IoU 1
    labels, _, scores, fg = run([(1, gt)], preds=preds)
    assert scores[0, idx(28, 28)].tolist() == pytest.approx([0.0, 1.0])
    assert scores[0, idx(36, 36)].tolist() == pytest.approx([0.0, 0.5])
    # the flag off: plain one-hot even with predictions
    *_, scores_plain, _ = run([(1, gt)], preds=preds, assigner=ATSSAssigner(2, iou_weighted=False))
    assert scores_plain[0, idx(36, 36)].tolist() == [0.0, 1.0]


def test_empty_image_and_empty_batch():
    b, a, nc = 2, len(POINTS), 3
    scores = torch.rand(b, a, nc, dtype=torch.float64)
    gt_boxes = torch.tensor([[[20.0, 20, 44, 44]], [[5.0, 5, 30, 30]]], dtype=torch.float64)  # image 1's is padding
    gt_labels = torch.tensor([[[2]], [[7]]])  # junk class in the padded slot must not matter
    mask = torch.tensor([[[True]], [[False]]])
    labels, boxes, tscores, fg = ATSSAssigner(nc)(scores, None, POINTS, gt_labels, gt_boxes, mask, LEVELS, STRIDES)
    assert fg[0].sum() == 4 and not fg[1].any()
    assert (labels[1] == nc).all() and boxes[1].abs().sum() == 0 and tscores[1].sum() == 0
    # n_max = 0 for the whole batch
    empty = torch.zeros(b, 0, 4, dtype=torch.float64)
    labels, boxes, tscores, fg = ATSSAssigner(nc)(scores, None, POINTS, torch.zeros(b, 0, 1, dtype=torch.long),
                                                 empty, torch.zeros(b, 0, 1, dtype=torch.bool), LEVELS, STRIDES)
    assert labels.shape == (b, a) and (labels == nc).all() and not fg.any()
    assert boxes.shape == (b, a, 4) and tscores.shape == (b, a, nc) and tscores.sum() == 0


def test_per_anchor_strides_accepted():
    gts = [(1, (20.0, 20.0, 44.0, 44.0))]
    labels = torch.tensor([[[1]]])
    boxes = torch.tensor([[gts[0][1]]], dtype=torch.float64)
    mask = torch.ones(1, 1, 1, dtype=torch.bool)
    scores = torch.zeros(1, len(POINTS), 2, dtype=torch.float64)
    fg_list = ATSSAssigner(2)(scores, None, POINTS, labels, boxes, mask, LEVELS, STRIDES)[3]
    fg_tensor = ATSSAssigner(2)(scores, None, POINTS, labels, boxes, mask, LEVELS, STRIDE_T)[3]
    assert torch.equal(fg_list, fg_tensor)


def test_matches_loop_reference_on_random_batches():
    g = torch.Generator().manual_seed(0)
    b, n, nc = 3, 5, 4
    xy = torch.rand(b, n, 2, generator=g, dtype=torch.float64) * 48
    wh = torch.rand(b, n, 2, generator=g, dtype=torch.float64) * 40 + 4
    boxes = torch.cat((xy, (xy + wh).clamp(max=64)), -1)
    classes = torch.randint(0, nc, (b, n, 1), generator=g)
    mask = torch.ones(b, n, 1, dtype=torch.bool)
    mask[1, 3:] = False
    mask[2] = False
    scores = torch.rand(b, len(POINTS), nc, generator=g, dtype=torch.float64)
    labels, tboxes, _, fg = ATSSAssigner(nc)(scores, None, POINTS, classes, boxes, mask, LEVELS, STRIDES)
    for i in range(b):
        gts = [(int(classes[i, j, 0]), boxes[i, j].tolist()) for j in range(n) if mask[i, j, 0]]
        ref = atss_reference(POINTS.tolist(), STRIDE_T.view(-1).tolist(), LEVELS, gts) if gts else {}
        assert set(fg[i].nonzero()[:, 0].tolist()) == set(ref)
        for a, (j, _) in ref.items():
            assert labels[i, a] == gts[j][0]
            assert tboxes[i, a].tolist() == pytest.approx(gts[j][1])


def test_bad_shapes_raise_value_error():
    with pytest.raises(ValueError, match="num_anchors_per_level"):
        ATSSAssigner(2)(torch.zeros(1, 84, 2), None, POINTS.float(), torch.zeros(1, 1, 1, dtype=torch.long),
                        torch.zeros(1, 1, 4), torch.ones(1, 1, 1), [64, 16], STRIDES)
    with pytest.raises(ValueError, match="gt_bboxes"):
        ATSSAssigner(2)(torch.zeros(1, 84, 2), None, POINTS.float(), torch.zeros(1, 1, 1, dtype=torch.long),
                        torch.zeros(1, 1, 5), torch.ones(1, 1, 1), LEVELS, STRIDES)


def test_explicit_anchor_boxes():
    gts = [(1, (20.0, 20.0, 44.0, 44.0)), (0, (4.0, 4.0, 28.0, 20.0))]
    half = 2.5 * STRIDE_T
    squares = torch.cat((POINTS - half, POINTS + half), 1)
    labels = torch.tensor([[[1], [0]]])
    boxes = torch.tensor([[b for _, b in gts]], dtype=torch.float64)
    mask = torch.ones(1, 2, 1, dtype=torch.bool)
    scores = torch.zeros(1, len(POINTS), 2, dtype=torch.float64)
    default = ATSSAssigner(2)(scores, None, POINTS, labels, boxes, mask, LEVELS, STRIDES)
    explicit = ATSSAssigner(2)(scores, None, POINTS, labels, boxes, mask, LEVELS, STRIDES, anchor_boxes=squares)
    assert all(torch.equal(x, y) for x, y in zip(default, explicit))
    # tall thin anchors (8 x 40) at every point: the 24x16 (wide) GT1 now matches fewer / other points
    tall = torch.cat((POINTS - torch.tensor([4.0, 20.0]), POINTS + torch.tensor([4.0, 20.0])), 1)
    other = ATSSAssigner(2)(scores, None, POINTS, labels, boxes, mask, LEVELS, STRIDES, anchor_boxes=tall)
    assert not torch.equal(other[3], default[3])
    with pytest.raises(ValueError, match="anchor_boxes"):
        ATSSAssigner(2)(scores, None, POINTS, labels, boxes, mask, LEVELS, STRIDES, anchor_boxes=tall[:5])
