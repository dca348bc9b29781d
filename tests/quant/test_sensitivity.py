"""Sensitivity analysis: every conv scored alone by four metrics, rankings consistent with an
independent re-measurement, JSON report round trip."""
from __future__ import annotations

import math

import numpy as np
import pytest
from quant_helpers import IMG, run_onnx

from repyolo.errors import RepyoloError
from repyolo.quant.evaluate import normalized, output_errors
from repyolo.quant.sensitivity import METRICS, SensitivityReport, analyze, candidate_layers


@pytest.fixture(scope="module")
def report(ptq_ctx, syn_data):
    from repyolo.quant.evaluate import SubsetEvaluator

    evaluator = SubsetEvaluator(syn_data, IMG, n_images=4)
    return analyze(ptq_ctx, evaluator, metric_images=4, layers=ptq_ctx.fp.convs[::3], threads=1)


def test_every_layer_ranked_by_each_metric(report, ptq_ctx):
    assert candidate_layers(ptq_ctx) == ptq_ctx.fp.convs  # every conv is a candidate by default
    layers = ptq_ctx.fp.convs[::3]  # a third of them keeps the test short
    assert [r.node for r in report.layers] == layers
    assert report.metrics() == list(METRICS)
    by_node = {r.node: r for r in report.layers}
    for metric in METRICS:
        ranking = report.ranking(metric)
        assert sorted(ranking) == sorted(layers)
        key = {"map": lambda r: -r.map_drop, "mse": lambda r: -r.mse, "snr": lambda r: r.snr,
               "cosine": lambda r: r.cosine}[metric]
        values = [key(by_node[n]) for n in ranking]
        assert values == sorted(values), metric  # most sensitive first
    assert report.fp32_map is not None and report.eval_images == 4
    assert all(r.mse > 0 and 0.0 < r.cosine <= 1.0 + 1e-9 for r in report.layers)
    # the fully quantized model hurts more than the median single layer
    assert report.full_int8["mse"] > float(np.median([r.mse for r in report.layers]))


def test_top_mse_layer_hurts_more_than_bottom_layer(report, ptq_ctx):
    """Re-measure independently: quantize only the top-1 and only the bottom-1 MSE layer."""
    ranking = report.ranking("mse")
    top, bottom = ranking[0], ranking[-1]
    x = ptq_ctx.images[:4].astype(np.float32) / 255.0
    ref = normalized(run_onnx(ptq_ctx.fp.path, x), IMG)
    err_top = output_errors(ref, normalized(run_onnx(ptq_ctx.build(only=[top]), x), IMG))
    err_bottom = output_errors(ref, normalized(run_onnx(ptq_ctx.build(only=[bottom]), x), IMG))
    assert err_top["mse"] > err_bottom["mse"]
    assert err_top["snr"] < err_bottom["snr"]


def test_output_errors_definitions():
    ref = np.ones((2, 3, 5))
    same = output_errors(ref, ref)
    assert same["mse"] == 0.0 and math.isinf(same["snr"]) and same["cosine"] == pytest.approx(1.0)
    noisy = output_errors(ref, ref + 0.1)
    assert noisy["mse"] == pytest.approx(0.01) and noisy["snr"] == pytest.approx(20.0)
    assert output_errors(ref, -ref)["cosine"] == pytest.approx(-1.0)


def test_report_json_round_trip_and_table(report, tmp_path):
    path = report.save(tmp_path / "sens.json")
    back = SensitivityReport.load(path)
    for metric in METRICS:
        assert back.ranking(metric) == report.ranking(metric)
    table = report.table()
    assert "MSE" in table and report.layers[0].node[-20:] in table
    assert len(report.table(top=3).splitlines()) < len(table.splitlines())
    with pytest.raises(RepyoloError, match="not a repyolo sensitivity report"):
        (tmp_path / "bad.json").write_text("{}")
        SensitivityReport.load(tmp_path / "bad.json")


def test_analyze_without_map_metric(ptq_ctx):
    layers = ptq_ctx.fp.convs[:3]
    rep = analyze(ptq_ctx, None, metric_images=2, layers=layers, threads=1, include_full=False)
    assert rep.metrics() == ["mse", "snr", "cosine"] and rep.fp32_map is None
    with pytest.raises(RepyoloError, match="no mAP"):
        rep.ranking("map")
    with pytest.raises(RepyoloError, match="not conv nodes"):
        analyze(ptq_ctx, None, layers=["/nope/Conv"])
