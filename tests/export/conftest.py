"""Fixtures for the export tests (models built by :mod:`export_helpers`)."""
from __future__ import annotations

import pytest
import torch
from export_helpers import csp_config, perturb, save_model

from repyolo.nn.model import build_model


@pytest.fixture(scope="session")
def yolov6n_model() -> torch.nn.Module:
    torch.manual_seed(1)  # build_model's random init
    model = perturb(build_model("yolov6n", num_classes=80), seed=0)
    model.names = [f"class{i}" for i in range(80)]
    return model


@pytest.fixture(scope="session")
def csp_model() -> torch.nn.Module:
    torch.manual_seed(1)
    return perturb(build_model(csp_config(), num_classes=80), seed=1)


@pytest.fixture(scope="session")
def yolov6n_ckpt(tmp_path_factory, yolov6n_model) -> str:
    return save_model(yolov6n_model, tmp_path_factory.mktemp("ckpt") / "yolov6n.pt")
