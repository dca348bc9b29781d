"""Data YAMLs in both styles, every kind of source, and clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from repyolo.data import DetectionDataset, load_data_config
from repyolo.errors import DataError


def _yolo_set(root: Path, split: str, n: int = 2) -> None:
    for i in range(n):
        p = root / "images" / split / f"{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.full((20, 30, 3), 90, np.uint8))
        lab = root / "labels" / split / f"{i}.txt"
        lab.parent.mkdir(parents=True, exist_ok=True)
        lab.write_text(f"{i % 2} 0.5 0.5 0.5 0.5\n")


def test_ultralytics_style_with_names_dict(tmp_path):
    _yolo_set(tmp_path / "ds", "train")
    _yolo_set(tmp_path / "ds", "val")
    y = tmp_path / "cfg" / "d.yaml"
    y.parent.mkdir()
    y.write_text("path: ../ds\ntrain: images/train\nval: [images/val, images/train]\nnames: {0: cat, 1: dog}\n")
    cfg = load_data_config(y)
    assert cfg.path == tmp_path / "ds" and cfg.nc == 2 and cfg.names == ["cat", "dog"]
    assert cfg.train == [tmp_path / "ds" / "images" / "train"]
    assert cfg.val == [tmp_path / "ds" / "images" / "val", tmp_path / "ds" / "images" / "train"]
    assert cfg.yaml_path == y and cfg.test == []
    ds = cfg.dataset("val")
    assert len(ds) == 4 and ds.nc == 2


def test_official_style_relative_to_yaml_and_list_files(tmp_path):
    _yolo_set(tmp_path, "train", 3)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.txt").write_text("../images/train/0.jpg\n../images/train/1.jpg\n")
    (tmp_path / "val.txt").write_text("images/train/2.jpg\n")  # relative to the list's folder
    y = tmp_path / "data.yaml"
    y.write_text("train: lists/train.txt\nval: val.txt\nnc: 2\nnames: [a, b]\n")
    cfg = load_data_config(y)
    assert len(cfg.dataset("train")) == 2 and len(cfg.dataset("val")) == 1
    # list entries relative to the yaml 'path' when not beside the list
    (tmp_path / "lists" / "root_rel.txt").write_text("images/train/0.jpg\n")
    y2 = tmp_path / "d2.yaml"
    y2.write_text(f"path: {tmp_path}\ntrain: lists/root_rel.txt\nval: lists/root_rel.txt\nnames: [a, b]\n")
    assert len(load_data_config(y2).dataset("train")) == 1
    assert load_data_config(tmp_path).names == ["a", "b"]  # a folder holding data.yaml


def test_coco_json_source_with_images_key(tmp_path):
    img_dir = tmp_path / "pics"
    img_dir.mkdir()
    for name in ("x.jpg", "y.jpg"):
        cv2.imwrite(str(img_dir / name), np.zeros((40, 50, 3), np.uint8))
    coco = {
        "images": [{"id": 7, "file_name": "x.jpg", "width": 50, "height": 40},
                   {"id": 9, "file_name": "y.jpg", "width": 50, "height": 40}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 2, 10, 20], "area": 150, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [5, 5, 5, 5], "area": 25, "iscrowd": 1},
            {"id": 3, "image_id": 9, "category_id": 3, "bbox": [0, 0, 50, 40], "area": 2000, "iscrowd": 0},
            {"id": 4, "image_id": 9, "category_id": 42, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0},
        ],
        "categories": [{"id": 5, "name": "five"}, {"id": 3, "name": "three"}],
    }
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "train.json").write_text(json.dumps(coco))
    y = tmp_path / "d.yaml"
    y.write_text("train: ann/train.json\ntrain_images: pics\nval: ann/train.json\nval_images: pics\n")
    cfg = load_data_config(y)
    assert cfg.names == ["three", "five"]  # sorted ids: 3 -> 0, 5 -> 1
    ds = cfg.dataset("train")
    assert ds.image_ids == [7, 9] and ds.category_ids == [3, 5]
    assert cfg.train == [tmp_path / "ann" / "train.json"]
    assert len(DetectionDataset(cfg.train, names=cfg.names)) == 2  # the source carries its image folder
    np.testing.assert_allclose(ds.labels[0], [[1, 1, 2, 11, 22]])
    assert len(ds.crowd[0]) == 1 and ds.report.n_crowd == 1
    assert [i.reason for i in ds.report.issues] == ["annotation 4: category_id 42 not in categories"]
    gt = ds.coco_gt()
    assert {a["category_id"] for a in gt["annotations"]} == {3, 5}
    assert [a["area"] for a in gt["annotations"] if not a["iscrowd"]] == [150, 2000]  # json areas kept
    assert gt["images"][0]["file_name"] == "x.jpg"
    # without the *_images key the json folder is tried first, then guesses
    with pytest.raises(DataError, match="cannot decode|no usable|not found"):
        DetectionDataset(tmp_path / "ann" / "train.json", label_cache=False)
    # names disagreeing with the json
    with pytest.raises(DataError, match="2 categories but the data set names 3"):
        DetectionDataset(tmp_path / "ann" / "train.json", image_root=img_dir, names=["a", "b", "c"])


@pytest.mark.parametrize("text, match", [
    ("val: images\nnames: [a]\n", "missing key 'train'"),
    ("train: images\nnames: [a]\n", "missing key 'val'"),
    ("train: images\nval: images\n", "missing key 'names'"),
    ("train: images\nval: nowhere\nnames: [a]\n", "val path 'nowhere' not found"),
    ("train: images\nval: images\nnc: 3\nnames: [a, b]\n", "nc=3 but 2 names"),
    ("train: images\nval: images\nnames: {0: a, 2: b}\n", "contiguous"),
    ("train: images\nval: images\nnames: [a]\npath: /does/not/exist\n", "'path' folder"),
    ("[1, 2]\n", "expected a mapping"),
    ("train: [unclosed\n", "cannot parse YAML"),
])
def test_bad_yaml_errors_name_the_file(tmp_path, text, match):
    (tmp_path / "images").mkdir()
    y = tmp_path / "bad.yaml"
    y.write_text(text)
    with pytest.raises(DataError, match=match) as exc:
        load_data_config(y)
    assert str(y) in str(exc.value)


def test_missing_yaml(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_data_config(tmp_path / "nope.yaml")
