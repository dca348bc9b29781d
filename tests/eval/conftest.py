"""Fixtures of the evaluation / inference tests."""
from __future__ import annotations

import logging
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



class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def text(self, level=logging.WARNING) -> str:
        return "\n".join(r.getMessage() for r in self.records if r.levelno >= level)


@pytest.fixture
def repyolo_log():
    """Records of the ``repyolo`` logger (which does not propagate to pytest's caplog)."""
    handler = _ListHandler()
    logger = logging.getLogger("repyolo")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
