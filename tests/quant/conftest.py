"""Fixtures for the quantization tests: a tiny synthetic data set, a small perturbed YOLOv6
checkpoint, and a calibrated PTQ context shared by the tests of a session (calibration is the
expensive step)."""
from __future__ import annotations

import pytest
from quant_helpers import IMG, save_model, tiny_model

from repyolo.data.synthetic import generate_synthetic


@pytest.fixture(scope="session")
def syn_data(tmp_path_factory) -> str:
    """8 train + 6 val synthetic images at 64 px; returns the data YAML path."""
    return str(generate_synthetic(tmp_path_factory.mktemp("syn"), n_train=8, n_val=6, img_size=IMG, seed=1))


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> str:
    return save_model(tiny_model(), tmp_path_factory.mktemp("w") / "tiny.pt")


@pytest.fixture(scope="session")
def ptq_ctx(tiny_weights, syn_data, tmp_path_factory):
    """A calibrated :class:`PTQContext` (6 calibration images, min-max) of the tiny model at 64 px."""
    from repyolo.quant.qdq import QuantSettings, prepare

    settings = QuantSettings(calib=6)
    return prepare(tiny_weights, syn_data, settings, img_size=IMG, workdir=tmp_path_factory.mktemp("ctx"))
