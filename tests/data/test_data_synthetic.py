"""The synthetic shapes data set: deterministic bytes, skip-when-present, sane objects."""
from __future__ import annotations

import numpy as np

from repyolo.data import generate_synthetic, load_data_config
from repyolo.data.synthetic import CLASSES, render_sample


def _files(root):
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".cache")
    return {p.relative_to(root): p.read_bytes() for p in files}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = generate_synthetic(tmp_path / "a", n_train=6, n_val=2, img_size=160, seed=5)
    b = generate_synthetic(tmp_path / "b", n_train=6, n_val=2, img_size=160, seed=5)
    fa, fb = _files(a.parent), _files(b.parent)
    assert len(fa) == 6 + 2 + 6 + 2 + 2 and fa == fb  # images, labels, data.yaml, marker
    c = generate_synthetic(tmp_path / "c", n_train=6, n_val=2, img_size=160, seed=6)
    fc = _files(c.parent)
    assert fc.keys() == fa.keys() and fc[next(iter(k for k in fc if k.suffix == ".jpg"))] != \
        fa[next(iter(k for k in fa if k.suffix == ".jpg"))]


def test_skips_when_present_and_regenerates_on_new_parameters(tmp_path):
    y = generate_synthetic(tmp_path, n_train=5, n_val=2, img_size=128)
    img = tmp_path / "images" / "train" / "train_00000.jpg"
    stamp = img.stat().st_mtime_ns
    assert generate_synthetic(tmp_path, n_train=5, n_val=2, img_size=128) == y
    assert img.stat().st_mtime_ns == stamp  # not rewritten
    generate_synthetic(tmp_path, n_train=3, n_val=2, img_size=128, seed=1)
    assert sorted(p.name for p in (tmp_path / "images" / "train").iterdir()) == [
        "train_00000.jpg", "train_00001.jpg", "train_00002.jpg"]
    assert len(list((tmp_path / "labels" / "train").iterdir())) == 3


def test_objects_are_learnable_sizes_and_all_classes_appear(tmp_path):
    cfg = load_data_config(generate_synthetic(tmp_path, n_train=40, n_val=4, img_size=320))
    assert cfg.names == list(CLASSES) and cfg.nc == 5
    ds = cfg.dataset("train", img_size=320)
    rep = ds.report
    assert rep.n_usable == 40 and rep.n_dropped == 0 and rep.n_skipped == 0 and rep.n_missing_labels == 0
    counts = [len(lab) for lab in ds.labels]
    assert min(counts) >= 1 and max(counts) <= 6
    assert all(c > 0 for c in rep.class_counts)
    boxes = np.concatenate(ds.labels)
    w, h = boxes[:, 3] - boxes[:, 1], boxes[:, 4] - boxes[:, 2]
    assert np.maximum(w, h).min() >= 14 and np.maximum(w, h).max() <= 130


def test_render_sample_boxes_cover_the_shape():
    img, labels = render_sample(np.random.default_rng(0), 256, 3, 3)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8 and len(labels) == 3
    assert (labels[:, 1:] >= 0).all() and (labels[:, 1:] <= 256).all()
