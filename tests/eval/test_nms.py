"""Acceptance 3: the vectorized NMS keeps exactly what a plain greedy Python NMS keeps."""
from __future__ import annotations

import pytest
import torch

from repyolo.ops.nms import nms
from repyolo.ops.postprocess import non_max_suppression


def greedy_reference(boxes, scores, iou_thres, classes=None):
    """Textbook greedy NMS, one box at a time, in plain Python."""
    b, s = boxes.tolist(), scores.tolist()
    c = classes.tolist() if classes is not None else None
    order = sorted(range(len(s)), key=lambda i: (-s[i], i))

    def iou(p, q):
        iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
        ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
        inter = iw * ih
        union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
        return inter / union if union > 0 else 0.0

    keep = []
    for i in order:
        if all((c is not None and c[i] != c[k]) or iou(b[i], b[k]) <= iou_thres for k in keep):
            keep.append(i)
    return keep


def random_boxes(g, n, span=300.0, max_wh=80.0):
    xy = torch.rand(n, 2, generator=g) * span
    wh = torch.rand(n, 2, generator=g) * max_wh + 1
    return torch.cat((xy, xy + wh), 1)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("aware", [False, True])
def test_nms_matches_greedy_reference(seed, aware):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 700, (1,), generator=g))
    boxes = random_boxes(g, n, span=float(torch.randint(50, 600, (1,), generator=g)))
    scores = torch.rand(n, generator=g)
    classes = torch.randint(0, 4, (n,), generator=g) if aware else None
    thr = float(torch.empty(1).uniform_(0.2, 0.8, generator=g))
    ref = greedy_reference(boxes, scores, thr, classes)
    got = nms(boxes, scores, thr, classes, block=int(torch.randint(16, 600, (1,), generator=g)))
    assert got.tolist() == ref
    # the max_det cap keeps the first (highest-scored) boxes of the same greedy result
    assert nms(boxes, scores, thr, classes, max_det=9).tolist() == ref[:9]


def test_nms_long_suppression_chain():
    """A chain where each box only overlaps its neighbours: greedy keeps every other box."""
    x = torch.arange(60, dtype=torch.float32) * 6
    boxes = torch.stack((x, torch.zeros(60), x + 10, torch.full((60,), 10.0)), 1)
    scores = torch.linspace(1, 0.1, 60)
    ref = greedy_reference(boxes, scores, 0.2)
    assert nms(boxes, scores, 0.2, block=7).tolist() == ref == list(range(0, 60, 2))


def test_nms_empty_and_identical():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    boxes = torch.tensor([[0, 0, 10, 10]] * 5, dtype=torch.float32)
    scores = torch.tensor([0.1, 0.9, 0.5, 0.9, 0.3])
    assert nms(boxes, scores, 0.5).tolist() == [1]  # ties: the first index wins (stable order)
    assert nms(boxes, scores, 0.5, classes=torch.tensor([0, 1, 0, 1, 2])).tolist() == [1, 2, 4]


def _reference_postprocess(pred, conf, iou, agnostic, multi_label, max_det):
    boxes, scores = pred[:, :4], pred[:, 4:]
    if multi_label:
        a, c = (scores > conf).nonzero(as_tuple=True)
        s = scores[a, c]
    else:
        s, c = scores.max(1)
        a = (s > conf).nonzero().squeeze(1)
        s, c = s[a], c[a]
    keep = greedy_reference(boxes[a], s, iou, None if agnostic else c)[:max_det]
    return torch.cat((boxes[a][keep], s[keep, None], c[keep, None].float()), 1)


@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("multi_label", [False, True])
def test_non_max_suppression_batched(agnostic, multi_label):
    g = torch.Generator().manual_seed(7)
    B, A, nc = 3, 400, 5
    boxes = random_boxes(g, B * A, span=200).view(B, A, 4)
    scores = torch.rand(B, A, nc, generator=g) ** 3
    pred = torch.cat((boxes, scores), -1)
    pred[1, :, 4:] = 0  # an image without any detection
    out = non_max_suppression(pred, 0.2, 0.5, agnostic=agnostic, multi_label=multi_label, max_det=50)
    assert len(out) == B and out[1].shape == (0, 6)
    for b in range(B):
        ref = _reference_postprocess(pred[b], 0.2, 0.5, agnostic, multi_label, 50)
        torch.testing.assert_close(out[b], ref)
        assert len(out[b]) <= 50
        assert (out[b][:-1, 4] >= out[b][1:, 4]).all()


def test_non_max_suppression_classes_and_topk_cap():
    g = torch.Generator().manual_seed(3)
    pred = torch.cat((random_boxes(g, 500).view(1, 500, 4), torch.rand(1, 500, 4, generator=g)), -1)
    out = non_max_suppression(pred, 0.1, 0.5, classes=[2, 3])[0]
    assert set(out[:, 5].long().tolist()) <= {2, 3} and len(out)
    capped = non_max_suppression(pred, 0.1, 0.5, max_nms=20, agnostic=True)[0]
    top20 = pred[0, :, 4:].max(1).values.topk(20).values
    assert len(capped) <= 20 and set(capped[:, 4].tolist()) <= set(top20.tolist())
    nan = pred.clone()
    nan[0, 0, :4] = float("nan")
    nan[0, 0, 4:] = 1.0
    assert torch.isfinite(non_max_suppression(nan, 0.1, 0.5)[0]).all()
