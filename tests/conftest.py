"""Shared test fixtures: the real data sets beside the repo (skipped with a reason when absent)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("REPYOLO_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))

# one thread: on a loaded 2-core machine two OpenMP threads wait on each other (50-100x slower steps)
torch.set_num_threads(1)
os.environ.setdefault("REPYOLO_THREADS", "1")  # the thread policy of repyolo.utils.threads: same choice
# cached runtime exports (repyolo.export.cache) of the tests go to a throw-away folder, not ~/.cache
os.environ.setdefault("REPYOLO_CACHE_DIR", tempfile.mkdtemp(prefix="repyolo-test-cache-"))


def _dataset(name: str) -> Path:
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real data set {name!r} not found at {path} (CI has ../shared/datasets; a user clone may not)")
    return path


@pytest.fixture
def coco128() -> Path:
    """``../shared/datasets/coco128`` (YOLO txt + COCO json train split, real val split)."""
    return _dataset("coco128")


@pytest.fixture
def bccd() -> Path:
    """``../shared/datasets/bccd`` (Pascal VOC xml, 3 classes)."""
    return _dataset("bccd")


@pytest.fixture
def demo_images() -> Path:
    """``../shared/datasets/demo_images`` (5 unlabelled photos)."""
    return _dataset("demo_images")
