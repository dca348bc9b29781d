"""Fixtures of the official-checkpoint importer tests (stand-in official files, see official_fakes.py)."""
from __future__ import annotations

import pytest
import torch
from official_fakes import REFERENCE, make_official_checkpoint


@pytest.fixture(scope="session")
def official_reference():
    """The official key-file folder (``../shared/reference/official_checkpoints``), or a skip with the reason."""
    if not (REFERENCE / "module_classes.txt").is_file():
        pytest.skip(f"official key files not found at {REFERENCE} (CI has ../shared; a user clone may not)")
    return REFERENCE


@pytest.fixture(scope="session")
def official_yolov6n(tmp_path_factory):
    """``(path, saved official state dict)`` of a stand-in official ``yolov6n.pt`` (float16)."""
    if not (REFERENCE / "yolov6n.txt").is_file():
        pytest.skip(f"official key files not found at {REFERENCE}")
    path = tmp_path_factory.mktemp("official") / "yolov6n.pt"
    saved = make_official_checkpoint("yolov6n", path)
    return path, saved


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors on a shared 2-core machine: one intra-op thread is faster and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
