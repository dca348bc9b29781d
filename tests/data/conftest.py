"""Fixtures of the data pipeline tests: a private label-cache folder and BCCD converted once."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory):
    """Caches of read-only data sets go to a temporary folder, not ``~/.cache``."""
    mp = pytest.MonkeyPatch()
    mp.setenv("REPYOLO_CACHE_DIR", str(tmp_path_factory.mktemp("repyolo-cache")))
    yield
    mp.undo()


_CONVERTED: dict[str, Path] = {}


@pytest.fixture
def bccd_yolo(bccd, tmp_path_factory) -> Path:
    """BCCD converted to YOLO (symlinked images) in a temporary folder, once per session; the data.yaml."""
    if "bccd" not in _CONVERTED:
        from repyolo.data.convert import voc_to_yolo

        _CONVERTED["bccd"] = voc_to_yolo(bccd, tmp_path_factory.mktemp("bccd_yolo"))
    return _CONVERTED["bccd"]


@pytest.fixture
def coco128_names(coco128: Path) -> list[str]:
    """The 80 class names of coco128 (classes.txt)."""
    return [n.strip() for n in (coco128 / "classes.txt").read_text().splitlines() if n.strip()]


@pytest.fixture
def coco128_yaml(coco128, coco128_names, tmp_path) -> Path:
    """An ultralytics-style data YAML for coco128 (train = images/train, val = images/val)."""
    from repyolo.data.config import write_data_yaml

    return write_data_yaml(tmp_path / "coco128.yaml", coco128, {"train": "images/train", "val": "images/val"},
                           coco128_names)
