"""A folder with every kind of defect: each is reported by file (and line), only good samples load."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from repyolo.data import DetectionDataset, build_dataloader
from repyolo.errors import DataError

GOOD_LINES = [
    "0 0.5 0.5 0.25 0.25",  # 1 ok
    "0 0.5 0.5 0.2",  # 2 wrong column count
    "0 0.5 abc 0.2 0.2",  # 3 non-numeric
    "7 0.5 0.5 0.1 0.1",  # 4 class outside nc=3
    "1 0.5 0.5 0 0.1",  # 5 zero-area
    "2 0.98 0.5 0.1 0.1",  # 6 slightly out -> clipped
    "1 1.5 0.5 0.1 0.1",  # 7 entirely outside -> degenerate after clipping
    "0 0.5 0.5 0.25 0.25",  # 8 duplicate of line 1
    "-1 0.3 0.3 0.1 0.1",  # 9 negative class
    "0 nan 0.5 0.1 0.1",  # 10 non-finite
    "1.5 0.3 0.3 0.1 0.1",  # 11 non-integer class
    "0 0.3 0.3 0.005 0.2",  # 12 narrower than 1 px
    "",
    "1 0.25 0.25 0.2 0.3",  # 14 ok
]


def _img(path: Path, h=64, w=80, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))


@pytest.fixture
def bad_folder(tmp_path) -> Path:
    images, labels = tmp_path / "images" / "train", tmp_path / "labels" / "train"
    labels.mkdir(parents=True)
    _img(images / "good.jpg")
    (labels / "good.txt").write_text("\n".join(GOOD_LINES) + "\n")
    _img(images / "clean.png", 40, 50)
    (labels / "clean.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    _img(images / "background.jpg")  # no label file
    (images / "text.jpg").write_text("this is not an image\n")
    (labels / "text.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (images / "empty.jpg").write_bytes(b"")
    (images / "corrupt.png").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    (images / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    _img(images / "garbage_label.jpg")
    (labels / "garbage_label.txt").write_bytes(bytes(range(256)) * 4)
    (images / "notes.md").write_text("not an image, ignored\n")
    return tmp_path


def test_each_defect_reported_and_only_good_samples_load(bad_folder):
    ds = DetectionDataset(bad_folder / "images" / "train", names=["a", "b", "c"], img_size=64, label_cache=False)
    rep = ds.report
    names = sorted(Path(f).name for f in ds.im_files)
    assert names == ["background.jpg", "clean.png", "good.jpg"]

    def reasons(file, line=None):
        return [i.reason for i in rep.issues if Path(i.file).name == file and (line is None or i.line == line)]

    by_line = {i.line: (i.reason, i.action) for i in rep.issues if Path(i.file).name == "good.txt"}
    assert by_line[2][0].startswith("expected 5 columns") and by_line[2][1] == "dropped"
    assert "non-numeric" in by_line[3][0] and "'abc'" in by_line[3][0]
    assert "class id 7 out of range" in by_line[4][0]
    assert "zero-area" in by_line[5][0]
    assert by_line[6] == ("box reaches outside the image", "clipped")
    assert "outside the image smaller than 1 px" in by_line[7][0] and by_line[7][1] == "dropped"
    assert by_line[8] == ("duplicate row (same as line 1)", "dropped")
    assert "class id -1" in by_line[9][0] and "non-finite" in by_line[10][0] and "class id 1.5" in by_line[11][0]
    assert "smaller than 1 px" in by_line[12][0]
    assert 1 not in by_line and 14 not in by_line
    assert reasons("background.txt") == ["no label file"]
    assert reasons("text.jpg") == ["cannot decode image (corrupt or not an image)"]
    assert reasons("empty.jpg") == ["empty image file (0 bytes)"]
    assert reasons("corrupt.png") == ["cannot decode image (corrupt or not an image)"]
    assert reasons("photo.heic") == ["unsupported image format '.heic'"]
    assert reasons("garbage_label.txt") == ["label file is binary, not text"]
    assert not reasons("notes.md")
    assert rep.n_skipped == 5 and rep.n_usable == 3 and rep.n_background == 1
    assert rep.n_dropped == 10 and rep.n_clipped == 1

    # the kept, repaired boxes of good.jpg (80x64): line 1, line 6 clipped at x=80, line 14
    good = ds.labels[ds.im_files.index(str(bad_folder / "images" / "train" / "good.jpg"))]
    np.testing.assert_allclose(good, [[0, 30, 24, 50, 40], [2, 74.4, 28.8, 80, 35.2], [1, 12, 6.4, 28, 25.6]],
                               atol=1e-4)
    summary = rep.summary()
    for fragment in ("good.txt:2:", "text.jpg", "empty.jpg", "photo.heic", "garbage_label.txt", "3/8 images usable"):
        assert fragment in summary

    loader = build_dataloader(ds, batch_size=2, workers=0, shuffle=False)
    paths, n_boxes = [], 0
    for imgs, targets, p, _metas in loader:
        assert imgs.dtype == torch.uint8 and imgs.shape[1:] == (3, 64, 64)
        paths += p
        n_boxes += len(targets)
    assert sorted(Path(p).name for p in paths) == names and n_boxes == 4


def test_summary_is_logged(bad_folder, caplog):
    import logging

    logging.getLogger("repyolo").propagate = True
    try:
        with caplog.at_level(logging.INFO, logger="repyolo"):
            DetectionDataset(bad_folder / "images" / "train", names=["a", "b", "c"], label_cache=False)
    finally:
        logging.getLogger("repyolo").propagate = False
    text = caplog.text
    assert "garbage_label.txt" in text and "zero-area" in text and "empty image file" in text


def test_nothing_usable_is_a_data_error(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_text("text")
    (images / "b.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="no usable images.*a.jpg"):
        DetectionDataset(images, label_cache=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        DetectionDataset(tmp_path / "empty")
    with pytest.raises(DataError, match="not found"):
        DetectionDataset(tmp_path / "nope")


def test_list_file_with_missing_and_unsupported_entries(tmp_path):
    _img(tmp_path / "images" / "x.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    lst = tmp_path / "train.txt"
    lst.write_text("images/x.jpg\n./images/missing.jpg\nimages/doc.pdf\n\n")
    ds = DetectionDataset(lst, names=["a"], label_cache=False)
    assert len(ds) == 1 and ds.report.n_boxes == 1
    issues = {(Path(i.file).name, i.line): i.reason for i in ds.report.issues}
    assert issues[("missing.jpg", None)] == "image file not found"
    assert "unsupported image format '.pdf'" in issues[("train.txt", 3)]
