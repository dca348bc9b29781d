"""The automatic evaluation schedule of training (repyolo.engine.recipe.eval_epochs)."""
from __future__ import annotations

import pytest

from repyolo.engine.recipe import describe_eval_epochs, eval_epochs


@pytest.mark.parametrize("epochs", [1, 2, 3, 7, 10, 20, 80, 90, 100, 300, 1000])
def test_last_epoch_always_and_every_epoch_near_the_end(epochs):
    ev = eval_epochs(epochs)
    assert ev == sorted(set(ev)) and ev[-1] == epochs and ev[0] >= 1
    tail = -(-epochs // 10)
    assert set(range(epochs - tail + 1, epochs + 1)) <= set(ev)
    gaps = [b - a for a, b in zip([0, *ev], ev)]
    assert max(gaps) <= max(1, round(epochs / 10))  # never blind for more than ~10% of the run
    assert len(ev) <= min(epochs, 2 * (tail + 10))


def test_sparse_for_long_runs():
    assert eval_epochs(80) == [8, 16, 24, 32, 40, 48, 56, 64, *range(72, 81)]
    assert len(eval_epochs(300)) == 39


def test_interval_overrides():
    assert eval_epochs(90, 22) == [22, 44, 66, 88, 90]
    assert eval_epochs(5, 1) == [1, 2, 3, 4, 5]
    assert eval_epochs(10, 100) == [10]


def test_description():
    assert describe_eval_epochs([8, 16, 72, 73, 74, 75]) == "8, 16, 72-75"
    assert describe_eval_epochs([1, 2]) == "1, 2"
