"""The label check cache: beside the labels, in the fallback folder for read-only data, invalidated by changes."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from repyolo.data import DetectionDataset


@pytest.fixture
def small(tmp_path) -> Path:
    for i in range(3):
        p = tmp_path / "images" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(p), np.zeros((10, 10, 3), np.uint8))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "0.txt").write_text("0 0.5 0.5 0.5 0.5\n0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "labels" / "1.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    return tmp_path


def test_cache_beside_labels_reused_and_invalidated(small):
    a = DetectionDataset(small / "images", names=["a", "b"])
    cache = small / "labels.cache"  # .../images -> .../labels -> labels.cache beside it
    assert a.report.cache_path == str(cache) and cache.is_file() and not a.report.from_cache
    b = DetectionDataset(small / "images", names=["a", "b"])
    assert b.report.from_cache and b.report.n_boxes == 2 and b.report.n_dropped == 1  # issues survive the cache
    assert [i.reason for i in b.report.issues] == [i.reason for i in a.report.issues]
    for x, y in zip(a.labels, b.labels):
        np.testing.assert_array_equal(x, y)
    # editing a label file (size/mtime) invalidates it
    (small / "labels" / "1.txt").write_text("1 0.5 0.5 0.2 0.2\n0 0.2 0.2 0.1 0.1\n")
    c = DetectionDataset(small / "images", names=["a", "b"])
    assert not c.report.from_cache and c.report.n_boxes == 3
    # another nc is another key
    d = DetectionDataset(small / "images", names=["a"])
    assert not d.report.from_cache and d.report.n_boxes == 2  # class 1 now out of range


def test_read_only_data_uses_fallback_folder(small, tmp_path_factory, monkeypatch):
    fallback = tmp_path_factory.mktemp("fallback")
    monkeypatch.setenv("REPYOLO_CACHE_DIR", str(fallback))
    labels = small / "labels"
    mode = labels.stat().st_mode
    os.chmod(small, stat.S_IREAD | stat.S_IEXEC)  # the folder the cache would go in
    try:
        a = DetectionDataset(small / "images", names=["a", "b"])
        b = DetectionDataset(small / "images", names=["a", "b"])
    finally:
        os.chmod(small, mode | stat.S_IWRITE)
    assert not (small / "labels.cache").exists()
    assert Path(a.report.cache_path).parent == fallback / "labels" and b.report.from_cache


def test_corrupt_cache_is_ignored(small):
    DetectionDataset(small / "images", names=["a", "b"])
    (small / "labels.cache").write_bytes(b"garbage")
    ds = DetectionDataset(small / "images", names=["a", "b"])
    assert not ds.report.from_cache and ds.report.n_boxes == 2
