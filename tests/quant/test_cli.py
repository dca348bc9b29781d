"""``repyolo quantize ptq | sensitivity | qat`` end to end on a tiny model, and ``repyolo val`` on
the INT8 file through the ONNX backend."""
from __future__ import annotations

import json

import onnx
import pytest
import torch
from quant_helpers import IMG

from repyolo.cli import main
from repyolo.quant import graph as G


def test_cli_ptq_then_val(tiny_weights, syn_data, tmp_path, capsys):
    out = tmp_path / "m_int8.onnx"
    assert main(["quantize", "ptq", "--weights", tiny_weights, "--data", syn_data, "--img", str(IMG),
                 "--calib", "4", "--calibrator", "percentile", "--output", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    model = onnx.load(str(out))
    assert G.qdq_counts(model)["QuantizeLinear"] > 0
    assert json.loads(G.read_metadata(model)["quantization"])["calibrator"] == "percentile"
    res = tmp_path / "val.json"
    assert main(["val", "--weights", str(out), "--data", syn_data, "--img", str(IMG), "--batch", "2",
                 "--workers", "0", "--json", str(res), "--no-plots"]) == 0
    assert 0.0 <= json.loads(res.read_text())["map"] <= 1.0


def test_cli_sensitivity_json_and_partial(tiny_weights, syn_data, tmp_path, capsys, ptq_ctx):
    report = tmp_path / "sens.json"
    layers = ptq_ctx.fp.convs[:4]
    assert main(["quantize", "sensitivity", "--weights", tiny_weights, "--data", syn_data, "--img", str(IMG),
                 "--calib", "4", "--eval-images", "3", "--metric-images", "2", "--json", str(report),
                 "--threads", "1", "--layers", *layers]) == 0
    text = capsys.readouterr().out
    assert "most sensitive by mse" in text and "mAP drop" in text
    data = json.loads(report.read_text())
    assert set(data["rankings"]) == {"map", "mse", "snr", "cosine"} and len(data["layers"]) == 4
    out = tmp_path / "partial.onnx"
    assert main(["quantize", "ptq", "--weights", tiny_weights, "--data", syn_data, "--img", str(IMG),
                 "--calib", "4", "--skip-sensitive", "1", "--sensitivity", str(report), "--output", str(out)]) == 0
    assert G.float_convs(onnx.load(str(out))) == data["rankings"]["mse"][:1]


def test_cli_errors_are_one_line(tiny_weights, syn_data, tmp_path, caplog):
    assert main(["quantize", "ptq", "--weights", tiny_weights, "--data", syn_data, "--img", str(IMG),
                 "--calib", "2", "--exclude", "/no/such/Conv", "--output", str(tmp_path / "x.onnx")]) == 2
    assert main(["quantize", "ptq", "--weights", str(tmp_path / "missing.pt"), "--data", syn_data]) == 2
    with pytest.raises(SystemExit):
        main(["quantize", "qat", "--weights", tiny_weights, "--data", syn_data])  # --epochs is required


def test_cli_qat(tiny_weights, syn_data, tmp_path, capsys):
    n = torch.get_num_threads()
    try:
        assert main(["quantize", "qat", "--weights", tiny_weights, "--data", syn_data, "--img", str(IMG),
                     "--epochs", "1", "--batch", "4", "--calib", "4", "--workers", "0", "--threads", "1",
                     "--output", str(tmp_path / "q.onnx")]) == 0
    finally:
        torch.set_num_threads(n)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].endswith("q.onnx") and json.loads(lines[0])["epoch"] == 1
