"""``repyolo data check|show`` and ``repyolo convert``; VOC / COCO converters on small hand-made sets."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from repyolo.cli import main
from repyolo.data import coco_to_yolo, generate_synthetic, load_data_config, voc_to_yolo, yolo_to_coco
from repyolo.errors import DataError

VOC_XML = """<annotation><filename>{name}.jpg</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>
{objects}</annotation>"""
VOC_OBJ = "<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>" \
          "<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"


@pytest.fixture
def voc(tmp_path) -> Path:
    root = tmp_path / "VOC"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    objs = {
        "a": [("dog", 0, 10, 10, 50, 40), ("cat", 1, 60, 5, 90, 30)],
        "b": [("cat", 0, 5, 5, 5, 5), ("cat", 0, 20, 20, 80, 60)],  # a zero-area box
        "c": [],
    }
    for name, ol in objs.items():
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), np.full((64, 100, 3), 128, np.uint8))
        size = (100, 64) if name != "c" else (0, 0)  # c: size missing -> read from the image
        xml = VOC_XML.format(name=name, w=size[0], h=size[1], objects="".join(
            VOC_OBJ.format(c=c, d=d, x1=x1, y1=y1, x2=x2, y2=y2) for c, d, x1, y1, x2, y2 in ol))
        (root / "Annotations" / f"{name}.xml").write_text(xml)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("a\nb\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("c\n")
    (root / "ImageSets" / "Main" / "cat_trainval.txt").write_text("a 1\nb 1\n")  # per-class list: ignored
    return tmp_path


def test_voc_to_yolo_layout_and_values(voc, tmp_path):
    y = voc_to_yolo(voc, tmp_path / "out")  # finds VOC/ inside
    cfg = load_data_config(y)
    assert cfg.names == ["cat", "dog"] and cfg.train == cfg.val == [tmp_path / "out" / "images" / "trainval"]
    assert cfg.test == [tmp_path / "out" / "images" / "test"]
    lines = (tmp_path / "out" / "labels" / "trainval" / "a.txt").read_text().splitlines()
    assert lines == ["1 0.3 0.390625 0.4 0.46875", "0 0.75 0.2734375 0.3 0.390625"]
    assert (tmp_path / "out" / "labels" / "test" / "c.txt").read_text() == ""
    assert (tmp_path / "out" / "images" / "trainval" / "a.jpg").is_symlink()
    ds = cfg.dataset("train")
    assert ds.report.n_boxes == 3 and [Path(i.file).name for i in ds.report.issues] == ["b.txt"]
    y2 = voc_to_yolo(voc / "VOC", tmp_path / "out2", names=["dog"], include_difficult=False, image_mode="copy")
    assert (tmp_path / "out2" / "labels" / "trainval" / "a.txt").read_text() == "0 0.3 0.390625 0.4 0.46875\n"
    assert not (tmp_path / "out2" / "images" / "trainval" / "a.jpg").is_symlink()
    assert load_data_config(y2).names == ["dog"]
    with pytest.raises(DataError, match="no list for split"):
        voc_to_yolo(voc, tmp_path / "out3", splits=["val"])


def test_coco_yolo_round_trip_small(tmp_path):
    y = generate_synthetic(tmp_path / "syn", n_train=4, n_val=3, img_size=96)
    cfg = load_data_config(y)
    gt = yolo_to_coco(y, out_json=tmp_path / "val.json", split="val")
    assert len(gt["images"]) == 3 and [c["name"] for c in gt["categories"]] == cfg.names
    back = coco_to_yolo(tmp_path / "val.json", tmp_path / "back", images_dir=cfg.val[0])
    ds_a, ds_b = cfg.dataset("val"), load_data_config(back).dataset("val")
    assert [Path(f).name for f in ds_a.im_files] == [Path(f).name for f in ds_b.im_files]
    for la, lb in zip(ds_a.labels, ds_b.labels):
        np.testing.assert_allclose(la, lb, atol=1e-4)


def test_cli_check_show_convert(tmp_path, capsys, voc):
    y = generate_synthetic(tmp_path / "syn", n_train=6, n_val=2, img_size=96)
    assert main(["data", "check", str(y), "--json", str(tmp_path / "rep.json")]) == 0
    out = capsys.readouterr().out
    assert "train: 6/6 images usable" in out and "val: 2/2 images usable" in out and "circle" in out
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["train"]["n_usable"] == 6 and len(rep["train"]["class_counts"]) == 5
    assert main(["data", "show", str(y), "--out", str(tmp_path / "s.png"), "--n", "4", "--img", "96",
                 "--tile", "100"]) == 0
    grid = cv2.imread(str(tmp_path / "s.png"))
    assert grid.shape == (200, 200, 3)
    assert main(["data", "check", str(tmp_path / "missing.yaml")]) == 2
    assert main(["convert", "voc2yolo", str(voc), str(tmp_path / "v")]) == 0
    assert (tmp_path / "v" / "data.yaml").is_file()
    assert main(["convert", "yolo2coco", str(tmp_path / "v" / "data.yaml"), str(tmp_path / "v.json"),
                 "--split", "train"]) == 0
    assert len(json.loads((tmp_path / "v.json").read_text())["annotations"]) == 3
    assert main(["convert", "coco2yolo", str(tmp_path / "v.json"), str(tmp_path / "w"), "--images",
                 str(tmp_path / "v" / "images" / "trainval"), "--split", "t"]) == 0
    assert (tmp_path / "w" / "labels" / "t" / "a.txt").read_text() == \
        (tmp_path / "v" / "labels" / "trainval" / "a.txt").read_text()
    # a bare image folder: names found in a classes.txt above it
    (tmp_path / "syn" / "classes.txt").write_text("\n".join(["c0", "c1", "c2", "c3", "c4"]))
    assert main(["data", "check", str(tmp_path / "syn" / "images" / "val")]) == 0
    assert "c0" in capsys.readouterr().out
