"""A tiny model trained once through the API (``YOLO(...).train``), shared by the API and CLI tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def trained(tmp_path_factory, synthetic_data, tiny_model_yaml):
    """``YOLO`` holding ``best.pt`` of a 1-epoch run at 64 px on the synthetic set."""
    from repyolo import YOLO

    model = YOLO(str(tiny_model_yaml))
    model.train(data=str(synthetic_data), epochs=1, img=64, batch=8, workers=0,
                project=str(tmp_path_factory.mktemp("api_runs")), name="tiny")
    return model
