"""Partial quantization: the mixed model keeps exactly the requested convs in FP32, and the
mAP-budget search finds the smallest number of skipped layers."""
from __future__ import annotations

import onnx
import pytest
from quant_helpers import IMG

from repyolo.errors import RepyoloError
from repyolo.quant import graph as G
from repyolo.quant.partial import search_map_budget
from repyolo.quant.ptq import quantize_ptq
from repyolo.quant.sensitivity import analyze


def test_excluded_convs_are_exactly_the_fp32_convs(ptq_ctx):
    convs = ptq_ctx.fp.convs
    chosen = [convs[3], convs[0], convs[-1]]
    model = ptq_ctx.build(exclude=chosen)
    assert G.float_convs(model) == [c for c in convs if c in chosen]  # graph order
    assert len(G.quantized_convs(model)) == len(convs) - 3


def test_skip_sensitive_with_a_saved_report(ptq_ctx, tiny_weights, syn_data, tmp_path):
    rep = analyze(ptq_ctx, None, metric_images=2, threads=1, include_full=False)
    report_path = rep.save(tmp_path / "sens.json")
    res = quantize_ptq(tiny_weights, syn_data, calib=6, img_size=IMG, skip_sensitive=2, sensitivity=report_path,
                       rank_by="snr", output=tmp_path / "partial.onnx")
    expected = rep.ranking("snr")[:2]
    assert sorted(res.skipped) == sorted(expected)
    model = onnx.load(str(res.path))
    assert sorted(G.float_convs(model)) == sorted(expected) == sorted(res.fp32_convs)
    assert G.read_metadata(model)["quantization"].count("partial-ptq") == 1


def test_map_budget_search_finds_smallest_k(monkeypatch):
    """Bisection on a fake model whose mAP drop shrinks as layers are skipped."""
    import repyolo.quant.evaluate as ev

    ranking = [f"conv{i}" for i in range(20)]
    drops = {k: max(0.0, 0.05 - 0.004 * k) for k in range(21)}  # drop <= 0.01 first at k = 10

    class FakeCtx:
        class fp:
            path = "fp32.onnx"

        def build(self, exclude=()):
            return ("model", len([e for e in exclude if e.startswith("conv")]))

    monkeypatch.setattr(ev, "session_backend", lambda model, threads=None, workdir=None: model)
    evaluated = []

    def evaluator(backend):
        if backend == "fp32.onnx":
            return {"map": 0.5}
        evaluated.append(backend[1])
        return {"map": 0.5 - drops[backend[1]]}

    k, log = search_map_budget(FakeCtx(), ranking, evaluator, budget=0.01 + 1e-9)
    assert k == 10
    assert log[0]["k"] == -1 and {row["k"] for row in log[1:]} == set(evaluated)
    assert len(evaluated) <= 10  # galloping + bisection, not a linear scan of 20
    k0, _ = search_map_budget(FakeCtx(), ranking, evaluator, budget=0.06)
    assert k0 == 0
    with pytest.raises(RepyoloError):
        search_map_budget(FakeCtx(), ranking, evaluator, budget=-1)


def test_partial_options_conflict(tiny_weights, syn_data, tmp_path):
    with pytest.raises(RepyoloError, match="either"):
        quantize_ptq(tiny_weights, syn_data, calib=2, img_size=IMG, skip_sensitive=1, map_budget=0.01,
                     output=tmp_path / "x.onnx")
