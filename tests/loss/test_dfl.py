"""Distribution Focal Loss: on-bin and between-bin targets, clamping, gradients."""
from __future__ import annotations

import math

import pytest
import torch

from repyolo.loss.dfl import distribution_focal_loss
from repyolo.ops.boxes import dfl_decode


def test_target_on_a_bin_is_its_cross_entropy():
    logits = torch.randn(17, dtype=torch.float64)
    log_p = torch.log_softmax(logits, -1)
    assert float(distribution_focal_loss(logits, torch.tensor(3.0))) == pytest.approx(float(-log_p[3]))
    assert float(distribution_focal_loss(logits, torch.tensor(0.0))) == pytest.approx(float(-log_p[0]))


def test_target_between_bins_interpolates_the_two_neighbours():
    logits = torch.randn(17, dtype=torch.float64)
    log_p = torch.log_softmax(logits, -1)
    value = float(distribution_focal_loss(logits, torch.tensor(3.25)))
    assert value == pytest.approx(float(-(0.75 * log_p[3] + 0.25 * log_p[4])))
    # uniform logits: every bin has p = 1/17 -> loss log 17 wherever the target is
    assert float(distribution_focal_loss(torch.zeros(17), torch.tensor(7.6))) == pytest.approx(math.log(17))


def test_target_near_reg_max_uses_the_last_bin():
    logits = torch.randn(5, 17, dtype=torch.float64)
    log_p = torch.log_softmax(logits, -1)
    loss = distribution_focal_loss(logits, torch.full((5,), 15.99, dtype=torch.float64))
    expected = -(0.01 * log_p[:, 15] + 0.99 * log_p[:, 16])
    assert torch.allclose(loss, expected)
    # beyond the range: clamped, no index error
    assert torch.isfinite(distribution_focal_loss(logits, torch.full((5,), 40.0, dtype=torch.float64))).all()


def test_minimum_puts_the_expectation_on_the_target():
    logits = torch.zeros(17, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=1.0)
    for _ in range(300):
        opt.zero_grad()
        distribution_focal_loss(logits, torch.tensor(5.3)).backward()
        opt.step()
    assert float(dfl_decode(logits.detach().repeat(4))[0]) == pytest.approx(5.3, abs=0.05)


def test_gradcheck():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 9, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 3, generator=g, dtype=torch.float64) * 7.99
    assert torch.autograd.gradcheck(lambda x: distribution_focal_loss(x, target), (logits,))
