"""VariFocal, Focal, Quality Focal, Poly-1 and BCE: hand-computed values, stability, gradients."""
from __future__ import annotations

import math

import pytest
import torch

from repyolo.loss.vfl import (
    CLS_LOSSES,
    ClassificationLoss,
    bce_loss,
    focal_loss,
    poly1_loss,
    quality_focal_loss,
    varifocal_loss,
)

LOG2 = math.log(2)


def d(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_varifocal_hand_values():
    # logit 0 -> p = 0.5, BCE(0.5, q) = log 2 for any q
    # positive with q = 0.8: weight q -> 0.8 log 2; negative: weight 0.75 * 0.5^2 = 0.1875
    loss = varifocal_loss(d(0.0, 0.0), d(0.8, 0.0), reduction="none")
    assert loss.tolist() == pytest.approx([0.8 * LOG2, 0.1875 * LOG2])
    # logit log(3) -> p = 0.75; negative: 0.75 * 0.75^2 * -log(0.25)
    assert float(varifocal_loss(d(math.log(3)), d(0.0))) == pytest.approx(0.75 * 0.5625 * math.log(4))
    # positive q = 0.6, p = 0.75: 0.6 * -(0.6 log .75 + 0.4 log .25)
    expected = 0.6 * -(0.6 * math.log(0.75) + 0.4 * math.log(0.25))
    assert float(varifocal_loss(d(math.log(3)), d(0.6))) == pytest.approx(expected)


def test_varifocal_labels_override_positive_mask():
    # a positive anchor whose target score is 0 (IoU 0): with labels it is weighted by q = 0 -> no loss
    assert float(varifocal_loss(d(1.0), d(0.0), labels=d(1.0))) == 0.0
    assert float(varifocal_loss(d(1.0), d(0.0))) > 0


def test_focal_hand_values():
    # p = 0.5: positive 0.25 * 0.5^2 * log 2, negative 0.75 * 0.5^2 * log 2
    assert focal_loss(d(0.0, 0.0), d(1.0, 0.0), reduction="none").tolist() == pytest.approx(
        [0.0625 * LOG2, 0.1875 * LOG2])
    # p = 0.75 positive: 0.25 * 0.25^2 * -log 0.75
    assert float(focal_loss(d(math.log(3)), d(1.0))) == pytest.approx(0.25 * 0.0625 * -math.log(0.75))
    # gamma 0, no alpha -> plain BCE
    assert float(focal_loss(d(0.3), d(1.0), alpha=-1, gamma=0)) == pytest.approx(float(bce_loss(d(0.3), d(1.0))))


def test_quality_focal_hand_values():
    assert float(quality_focal_loss(d(0.0), d(0.8))) == pytest.approx(0.09 * LOG2)
    # p = 0.75, q = 0.75: BCE is the entropy, modulating factor 0 -> loss 0
    assert float(quality_focal_loss(d(math.log(3)), d(0.75))) == pytest.approx(0.0)


def test_poly1_hand_values():
    assert float(poly1_loss(d(0.0), d(1.0))) == pytest.approx(LOG2 + 0.5)
    assert float(poly1_loss(d(math.log(3)), d(0.0), epsilon=2.0)) == pytest.approx(math.log(4) + 2 * 0.75)


def test_reductions():
    x, q = d(0.1, -0.4, 2.0), d(0.3, 0.0, 0.9)
    per = varifocal_loss(x, q, reduction="none")
    assert float(varifocal_loss(x, q)) == pytest.approx(float(per.sum()))
    assert float(varifocal_loss(x, q, reduction="mean")) == pytest.approx(float(per.mean()))
    with pytest.raises(ValueError):
        varifocal_loss(x, q, reduction="max")


@pytest.mark.parametrize("fn", [varifocal_loss, focal_loss, quality_focal_loss, poly1_loss, bce_loss])
def test_large_logits_are_stable(fn):
    logits = torch.tensor([-200.0, -50.0, 0.0, 50.0, 200.0], requires_grad=True)
    targets = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0])
    loss = fn(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # confident and right costs ~0, confident and wrong costs ~|logit|
    assert float(fn(torch.tensor([200.0]), torch.tensor([1.0]))) < 1e-6
    assert float(bce_loss(torch.tensor([-200.0]), torch.tensor([1.0]))) == pytest.approx(200.0)


@pytest.mark.parametrize("fn", [varifocal_loss, focal_loss, quality_focal_loss, poly1_loss, bce_loss])
def test_gradcheck(fn):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(4, 3, generator=g, dtype=torch.float64) * 2).requires_grad_()
    targets = torch.rand(4, 3, generator=g, dtype=torch.float64)
    targets[targets < 0.4] = 0
    if fn in (focal_loss,):
        targets = (targets > 0).double()
    assert torch.autograd.gradcheck(lambda x: fn(x, targets, reduction="none"), (logits,))


@pytest.mark.parametrize("name", CLS_LOSSES)
def test_classification_loss_by_name(name):
    logits = torch.zeros(1, 2, 3)
    scores = torch.tensor([[[0.0, 0.7, 0.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    value = ClassificationLoss(name)(logits, scores, labels)
    assert value.dim() == 0 and float(value) > 0
    with pytest.raises(ValueError, match="classification loss"):
        ClassificationLoss("softmax")
