"""IoU-family similarities and losses: known values, degenerate boxes, gradients."""
from __future__ import annotations

import math

import pytest
import torch

from repyolo.loss.iou import IoULoss
from repyolo.ops.iou import IOU_TYPES, box_iou, pairwise_iou


def t(*box):
    return torch.tensor(box, dtype=torch.float64)


@pytest.mark.parametrize("iou_type", IOU_TYPES)
def test_identical_boxes_give_one_and_zero_loss(iou_type):
    box = t(3.0, 4.0, 10.0, 7.5)
    assert float(box_iou(box, box, iou_type)) == pytest.approx(1.0, abs=1e-6)
    assert float(IoULoss(iou_type)(box, box)) == pytest.approx(0.0, abs=1e-6)


# box1 [0,0,1,1], box2 [2,0,3,1]: disjoint, enclosing box 3x1, centres 2 apart on x
DISJOINT = {
    "iou": 0.0,
    "giou": -1 / 3,                                # 0 - (3 - 2) / 3
    "diou": -0.4,                                  # 0 - 2^2 / (3^2 + 1^2)
    "ciou": -0.4,                                  # same aspect ratio: v = 0
    "siou": -(1 - math.exp(-2 * 4 / 9)) / 2,       # angle 0 -> gamma 2, rho_x = (2/3)^2, rho_y = 0, shape 0
}
# box1 [0,0,2,2], box2 [1,1,3,3]: inter 1, union 7, enclosing 3x3, centre offset (1, 1)
OVERLAP = {
    "iou": 1 / 7,
    "giou": 1 / 7 - 2 / 9,
    "diou": 1 / 7 - 2 / 18,
    "ciou": 1 / 7 - 2 / 18,
    "siou": 1 / 7 - (1 - math.exp(-1 / 9)),        # 45 degrees -> Lambda 1, gamma 1, rho = 1/9 on both axes
}


@pytest.mark.parametrize("iou_type", IOU_TYPES)
def test_known_values(iou_type):
    assert float(box_iou(t(0, 0, 1, 1), t(2, 0, 3, 1), iou_type)) == pytest.approx(DISJOINT[iou_type], abs=1e-6)
    assert float(box_iou(t(0, 0, 2, 2), t(1, 1, 3, 3), iou_type)) == pytest.approx(OVERLAP[iou_type], abs=1e-6)
    loss = IoULoss(iou_type)(t(0, 0, 2, 2), t(1, 1, 3, 3))
    assert float(loss) == pytest.approx(1 - OVERLAP[iou_type], abs=1e-6)


def test_ciou_aspect_term():
    b1, b2 = t(0, 0, 2, 1), t(0, 0, 1, 2)  # inter 1, union 3, centres (1, .5) / (.5, 1), enclosing 2x2
    iou = 1 / 3
    v = 4 / math.pi ** 2 * (math.atan(1 / 2) - math.atan(2)) ** 2
    alpha = v / (1 - iou + v)
    assert float(box_iou(b1, b2, "ciou")) == pytest.approx(iou - 0.5 / 8 - alpha * v, abs=1e-6)


def test_siou_shape_cost():
    # same centre, box1 4x2 inside box2 4x4: IoU 0.5, no distance cost, omega_h = 2/4
    value = box_iou(t(0, 1, 4, 3), t(0, 0, 4, 4), "siou")
    assert float(value) == pytest.approx(0.5 - (1 - math.exp(-0.5)) ** 4 / 2, abs=1e-6)


def test_siou_angle_cost_closed_form_matches_the_paper():
    # paper: Lambda = 1 - 2 sin^2(arcsin(x) - pi/4), x = sin of the angle to the nearer axis
    g = torch.Generator().manual_seed(0)
    b1 = torch.rand(200, 4, generator=g, dtype=torch.float64) * 10
    b1[:, 2:] += b1[:, :2]
    shift = (torch.rand(200, 2, generator=g, dtype=torch.float64) - 0.5) * 6
    b2 = b1 + shift.repeat(1, 2)  # same size: no shape cost, only IoU, angle and distance
    dx, dy = shift.unbind(-1)
    sigma = torch.sqrt(dx ** 2 + dy ** 2)
    x = torch.minimum(dx.abs(), dy.abs()) / sigma
    angle = 1 - 2 * torch.sin(torch.arcsin(x) - math.pi / 4) ** 2
    cw = torch.maximum(b1[:, 2], b2[:, 2]) - torch.minimum(b1[:, 0], b2[:, 0])
    ch = torch.maximum(b1[:, 3], b2[:, 3]) - torch.minimum(b1[:, 1], b2[:, 1])
    gamma = 2 - angle
    dist = 2 - torch.exp(-gamma * (dx / cw) ** 2) - torch.exp(-gamma * (dy / ch) ** 2)
    expected = box_iou(b1, b2, "iou") - dist / 2
    assert torch.allclose(box_iou(b1, b2, "siou"), expected, atol=1e-6)


@pytest.mark.parametrize("iou_type", IOU_TYPES)
def test_degenerate_boxes_are_finite(iou_type):
    pred = torch.tensor([[2.0, 2.0, 2.0, 6.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 4.0, 4.0]], requires_grad=True)
    target = torch.tensor([[1.0, 1.0, 5.0, 5.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 4.0]])
    loss = IoULoss(iou_type)(pred, target)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(pred.grad).all()


def random_boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 4
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 4 + 0.5
    return torch.cat((xy, xy + wh), -1)


@pytest.mark.parametrize("iou_type", ["iou", "giou", "diou", "siou"])
def test_gradcheck(iou_type):
    pred, target = random_boxes(6, 1).requires_grad_(), random_boxes(6, 2)
    assert torch.autograd.gradcheck(lambda p: box_iou(p, target, iou_type), (pred,))
    assert torch.autograd.gradcheck(lambda p, q: box_iou(p, q, iou_type), (pred, target.clone().requires_grad_()))


def test_ciou_gradient_treats_alpha_as_constant():
    pred, target = random_boxes(6, 3).requires_grad_(), random_boxes(6, 4)
    box_iou(pred, target, "ciou").sum().backward()
    # against the gradient of DIoU - alpha * v with alpha frozen at its current value

    def aspect(p):
        return torch.atan((p[:, 2] - p[:, 0]) / (p[:, 3] - p[:, 1]))

    def v(p):
        return 4 / math.pi ** 2 * (aspect(target) - aspect(p)) ** 2

    with torch.no_grad():
        iou = box_iou(pred, target, "iou")
        alpha = v(pred) / (1 - iou + v(pred))

    def frozen(p):
        return (box_iou(p, target, "diou") - alpha * v(p)).sum()

    p = pred.detach().clone().requires_grad_()
    frozen(p).backward()
    assert torch.allclose(pred.grad, p.grad, atol=1e-6)


def test_unknown_type_and_reductions():
    with pytest.raises(ValueError, match="iou_type"):
        box_iou(t(0, 0, 1, 1), t(0, 0, 1, 1), "eiou")
    pred, target = random_boxes(5, 5), random_boxes(5, 6)
    per_box = IoULoss("giou")(pred, target)
    weight = torch.arange(5, dtype=torch.float64)
    assert float(IoULoss("giou", "sum")(pred, target, weight)) == pytest.approx(float((per_box * weight).sum()))
    assert float(IoULoss("giou", "mean")(pred, target)) == pytest.approx(float(per_box.mean()))


def test_box_iou_broadcasts_like_a_table():

    a, b = random_boxes(4, 7), random_boxes(5, 8)
    assert torch.allclose(box_iou(a[:, None], b[None]), pairwise_iou(a, b))
    assert torch.allclose(box_iou(a, a), torch.ones(4, dtype=torch.float64))
