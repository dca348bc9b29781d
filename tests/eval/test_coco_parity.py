"""Acceptance 1: ``repyolo val --predictions`` equals pycocotools' COCOeval on the same files."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from repyolo.cli import main


def fake_predictions(gt: dict, seed: int = 0) -> list[dict]:
    """GT boxes jittered by a seeded generator, with random scores, ~15% dropped, ~10% relabelled,
    plus random false positives (and a few on images without any GT)."""
    rng = np.random.default_rng(seed)
    cats = [c["id"] for c in gt["categories"]]
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    dets = []
    for a in gt["annotations"]:
        if rng.random() < 0.15:
            continue
        x, y, w, h = a["bbox"]
        x, y = x + rng.normal(0, 0.08) * w, y + rng.normal(0, 0.08) * h
        w, h = w * math.exp(rng.normal(0, 0.1)), h * math.exp(rng.normal(0, 0.1))
        cat = a["category_id"] if rng.random() > 0.1 else int(rng.choice(cats))
        dets.append({"image_id": a["image_id"], "category_id": cat,
                     "bbox": [round(float(v), 3) for v in (x, y, w, h)], "score": round(float(rng.random()), 5)})
    for img_id, (W, H) in sizes.items():
        for _ in range(rng.poisson(2.0)):
            w, h = rng.uniform(4, W / 2), rng.uniform(4, H / 2)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            dets.append({"image_id": img_id, "category_id": int(rng.choice(cats)),
                         "bbox": [round(float(v), 3) for v in (x, y, w, h)],
                         "score": round(float(rng.random()) * 0.6, 5)})
    return dets


def pycocotools_cocoeval(gt: dict, dets: list[dict]):
    """pycocotools' COCOeval on in-memory dicts: the parity reference of the main path."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = copy.deepcopy(gt)
        cg.createIndex()
        ev = COCOeval(cg, cg.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def pycocotools_eval(gt_file: Path, pred_file: Path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO(str(gt_file))
        cd = cg.loadRes(str(pred_file))
        ev = COCOeval(cg, cd, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def per_class_ap(ev) -> dict[int, float]:
    p = ev.eval["precision"][:, :, :, 0, -1]
    out = {}
    for k, cat in enumerate(ev.params.catIds):
        v = p[:, :, k]
        out[cat] = float(v[v > -1].mean()) if (v > -1).any() else float("nan")
    return out


def _check(ours: dict, ev, gt: dict) -> None:
    keys = ["map", "map50", "map75", "map_small", "map_medium", "map_large"]
    for key, ref in zip(keys, ev.stats[:6]):
        ref = None if ref < 0 else float(ref)
        if ref is None:
            assert ours[key] is None, key
        else:
            assert abs(ours[key] - ref) <= 1e-4, (key, ours[key], ref)
    ref_pc = per_class_ap(ev)
    names = {c["id"]: n for c, n in zip(sorted(gt["categories"], key=lambda c: c["id"]), ours["per_class"])}
    for cat, ap in ref_pc.items():
        got = ours["per_class"][names[cat]]
        if math.isnan(ap):
            assert got is None  # class absent from the GT: AP undefined (null), out of the mean
        else:
            assert abs(got - ap) <= 1e-4, (names[cat], got, ap)
    # the mean of the defined per-class APs is the COCO mAP
    defined = [v for v in ours["per_class"].values() if v is not None]
    assert abs(np.mean(defined) - ours["map"]) <= 1e-4


def _run_val(pred: Path, data: Path, split: str, out: Path) -> dict:
    assert main(["val", "--predictions", str(pred), "--data", str(data), "--split", split, "--json", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.real_data
def test_parity_coco_json_split(coco128, tmp_path):
    gt_file = coco128 / "annotations" / "instances_train2017.json"
    data = tmp_path / "data.yaml"
    data.write_text(f"path: {coco128}\ntrain: annotations/instances_train2017.json\ntrain_images: images/train\n"
                    f"val: annotations/instances_train2017.json\nval_images: images/train\n")
    gt = json.loads(gt_file.read_text())
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(fake_predictions(gt, seed=1)))
    ours = _run_val(pred, data, "train", tmp_path / "out.json")
    ev = pycocotools_eval(gt_file, pred)
    _check(ours, ev, gt)
    assert 0.2 < ours["map50"] < 0.95  # a meaningful, non-degenerate score
    assert ours["speed_ms"] == {"preprocess": None, "inference": None, "nms": None}
    assert ours["n_images"] == 128


@pytest.mark.real_data
def test_parity_yolo_txt_split(coco128, tmp_path):
    from repyolo.data.config import load_data_config

    data = tmp_path / "data.yaml"
    data.write_text(f"path: {coco128}\ntrain: images/train\nval: images/val\nnames: classes.txt\n")
    ds = load_data_config(data).dataset("val", img_size=256, augment=False, rect=False)
    gt = ds.coco_gt()
    assert len(gt["images"]) == 128 and len(gt["annotations"]) == 898
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(gt))
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(fake_predictions(gt, seed=2)))
    ours = _run_val(pred, data, "val", tmp_path / "out.json")
    ev = pycocotools_eval(gt_file, pred)
    _check(ours, ev, gt)
    # 7 of the 80 classes have no GT in this split: null AP, excluded from the mean
    assert sum(v is None for v in ours["per_class"].values()) == 7


@pytest.mark.real_data
def test_pycocotools_and_faster_backends_agree(coco128):
    from repyolo.engine.metrics import coco_map

    gt = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    dets = fake_predictions(gt, seed=3)
    a = coco_map(gt, dets)  # faster-coco-eval, the main path
    b = coco_map(gt, dets, cocoeval=pycocotools_cocoeval)  # the reference implementation
    for key in ("map", "map50", "map75"):
        assert abs(a[key] - b[key]) <= 1e-6
    np.testing.assert_allclose(a["ap"], b["ap"], atol=1e-6)
