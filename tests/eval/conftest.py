"""Fixtures of the evaluation / inference tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A randomly initialised yolov6n with 3 classes, saved as a deploy checkpoint."""
    from repyolo.io.checkpoint import deploy_checkpoint, save_checkpoint
    from repyolo.nn.model import build_model

    torch.manual_seed(0)
    model = build_model("yolov6n", num_classes=3)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(deploy_checkpoint(model, names=["red", "green", "blue"]), path)
    return path
