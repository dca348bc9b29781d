"""The pipeline on the real data sets: counts from their SOURCE.md, COCO json source, round trips."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from repyolo.data import DetectionDataset, coco_to_yolo, load_data_config, yolo_to_coco
from repyolo.data.formats import img2label_path

pytestmark = pytest.mark.real_data


def _yolo_rows(path: Path) -> np.ndarray:
    text = path.read_text() if path.exists() else ""
    return np.array([[float(v) for v in ln.split()] for ln in text.splitlines() if ln.strip()]).reshape(-1, 5)


def _assert_round_trip(ds: DetectionDataset, tmp_path: Path, images_dir: Path) -> int:
    """YOLO -> COCO json -> YOLO; every label file equal to the original within 1e-6. Returns boxes compared."""
    gt = yolo_to_coco(ds, out_json=tmp_path / "gt.json")
    assert json.loads((tmp_path / "gt.json").read_text()) == json.loads(json.dumps(gt))
    coco_to_yolo(tmp_path / "gt.json", tmp_path / "back", images_dir=images_dir, split="x", image_mode="none")
    n = 0
    for im_file in ds.im_files:
        orig = _yolo_rows(Path(img2label_path(im_file)))
        back = _yolo_rows(tmp_path / "back" / "labels" / "x" / (Path(im_file).stem + ".txt"))
        valid = (orig[:, 3] > 0) & (orig[:, 4] > 0)  # the loader drops zero-area boxes
        orig = orig[valid]
        assert back.shape == orig.shape, im_file
        np.testing.assert_allclose(back, orig, atol=1e-6, rtol=0)
        n += len(orig)
    return n


def test_coco128_train_counts_and_round_trip(coco128, coco128_names, tmp_path):
    ds = DetectionDataset(coco128 / "images" / "train", names=coco128_names)
    rep = ds.report
    assert len(ds) == 128 and rep.n_usable == 128 and rep.n_skipped == 0
    assert rep.n_boxes == 929 == sum(len(lab) for lab in ds.labels)
    assert sum(Path(img2label_path(f)).exists() for f in ds.im_files) == 126
    missing = {Path(i.file).name for i in rep.issues if i.action == "background"}
    assert missing == {"000000000250.txt", "000000000508.txt"} and rep.n_background == 2
    assert rep.n_dropped == 0 and rep.n_clipped == 0
    assert sum(c > 0 for c in rep.class_counts) == 71
    # label counts match the files, image by image
    for f, lab in zip(ds.im_files, ds.labels):
        assert len(lab) == len(_yolo_rows(Path(img2label_path(f))))
    # ids are the numeric stems, boxes inside the images
    assert ds.image_ids[0] == 9 and ds.category_ids == list(range(80))
    for (h, w), lab in zip(ds.shapes, ds.labels):
        assert (lab[:, 1:] >= 0).all() and (lab[:, [1, 3]] <= w).all() and (lab[:, [2, 4]] <= h).all()
    assert _assert_round_trip(ds, tmp_path, coco128 / "images" / "train") == 929


def test_coco128_every_image_loads(coco128, coco128_names):
    ds = DetectionDataset(coco128 / "images" / "val", names=coco128_names, img_size=160)
    assert len(ds) == 128 and ds.report.n_boxes == 898 and ds.report.n_skipped == 0
    for i in range(len(ds)):
        img, labels, path, meta = ds[i]
        assert img.shape == (3, 160, 160) and len(labels) == len(ds.labels[i])
        assert path == ds.im_files[i] and meta["orig_shape"] == tuple(ds.shapes[i])


def test_coco128_json_source_matches_yolo_labels(coco128, coco128_names):
    yolo = DetectionDataset(coco128 / "images" / "train", names=coco128_names)
    js = DetectionDataset(coco128 / "annotations" / "instances_train2017.json", image_root=coco128 / "images" / "train")
    assert js.names == coco128_names and js.nc == 80
    assert js.report.n_boxes == 929 and js.report.n_crowd == 10
    assert js.category_ids[:3] == [1, 2, 3] and js.category_ids[-1] == 90
    by_file = dict(zip(yolo.im_files, yolo.labels))
    for f, lab, iid in zip(js.im_files, js.labels, js.image_ids):
        ref = by_file[f]
        assert iid == int(Path(f).stem)
        a, b = lab[np.lexsort(lab.round(1).T[::-1])], ref[np.lexsort(ref.round(1).T[::-1])]
        np.testing.assert_allclose(a, b, atol=1e-3)
    gt = js.coco_gt()
    assert sum(a["iscrowd"] for a in gt["annotations"]) == 10 and len(gt["annotations"]) == 939
    assert {c["id"] for c in gt["categories"]} == set(js.category_ids)


def test_coco128_yaml_json_source(coco128, tmp_path):
    yaml_path = tmp_path / "data.yaml"
    yaml_path.write_text(f"path: {coco128}\ntrain: annotations/instances_train2017.json\n"
                         "train_images: images/train\nval: images/val\nnc: 80\n")
    cfg = load_data_config(yaml_path)
    assert cfg.names[0] == "person" and cfg.nc == 80  # names from the json categories
    ds = cfg.dataset("train")
    assert len(ds) == 128 and ds.report.n_boxes == 929
    bare = load_data_config(coco128)  # a folder with images/{train,val} and classes.txt
    assert bare.nc == 80 and bare.val == [coco128 / "images" / "val"] and bare.yaml_path is None


def test_bccd_counts_zero_area_and_round_trip(bccd_yolo, bccd, tmp_path):
    cfg = load_data_config(bccd_yolo)
    assert cfg.names == ["Platelets", "RBC", "WBC"]
    expected = {"train": (205, 2805), "val": (87, 1138), "test": (72, 945)}
    total = {n: 0 for n in cfg.names}
    dropped = []
    for split, (n_img, n_box) in expected.items():
        ds = cfg.dataset(split)
        rep = ds.report
        assert len(ds) == n_img and rep.n_skipped == 0
        rows = sum(len(_yolo_rows(Path(img2label_path(f)))) for f in ds.im_files)
        assert rows == n_box  # the files hold every VOC box
        assert rep.n_boxes + rep.n_dropped == n_box
        dropped += [i for i in rep.issues if i.action == "dropped"]
        for name, c in zip(cfg.names, rep.class_counts):
            total[name] += c
        if split == "val":
            assert _assert_round_trip(ds, tmp_path, Path(ds.im_files[0]).parent) == n_box - 1
    assert sorted(Path(i.file).stem for i in dropped) == ["BloodImage_00338", "BloodImage_00343"]
    assert all("zero-area" in i.reason for i in dropped)
    assert total == {"RBC": 4155 - 2, "WBC": 372, "Platelets": 361}
    assert all(Path(f).is_symlink() for f in cfg.dataset("test").im_files[:3])
