"""FLOPs are counted on shapes only (meta tensors): exact, fast whatever the machine's load (a real
forward pass of yolov6s took 77 s on a busy 2-core machine), and the model is left as it was."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from repyolo import build_model
from repyolo.utils.flops import count_gflops


def _real_gflops(model, size) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def test_counting_runs_on_meta_tensors_and_matches_a_real_pass():
    model = build_model("yolov6n", num_classes=3).train()
    seen = []
    hook = model.backbone.register_forward_hook(lambda m, i, o: seen.append(i[0].device.type))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gflops = count_gflops(model, 128)
    hook.remove()
    assert seen == ["meta"], "count_gflops ran a real forward pass"
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu"
    assert gflops == _real_gflops(model, 128)
    fused = model.eval().fuse()
    assert count_gflops(fused, 128) == _real_gflops(fused, 128) < gflops


def test_info_of_a_large_model_counts_without_computing(capsys, monkeypatch):
    """yolov6l6 at 1280 px: no real convolution runs (it would take minutes on 2 cores)."""
    from repyolo.cli import main

    real_conv = torch.nn.Conv2d._conv_forward
    calls = []

    def spy(self, x, *a):
        calls.append(x.device.type)
        return real_conv(self, x, *a)

    monkeypatch.setattr(torch.nn.Conv2d, "_conv_forward", spy)
    assert main(["info", "--model", "yolov6l6", "--json"]) == 0
    assert calls and set(calls) == {"meta"}
    assert '"img": 1280' in capsys.readouterr().out
