"""``repyolo bench`` and the metadata that makes exported files self-describing."""
from __future__ import annotations

import json

import onnx
import pytest
import yaml

from repyolo.cli import main
from repyolo.errors import CheckpointError
from repyolo.export import export_model
from repyolo.runtime import load_backend
from repyolo.runtime.metadata import from_strings, to_strings


def test_metadata_round_trip_and_foreign_maps():
    meta = {"format": "repyolo", "model": "123", "names": ['a "quoted" & <odd> name', "café", "7"],
            "stride": 32, "img_size": [640, 640], "batch": None, "letterbox": {"pad_value": 114, "center": True}}
    back = from_strings(to_strings(meta), "x.onnx")
    assert back == {**meta, "model": "123"}
    for props in ({}, {"format": "yolov6"}, {"format": "repyolo"}):
        with pytest.raises(CheckpointError, match="x.onnx"):
            from_strings(props, "x.onnx")


def test_exported_files_describe_themselves(yolov6n_model, tmp_path):
    model = yolov6n_model
    saved = list(model.names)
    model.names = ['a "quoted" & <odd> name', "café"] + saved[2:]
    try:
        onnx_path = export_model(model, "onnx", img_size=(96, 128), output=tmp_path / "m.onnx")
        ov_dir = export_model(model, "openvino", img_size=(96, 128), output=tmp_path / "m_openvino_model")
    finally:
        model.names = saved
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(props["names"])[:2] == ['a "quoted" & <odd> name', "café"]
    assert json.loads(props["letterbox"]) == {"pad_value": 114, "center": True}
    assert props["output_layout"] == "raw" and props["model"] == "yolov6n" and "repyolo_version" in props
    for b in (load_backend(onnx_path), load_backend(ov_dir)):
        assert b.names[:2] == ['a "quoted" & <odd> name', "café"] and b.nc == 80
        assert b.metadata["img_size"] == [96, 128] and b.metadata["strides"] == [8, 16, 32]
        assert b.metadata["input"] == {"name": "images", "layout": "NCHW", "dtype": "float32", "color": "RGB",
                                       "range": [0, 1]}
    side = yaml.safe_load((ov_dir / "metadata.yaml").read_text())
    assert side["names"][1] == "café" and side["stride"] == 32


def test_bench_cli_measures_every_backend(yolov6n_ckpt, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--weights", yolov6n_ckpt, "--img", "64", "--backends",
                 "torch,torch-unfused,onnx,openvino", "--threads", "2", "--warmup", "1", "--runs", "3",
                 "--json", str(out)]) == 0
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert list(result["results"]) == ["torch", "torch-unfused", "onnx", "openvino"]
    for name, r in result["results"].items():
        assert r["runs"] == 3 and 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"]
        assert r["throughput_ips"] > 0 and f"| {name} |" in table
    assert result["img"] == [64, 64] and result["threads"] == 2 and result["gflops"] > 0


def test_bench_rejects_unknown_backend(yolov6n_ckpt):
    assert main(["bench", "--weights", yolov6n_ckpt, "--img", "64", "--backends", "torch,tensorrt"]) == 2
