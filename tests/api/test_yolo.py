"""``repyolo.YOLO``: one object through train, val, predict, export, bench, info and fuse; exported
files predict / val / bench only; the CLI gives the same results as the API it calls."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from repyolo import YOLO
from repyolo.cli import main
from repyolo.errors import RepyoloError


def _val_images(data) -> list[Path]:
    return sorted((Path(data).parent / "images" / "val").glob("*.jpg"))


def test_train_leaves_the_object_on_best_pt(trained):
    assert trained.kind == "checkpoint" and trained.source.endswith("weights/best.pt")
    assert trained.save_dir.name == "tiny" and (trained.save_dir / "weights" / "last.pt").is_file()
    assert trained.default_img() == 64 and trained.names[0] == "circle"
    assert trained.train_args["data"] and trained.trainer.summary["epochs"] == 1


def test_val_writes_a_new_run_folder_each_time(trained, tmp_path):
    first = trained.val(project=tmp_path)  # data: the one it was trained on
    assert trained.save_dir == tmp_path / "exp"
    for f in ("pr_curve.png", "confusion_matrix.png", "predictions.json"):
        assert (tmp_path / "exp" / f).is_file(), f
    second = trained.val(project=tmp_path, plots=False, json_out=tmp_path / "m.json")
    assert trained.save_dir == tmp_path / "exp2" and (tmp_path / "m.json").is_file()
    assert first["map"] == second["map"] and 0.0 <= first["map50"] <= 1.0
    trained.val(save=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "exp2", "m.json"]


def test_predict_call_and_stream(trained, synthetic_data, tmp_path):
    images = _val_images(synthetic_data)
    results = trained(str(images[0]), conf=0.001)
    assert len(results) == 1 and results[0].orig_shape == (64, 64)
    assert results[0].boxes.shape[1] == 4 and len(results[0].scores) == len(results[0].class_ids)
    stream = trained.predict([str(p) for p in images[:3]], stream=True)
    assert not isinstance(stream, list) and len(list(stream)) == 3
    arr = np.zeros((48, 80, 3), np.uint8)
    assert trained.predict(arr)[0].orig_shape == (48, 80)
    out = trained.predict(str(images[0]), save=True, save_txt=True, project=tmp_path, conf=0.001)
    assert trained.save_dir == tmp_path / "exp" and (tmp_path / "exp" / images[0].name).is_file()
    assert (tmp_path / "exp" / "labels" / f"{images[0].stem}.txt").read_text() == out[0].to_yolo_txt()
    trained.predict(str(images[0]))  # nothing written without save*
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


def test_cli_predict_is_the_api(trained, synthetic_data, tmp_path):
    image = str(_val_images(synthetic_data)[1])
    api = trained.predict(image, conf=0.001, save_txt=True, project=tmp_path / "api")
    assert main(["predict", "--weights", trained.source, "--source", image, "--conf", "0.001", "--save-txt",
                 "--project", str(tmp_path / "cli")]) == 0
    label = f"labels/{Path(image).stem}.txt"
    assert (tmp_path / "cli" / "exp" / label).read_text() == (tmp_path / "api" / "exp" / label).read_text()
    assert api[0].to_yolo_txt() == (tmp_path / "cli" / "exp" / label).read_text()


def test_info_fuse_export_and_the_exported_file(trained, synthetic_data, tmp_path):
    model = YOLO(trained.source)
    info = model.info()
    assert info["img"] == 64 and info["params"]["train"] > info["params"]["deploy"]
    assert model.fuse() is model and model.model.is_fused
    path = trained.export("onnx", output=tmp_path / "m.onnx")  # no img: the training size
    deployed = YOLO(path)
    assert deployed.kind == "exported" and tuple(deployed.backend.img_size) == (64, 64)
    assert deployed.names == trained.names and deployed.default_img() == 64
    assert len(deployed(str(_val_images(synthetic_data)[0]))) == 1
    assert 0.0 <= deployed.val(str(synthetic_data), save=False)["map50"] <= 1.0
    bench = deployed.bench(runs=1, warmup=0)
    assert list(bench["results"]) == ["onnx"] and bench["gflops"] is None and bench["img"] == [64, 64]
    for method, kwargs in (("train", {"data": str(synthetic_data)}), ("export", {}), ("info", {}), ("fuse", {})):
        with pytest.raises(RepyoloError, match="predict, val and bench only|train needs a model name"):
            getattr(deployed, method)(**kwargs)


def test_train_arguments_are_checked_before_work(tiny_model_yaml, synthetic_data):
    model = YOLO(str(tiny_model_yaml))
    with pytest.raises(RepyoloError, match="unknown argument 'epoch'"):
        model.train(data=str(synthetic_data), epoch=3)
    with pytest.raises(RepyoloError, match="needs data="):
        model.train()
    args = model._train_args(str(synthetic_data), {"epochs": 3, "lr0": 0.005, "hyp": {"mosaic": 0.5}})
    assert args.model == str(tiny_model_yaml) and args.epochs == 3 and args.weights is None
    assert args.hyp == {"mosaic": 0.5, "lr0": 0.005}
    with pytest.raises(RepyoloError, match="resume=True\\) needs a checkpoint"):
        model.train(resume=True)


def test_checkpoint_fine_tunes_and_resumes(trained, synthetic_data):
    model = YOLO(trained.source)
    assert model._train_args(str(synthetic_data), {}).weights == trained.source
    assert model._train_args(None, {"resume": True}).resume == trained.source


def test_unknown_model_name_is_one_line():
    with pytest.raises(RepyoloError) as info:
        YOLO("yolov6q")
    assert "yolov6q" in str(info.value) and "\n" not in str(info.value)


def test_export_defaults_to_the_training_size_on_the_cli(trained, tmp_path):
    assert main(["export", "--weights", trained.source, "--output", str(tmp_path / "m.onnx")]) == 0
    assert tuple(YOLO(tmp_path / "m.onnx").backend.img_size) == (64, 64)
    assert main(["export", "--weights", trained.source, "--img", "96", "--output", str(tmp_path / "b.onnx")]) == 0
    assert tuple(YOLO(tmp_path / "b.onnx").backend.img_size) == (96, 96)


def test_bench_takes_the_exported_file(trained, tmp_path, capsys, repyolo_log):
    onnx = trained.export("onnx", output=tmp_path / "m.onnx")
    assert main(["bench", "--weights", str(onnx), "--runs", "1", "--warmup", "0"]) == 0
    assert "| onnx |" in capsys.readouterr().out
    assert main(["bench", "--weights", str(onnx), "--backends", "torch,onnx"]) == 2
    assert "runs on the onnx backend only" in repyolo_log.text()


def test_threads_reach_the_evaluator_predictor_and_trainer(trained, synthetic_data, tmp_path, monkeypatch,
                                                           repyolo_log):
    import repyolo.api.model as api_model
    import repyolo.engine.evaluator as evaluator
    import repyolo.engine.predictor as predictor

    seen = {}

    def recorder(name):
        def make(*args, **kwargs):
            seen[name] = kwargs.get("threads", "absent")
            raise RepyoloError(f"{name} stopped by the test")
        return make

    def training(targs):
        seen["demo"] = targs.threads
        raise RepyoloError("train stopped by the test")

    monkeypatch.setattr(evaluator, "Evaluator", recorder("val"))
    monkeypatch.setattr(predictor, "Predictor", recorder("predict"))
    monkeypatch.setattr(api_model, "run_training", training)
    image = str(_val_images(synthetic_data)[0])
    assert main(["val", "--weights", trained.source, "--threads", "1", "--no-save"]) == 2
    assert main(["predict", "--weights", trained.source, "--source", image, "--threads", "1", "--nosave"]) == 2
    assert main(["demo", "--project", str(tmp_path), "--threads", "1", "--n-train", "4", "--n-val", "2",
                 "--img", "64"]) == 2
    assert seen == {"val": 1, "predict": 1, "demo": 1}
    main(["val", "--weights", trained.source, "--no-save"])
    assert seen["val"] == "absent"  # not given: the components' own thread policy


def test_cli_val_writes_runs_val_exp_by_default(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for expected in ("exp", "exp2"):
        assert main(["val", "--weights", trained.source]) == 0  # data: the checkpoint's own
        run = tmp_path / "runs" / "val" / expected
        assert (run / "pr_curve.png").is_file() and (run / "confusion_matrix.png").is_file()
    assert "mAP@0.5:0.95" in capsys.readouterr().out
