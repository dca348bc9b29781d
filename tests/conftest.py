"""Shared test fixtures: the real data sets beside the repo (skipped with a reason when absent), a tiny
synthetic training set-up, and a recorder of the ``repyolo`` log."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from repyolo.utils.memory import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("REPYOLO_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
SHARED_WEIGHTS = Path(os.environ.get("REPYOLO_SHARED_WEIGHTS", REPO.parent / "shared" / "weights"))

# one thread: on a loaded 2-core machine two OpenMP threads wait on each other (50-100x slower steps)
torch.set_num_threads(1)
os.environ.setdefault("REPYOLO_THREADS", "1")  # the thread policy of repyolo.utils.threads: same choice
# freed tensor memory reused instead of unmapped (as in training: repyolo.utils.memory); less system time
keep_freed_memory()
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


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A 16 + 8 image synthetic shapes set at 64 px (data YAML path)."""
    from repyolo.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("syn"), n_train=16, n_val=8, img_size=64, seed=0)


@pytest.fixture(scope="session")
def tiny_model_yaml(tmp_path_factory) -> Path:
    """yolov6n with width 1/8 and depth 1/6: the same topology, a fraction of the cost."""
    from repyolo.nn.model import load_model_config

    cfg = load_model_config("yolov6n")
    cfg.update(name="yolov6-tiny", width_multiple=0.125, depth_multiple=0.17)
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def pytest_collection_modifyitems(config, items):
    """Run the slowest modules first: ``@pytest.mark.slow(seconds=N)`` (N: its rough duration on
    2 cores, default 20) puts a module ahead of the others, longest first. pytest-xdist hands out
    modules in this order (``scripts/test.sh`` passes ``--no-loadscope-reorder``), so a long test
    starts at once instead of running alone at the end while the other workers idle."""
    seconds: dict[str, float] = {}
    for item in items:
        mark = item.get_closest_marker("slow")
        if mark is not None:
            module = item.nodeid.split("::")[0]
            seconds[module] = seconds.get(module, 0.0) + float(mark.kwargs.get("seconds", 20))
    items.sort(key=lambda item: -seconds.get(item.nodeid.split("::")[0], 0.0))  # stable: modules stay whole


@pytest.fixture(autouse=True)
def _restore_repyolo_logger():
    """Undo what a CLI call's ``setup_logging`` did to the ``repyolo`` logger (level, a handler on
    that test's captured stderr, propagation off), so later tests see the logger as it was
    (``caplog`` included)."""
    logger = logging.getLogger("repyolo")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    yield
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    logger.handlers[:] = saved[2]


@pytest.fixture(scope="session")
def lite_weights() -> Path:
    """``../shared/weights/yolov6-lite`` (released COCO YOLOv6-Lite S/M/L in NCNN format)."""
    path = SHARED_WEIGHTS / "yolov6-lite"
    if not (path / "yolov6-lite-s.param").is_file():
        pytest.skip(f"YOLOv6-Lite NCNN weights not found at {path} (CI has ../shared/weights; a user clone may "
                    f"not; set REPYOLO_SHARED_WEIGHTS)")
    return path


@pytest.fixture(scope="session")
def lite_s_checkpoint(lite_weights, tmp_path_factory) -> Path:
    """The released Lite-S imported once per session as a repyolo checkpoint (``lite_s.pt``)."""
    from repyolo.io.checkpoint import save_checkpoint
    from repyolo.io.ncnn_import import convert_ncnn

    return save_checkpoint(convert_ncnn(lite_weights / "yolov6-lite-s.param"),
                           tmp_path_factory.mktemp("lite") / "lite_s.pt")


@pytest.fixture(scope="session")
def coco128_val_yaml(tmp_path_factory) -> Path:
    """A data YAML over coco128's real val2017 split (YOLO labels, 80 COCO names)."""
    import json

    from repyolo.data.coco import COCO_NAMES

    root = _dataset("coco128")
    path = tmp_path_factory.mktemp("data") / "coco128_val.yaml"
    path.write_text(f"path: {root}\ntrain: images/train\nval: images/val\n"
                    f"names: [{', '.join(json.dumps(n) for n in COCO_NAMES)}]\n")
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
    """Records of the ``repyolo`` logger (which does not propagate to pytest's caplog), at INFO and
    above while the test runs (``text(logging.INFO)`` for everything a user sees)."""
    handler = _ListHandler()
    logger = logging.getLogger("repyolo")
    level = logger.level
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
