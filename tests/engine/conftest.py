"""Tiny training set-ups shared by the engine tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from repyolo.nn.model import load_model_config


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A 16 + 8 image synthetic shapes set at 64 px (data YAML path)."""
    from repyolo.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("syn"), n_train=16, n_val=8, img_size=64, seed=0)


@pytest.fixture(scope="session")
def tiny_model_yaml(tmp_path_factory) -> Path:
    """yolov6n with width 1/8 and depth 1/6: the same topology, a fraction of the cost."""
    cfg = load_model_config("yolov6n")
    cfg.update(name="yolov6-tiny", width_multiple=0.125, depth_multiple=0.17)
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
