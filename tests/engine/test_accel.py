"""Mixed precision: which dtype trains where, and what stays float32 under autocast."""
from __future__ import annotations

import pytest
import torch

from repyolo import build_model
from repyolo.engine import accel
from repyolo.engine.accel import autocast_dtype
from repyolo.engine.trainer import TrainArgs, Trainer

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
NATIVE, EMULATED = frozenset({"avx512_bf16", "avx512f"}), frozenset({"avx2"})


@pytest.mark.parametrize("amp, bf16, native, expected", [
    (True, None, True, torch.bfloat16),    # the default on a CPU with native bfloat16
    (True, None, False, None),             # elsewhere float32, silently
    (False, None, True, None),             # --no-amp: float32
    (True, False, True, None),             # an explicit bf16=False (e.g. resumed from an older run)
    (False, True, True, torch.bfloat16),   # --bf16 asks for it even with --no-amp
])
def test_cpu_precision_choice(amp, bf16, native, expected, monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    assert autocast_dtype(CPU, amp, bf16, NATIVE if native else EMULATED) is expected


def test_explicit_bf16_without_native_support_warns_and_trains_in_float32(caplog):
    with caplog.at_level("WARNING", logger=accel.LOGGER.name):
        assert autocast_dtype(CPU, True, True, EMULATED) is None
    assert "no native bfloat16" in caplog.text


def test_cuda_uses_float16_with_amp_only():
    assert autocast_dtype(CUDA, True, None) is torch.float16
    assert autocast_dtype(CUDA, False, None) is None


def test_head_predictions_are_float32_under_bfloat16_autocast(tiny_model_yaml):
    """The backbone, neck and head branches run in bfloat16; the prediction convs in float32, so box
    distances are not rounded to bfloat16's 1/16-stride steps."""
    model = build_model(str(tiny_model_yaml), num_classes=5).train()
    with torch.no_grad():
        for conv in model.detect.reg_preds:
            conv.weight.normal_(0, 0.05)
            conv.bias.fill_(10.3)  # a distance that bfloat16 would round to 10.25 or 10.375
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(torch.rand(2, 3, 64, 64))
    assert out["feats"][0].dtype == torch.bfloat16
    assert out["cls"].dtype == out["reg"].dtype == out["anchors"].dtype == out["strides"].dtype == torch.float32
    assert not torch.equal(out["reg"], out["reg"].bfloat16().float())


def test_trainer_computes_the_loss_outside_autocast(synthetic_data, tiny_model_yaml, tmp_path):
    trainer = Trainer(TrainArgs(model=str(tiny_model_yaml), data=str(synthetic_data), epochs=1, img=64, batch=8,
                                project=str(tmp_path), name="amp", workers=0, no_val=True, max_batches=1))
    trainer.amp_dtype = torch.bfloat16  # the path of a native-bfloat16 CPU, forced (emulated if need be)
    seen = []
    criterion = trainer.criterion

    def spy(out, *args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), out["cls"].dtype, out["reg"].dtype, out["feats"][0].dtype))
        return criterion(out, *args, **kwargs)

    trainer.criterion = spy
    trainer.train()
    assert seen == [(False, torch.float32, torch.float32, torch.bfloat16)]
