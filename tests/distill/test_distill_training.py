"""Distillation inside the trainer, and the deployment of a distilled student: the DLD branch is a
training-only extra, so the fused student has exactly the parameters of a plain model of its size."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from distill_helpers import randomized, tiny_cfg

from repyolo.io.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
from repyolo.nn.model import build_model
from repyolo.utils.flops import count_params


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
    from repyolo.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("syn"), n_train=8, n_val=4, img_size=64, seed=0)


@pytest.fixture(scope="module")
def distilled_run(synthetic_data, tmp_path_factory):
    """One short distilled training run of a v3-N-style student from a wider teacher checkpoint."""
    from repyolo.engine.trainer import TrainArgs, Trainer
    from repyolo.loss import distill

    tmp = tmp_path_factory.mktemp("distill_run")
    student_yaml = tmp / "student.yaml"
    student_yaml.write_text(yaml.safe_dump(tiny_cfg()))
    teacher = randomized(build_model(tiny_cfg(width=0.25), num_classes=5), seed=4)
    teacher_pt = save_checkpoint({"model_cfg": teacher.cfg, "names": [str(i) for i in range(5)],
                                  "model": teacher.state_dict(), "epoch": 0}, tmp / "teacher.pt")
    calls = []
    original = distill.SelfDistiller.forward

    def spy(self, imgs, out, epoch=0):
        loss, items = original(self, imgs, out, epoch)
        calls.append((float(loss.detach()), items.clone(), epoch))
        return loss, items

    distill.SelfDistiller.forward = spy
    try:
        trainer = Trainer(TrainArgs(model=str(student_yaml), data=str(synthetic_data), epochs=1, img=64, batch=4,
                                    project=str(tmp), name="student", workers=0, exist_ok=True, no_val=True,
                                    teacher=str(teacher_pt), distill=True))
        trainer.train()
    finally:
        distill.SelfDistiller.forward = original
    return trainer, calls, student_yaml


def test_trainer_calls_the_distiller_with_finite_positive_losses(distilled_run):
    trainer, calls, _ = distilled_run
    assert len(calls) == trainer.nb
    for loss, items, epoch in calls:
        assert np.isfinite(loss) and loss > 0 and (items > 0).all() and 0 <= epoch < 1  # fractional epoch
    assert trainer.distiller.student_box == "reg_dist" and trainer.distiller.teacher_box == "distances"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript ONNX exporter, used on purpose
def test_distilled_checkpoint_fuses_exports_and_has_plain_parameter_count(distilled_run, tmp_path):
    import onnxruntime as ort

    trainer, _, student_yaml = distilled_run
    ckpt = read_checkpoint(trainer.wdir / "last.pt")
    assert ckpt["model_cfg"]["head"]["aux_dist"] is True
    assert any(k.startswith("detect.reg_preds_dist") for k in ckpt["model"])
    model = model_from_checkpoint(ckpt)
    train_params = count_params(model)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
    model.fuse()
    assert model.detect.reg_preds_dist is None and model.cfg["head"]["aux_dist"] is False
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(before, after, atol=1e-3, rtol=1e-3)

    plain = build_model(str(student_yaml), num_classes=5).fuse()
    assert count_params(model) == count_params(plain)
    dist_branch = sum(p.numel() for n, p in model_from_checkpoint(ckpt).named_parameters() if "reg_preds_dist" in n)
    assert dist_branch > 0 and train_params - dist_branch == count_params(build_model(str(student_yaml), 5))

    path = tmp_path / "student.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=13, input_names=["images"],
                      output_names=["out"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {"images": x.numpy()})[0]
    assert onnx_out.shape == tuple(after.shape)
    np.testing.assert_allclose(onnx_out, after.numpy(), atol=1e-3, rtol=1e-3)
