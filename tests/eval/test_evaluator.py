"""The Evaluator end to end: rectangular batches, mapping back, COCO scoring, files, models."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from eval_helpers import BoxBackend, make_box_dataset, white_box

from repyolo.cli import main
from repyolo.engine.evaluator import Evaluator, format_table, scores_from_predictions, to_json

CONTRACT = {"map", "map50", "map75", "map_small", "map_medium", "map_large", "per_class", "precision", "recall",
            "f1", "speed_ms"}


@pytest.mark.parametrize("rect,batch", [(True, 2), (False, 3)])
def test_perfect_detector_scores_one(tmp_path, rect, batch):
    data = make_box_dataset(tmp_path / "ds")
    ev = Evaluator(data=data, img_size=160, batch_size=batch, rect=rect, save_dir=tmp_path / "out", workers=0)
    res = ev(BoxBackend(white_box))
    assert CONTRACT <= set(res)
    assert res["map50"] == pytest.approx(1.0) and res["map"] > 0.85  # boxes found to ~1 px
    assert res["per_class"]["b"] == pytest.approx(res["map"])
    assert np.isnan(res["per_class"]["a"]) and np.isnan(res["per_class"]["c"])  # no GT: undefined
    assert res["precision"] == 1.0 and res["recall"] == 1.0 and res["f1"] == 1.0
    assert res["n_images"] == 8 and res["n_instances"] == 7
    assert set(res["speed_ms"]) == {"preprocess", "inference", "nms"}
    for name in ("predictions.json", "pr_curve.png", "confusion_matrix.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    # the written results file scores the same without the model
    gt = ev.coco_gt(ev._ds)
    again = scores_from_predictions(tmp_path / "out" / "predictions.json", gt, names=["a", "b", "c"])
    for key in ("map", "map50", "map75", "precision", "recall"):
        assert again[key] == pytest.approx(res[key], abs=1e-9)
    js = to_json(res)
    assert js["per_class"]["a"] is None and json.dumps(js)
    table = format_table(res)
    assert "all" in table and " b " in table and "2 classes without ground truth" in table


def test_no_detections_and_wrong_class_count(tmp_path):
    data = make_box_dataset(tmp_path / "ds")
    ev = Evaluator(data=data, img_size=128, batch_size=4, workers=0)
    res = ev(BoxBackend(lambda x: None))  # detects nothing at all
    assert res["map"] == 0.0 and res["map50"] == 0.0 and res["recall"] == 0.0
    assert res["per_class"]["b"] == 0.0 and np.isnan(res["per_class"]["a"])
    with pytest.raises(Exception, match="classes"):
        ev(BoxBackend(white_box, names=["a", "b", "c", "d", "e"]))


def test_model_in_memory_is_not_fused_and_mode_is_restored(tmp_path):
    from repyolo.nn.model import build_model

    data = make_box_dataset(tmp_path / "ds", shapes=[(64, 96), (100, 60)], background=False)
    torch.manual_seed(0)
    model = build_model("yolov6n", num_classes=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ev = Evaluator(data=data, img_size=96, batch_size=2, workers=0, conf_thres=0.001)
    res = ev(model)
    assert model.training and not model.is_fused
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert CONTRACT <= set(res) and 0.0 <= res["map"] <= 1.0


def test_val_cli_with_weights(tmp_path, tiny_weights, capsys):
    data = make_box_dataset(tmp_path / "ds", shapes=[(64, 96), (100, 60), (80, 80)], background=False)
    out = tmp_path / "m.json"
    code = main(["val", "--weights", str(tiny_weights), "--data", str(data), "--img", "96", "--batch", "2",
                 "--json", str(out), "--workers", "0", "--save-dir", str(tmp_path / "v")])
    assert code == 0
    res = json.loads(out.read_text())
    assert CONTRACT <= set(res) and set(res["per_class"]) == {"a", "b", "c"}  # the data set's names
    assert res["per_class"]["a"] is None  # class without GT -> null
    assert all(v is not None for v in res["speed_ms"].values())
    printed = capsys.readouterr().out
    assert "AP50" in printed and "mAP@0.5:0.95" in printed
    assert (tmp_path / "v" / "predictions.json").exists()


def test_api_detector_val(tmp_path):
    from repyolo.api import YOLO, Detector

    assert issubclass(Detector, YOLO)
    data = make_box_dataset(tmp_path / "ds", shapes=[(64, 96), (100, 60)], background=False)
    det = Detector(BoxBackend(white_box), img_size=128)
    res = det.val(data, batch_size=2, workers=0)
    assert res["map50"] == pytest.approx(1.0)


def test_end_to_end_backend_is_evaluated(tmp_path):
    from eval_helpers import EndToEndBackend

    data = make_box_dataset(tmp_path / "ds", shapes=[(64, 96), (100, 60), (90, 90)], background=False)
    res = Evaluator(data=data, img_size=128, batch_size=2, workers=0)(EndToEndBackend(white_box))
    assert res["map50"] == pytest.approx(1.0)


def test_release_protocol_options_reach_the_data_set_and_nms(tmp_path):
    """``--single-label`` / ``--full-decode`` / ``--uniform-gain`` (the official demos' protocol)."""
    data = make_box_dataset(tmp_path / "ds")
    ev = Evaluator(data=data, img_size=160, batch_size=2, rect=False, workers=0, multi_label=False,
                   reduced_decode=False, uniform_gain=True)
    res = ev(BoxBackend(white_box))
    assert ev._ds.reduced_decode is False and not ev._ds.rect
    assert res["map50"] == pytest.approx(1.0) and res["map"] > 0.85
