"""Self-distillation losses: zero for a perfect student, positive otherwise, gradients to the student only,
the cosine schedule of alpha, the teacher's BN kept frozen, sharp teachers, CWD."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from distill_helpers import bn_frozen_train, randomized, tiny_cfg

from repyolo.cfg.settings import Hyp
from repyolo.errors import CheckpointError, RepyoloError
from repyolo.loss.distill import binary_kl, build_distiller, cosine_alpha, cwd_loss, two_bin_distribution
from repyolo.nn.model import build_model


def _teacher(seed: int, **cfg_kw) -> nn.Module:
    torch.manual_seed(seed)
    return randomized(build_model(tiny_cfg(**cfg_kw), num_classes=3), seed=seed + 100)


@pytest.mark.parametrize("use_dfl", [False, True])
@pytest.mark.parametrize("cls_mode", ["binary", "softmax"])
def test_zero_when_teacher_equals_student(use_dfl, cls_mode, imgs):
    student = randomized(build_model(tiny_cfg(use_dfl=use_dfl, aux_dist=not use_dfl), num_classes=3), seed=3)
    bn_frozen_train(student)  # same weights, same input, same BN statistics as the frozen teacher
    distiller = build_distiller(student, student, {"distill_cls_mode": cls_mode}, epochs=10, device="cpu")
    assert distiller.student_box == ("reg" if use_dfl else "reg_dist") and not distiller.teacher_sharp
    out = student(imgs)
    loss, items = distiller(imgs, out, epoch=0)
    assert items.shape == (2,)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-7)
    assert torch.allclose(items, torch.zeros(2), atol=1e-7)
    # building from the student never froze the student itself
    assert all(p.requires_grad for p in student.parameters() if p is not student.detect.proj_conv.weight)


@pytest.mark.parametrize("cls_mode", ["binary", "softmax"])
def test_positive_finite_and_gradients_reach_only_the_student(student, imgs, cls_mode):
    teacher = _teacher(7, aux_dist=True)
    distiller = build_distiller(student, teacher, {"distill_cls_mode": cls_mode}, epochs=10, device="cpu")
    t_frozen = distiller.teacher
    assert t_frozen is not teacher  # a copy: the caller's model is untouched
    assert all(not p.requires_grad for p in t_frozen.parameters())
    assert list(distiller.parameters()) == []  # the teacher is not a sub-module
    out = student.train()(imgs)
    loss, items = distiller(imgs, out, epoch=0)
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    assert (items > 0).all() and torch.isfinite(items).all()
    assert not items.requires_grad
    loss.backward()
    grads = {n: p.grad for n, p in student.named_parameters()}
    assert grads["detect.cls_preds.0.weight"].abs().sum() > 0
    assert grads["detect.reg_preds_dist.0.weight"].abs().sum() > 0  # the DLD branch learns the box distributions
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("backbone."))
    assert all(p.grad is None for p in t_frozen.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_loss_is_weighted_by_alpha_and_weights(student, imgs):
    teacher = _teacher(7, aux_dist=True)
    d = build_distiller(student, teacher, {"distill_weight_cls": 2.0, "distill_weight_dfl": 0.5}, 10, "cpu")
    with torch.no_grad():
        out = student.train()(imgs)
        loss0, items = d(imgs, out, epoch=0)
        loss5, _ = d(imgs, out, epoch=5)
    expected = 2.0 * items[0] + 0.5 * items[1]
    assert float(loss0) == pytest.approx(float(expected), rel=1e-5)
    assert float(loss5) == pytest.approx(float(expected) * cosine_alpha(5, 10), rel=1e-5)


def test_alpha_follows_the_cosine_curve():
    a0, amin, epochs = 1.0, Hyp().distill_alpha_min, 40
    assert cosine_alpha(0, epochs) == pytest.approx(a0)
    assert cosine_alpha(epochs / 2, epochs) == pytest.approx((a0 + amin) / 2)
    assert cosine_alpha(epochs, epochs) == pytest.approx(amin)
    assert cosine_alpha(epochs * 3, epochs) == pytest.approx(amin)  # clamped past the end
    values = [cosine_alpha(e, epochs) for e in range(epochs + 1)]
    assert all(x > y for x, y in zip(values, values[1:]))  # strictly decaying
    for e in (3, 11.5, 27):
        assert cosine_alpha(e, epochs, 2.0, 0.0) == pytest.approx(2.0 * (1 + math.cos(math.pi * e / epochs)) / 2)


def test_teacher_batchnorm_stays_in_eval_and_head_returns_raw_outputs(student, imgs):
    teacher = _teacher(7, aux_dist=True)
    d = build_distiller(student, teacher, {}, 10, "cpu")
    t = d.teacher
    stats = {n: b.clone() for n, b in t.named_buffers() if "running" in n}
    student.train()
    d.train()  # the trainer may flip modes: it must never reach the teacher
    out1 = d.teacher_outputs(imgs)
    out2 = d.teacher_outputs(imgs)
    assert set(out1) >= {"cls", "reg", "reg_dist", "feats"}
    assert out1["reg_dist"].shape[-1] == 4 * (t.detect.reg_max + 1)
    assert torch.equal(out1["cls"], out2["cls"])  # eval BN: deterministic, independent of the batch
    assert all(torch.equal(stats[n], b) for n, b in t.named_buffers() if "running" in n)
    assert not any(m.training for m in t.modules())
    # the teacher's raw logits are exactly what its eval-mode (deploy) output is made of
    with torch.no_grad():
        eval_out = t(imgs)
    assert torch.allclose(eval_out[..., 4:], out1["cls"].sigmoid(), atol=1e-6)
    assert not out1["cls"].requires_grad


def test_batch_composition_does_not_change_teacher_outputs(student, imgs):
    d = build_distiller(student, _teacher(7, aux_dist=True), {}, 10, "cpu")
    both = d.teacher_outputs(imgs)["cls"]
    first = d.teacher_outputs(imgs[:1])["cls"]
    assert torch.allclose(both[:1], first, atol=1e-5)


def test_teacher_without_dfl_gives_sharp_two_bin_targets(student, imgs):
    teacher = _teacher(9)  # plain v3-N: 4 distances only, no DLD branch
    d = build_distiller(student, teacher, {}, 10, "cpu")
    assert d.teacher_box == "distances" and d.teacher_sharp
    loss, items = d(imgs, student.train()(imgs), epoch=0)
    assert torch.isfinite(loss) and (items > 0).all()


def test_fused_deploy_teacher_works_like_its_training_form(student, imgs):
    import copy

    teacher = _teacher(7, aux_dist=True)
    fused = copy.deepcopy(teacher).fuse()  # a deploy checkpoint: re-parameterized, DLD branch dropped
    d_fused = build_distiller(student, fused, {}, 10, "cpu")
    d_train = build_distiller(student, teacher, {}, 10, "cpu")
    assert d_fused.teacher_box == "distances" and d_train.teacher_box == "reg_dist"
    out = student.train()(imgs)
    t_fused, t_train = d_fused.teacher_outputs(imgs), d_train.teacher_outputs(imgs)
    assert torch.allclose(t_fused["cls"], t_train["cls"], atol=1e-3)
    _, items_fused = d_fused(imgs, out, 0)
    _, items_train = d_train(imgs, out, 0)
    assert float(items_fused[0]) == pytest.approx(float(items_train[0]), rel=1e-3)
    assert torch.isfinite(items_fused).all() and float(items_fused[1]) > 0


def test_two_bin_distribution_has_the_distance_as_expectation():
    dist = torch.tensor([[0.0, 0.3, 5.5, 15.2], [2.0, 7.99, 16.0, 40.0]])
    p = two_bin_distribution(dist, 16)
    assert p.shape == (2, 4, 17)
    assert torch.allclose(p.sum(-1), torch.ones(2, 4))
    assert ((p > 0).sum(-1) <= 2).all()
    expect = p @ torch.arange(17.0)
    assert torch.allclose(expect, dist.clamp(0, 15.99), atol=1e-5)


def test_binary_kl_is_zero_on_the_diagonal_and_positive_elsewhere():
    z = torch.linspace(-30, 30, 61)
    assert binary_kl(z, z).abs().max() == 0
    kl = binary_kl(z, z.flip(0))
    assert torch.isfinite(kl).all() and (kl[z != 0] > 0).all()


def test_teacher_with_other_classes_or_strides_is_refused(student, tmp_path):
    from repyolo.io.checkpoint import load_model, save_checkpoint

    other_nc = build_model(tiny_cfg(), num_classes=4)
    path = save_checkpoint({"model_cfg": other_nc.cfg, "names": list("abcd"), "model": other_nc.state_dict(),
                            "epoch": 0}, tmp_path / "t4.pt")
    with pytest.raises(RepyoloError, match=r"t4\.pt: the teacher predicts 4 classes, the student 3"):
        build_distiller(student, load_model(path), {}, 10, "cpu", source=str(path))
    p6 = build_model(tiny_cfg(base="yolov6n6"), num_classes=3)
    with pytest.raises(RepyoloError, match=r"strides \[8, 16, 32, 64\] differ from the student's \[8, 16, 32\]"):
        build_distiller(student, p6, {}, 10, "cpu")
    with pytest.raises(RepyoloError, match="needs a teacher"):
        build_distiller(student, None, {}, 10, "cpu")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_teacher_loads_from_a_checkpoint_with_ema_weights(student, imgs, tmp_path):
    from repyolo.io.checkpoint import load_model, save_checkpoint

    teacher = _teacher(7, aux_dist=True)
    junk = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in teacher.state_dict().items()}
    path = save_checkpoint({"model_cfg": teacher.cfg, "names": list("abc"), "model": junk,
                            "ema": teacher.state_dict(), "epoch": 3}, tmp_path / "teacher.pt")
    from_file = build_distiller(student, load_model(path), {}, 10, "cpu")
    from_model = build_distiller(student, teacher, {}, 10, "cpu")
    out = student.train()(imgs)
    with torch.no_grad():
        a, _ = from_file(imgs, out, 0)
        b, _ = from_model(imgs, out, 0)
    assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_cwd_loss_properties():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 8, 5, 6, generator=g)
    t = torch.randn(2, 8, 5, 6, generator=g)
    assert float(cwd_loss(t, t, 2.0)) == pytest.approx(0.0, abs=1e-7)
    v = cwd_loss(s, t, 2.0)
    assert float(v) > 0
    shift = torch.randn(1, 8, 1, 1, generator=g)
    assert float(cwd_loss(s + shift, t, 2.0)) == pytest.approx(float(v), rel=1e-5)  # per-channel softmax
    with pytest.raises(ValueError, match="same shape"):
        cwd_loss(s, t[:, :4], 1.0)


def test_cwd_adapters_are_trainable_and_the_only_parameters(student, imgs):
    wide = _teacher(5, width=0.25, aux_dist=True)
    d = build_distiller(student, wide, {"distill_weight_cwd": 1.0}, 10, "cpu")
    params = list(d.parameters())
    assert params and all(p.requires_grad for p in params)
    assert [a.out_channels for a in d.adapters] == list(wide.neck.out_channels)
    loss, _ = d(imgs, student.train()(imgs), 0)
    loss.backward()
    assert float(d.last_cwd) > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params if p.dim() == 4)
    same = build_distiller(student, student, {"distill_weight_cwd": 1.0}, 10, "cpu")
    assert list(same.parameters()) == []  # equal widths: identity adapters


def test_cwd_adapters_take_the_features_of_a_mixed_precision_forward(student, imgs):
    """The trainer runs the forward under autocast and the losses outside it: bfloat16 student
    features meet float32 adapters."""
    wide = _teacher(5, width=0.25, aux_dist=True)
    d = build_distiller(student, wide, {"distill_weight_cwd": 1.0}, 10, "cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = student.train()(imgs)
    assert out["feats"][0].dtype == torch.bfloat16
    loss, _ = d(imgs, out, 0)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and float(d.last_cwd) > 0


def test_unknown_class_mode_is_a_config_error(student):
    from repyolo.errors import ConfigError

    with pytest.raises(ConfigError, match="distill_cls_mode"):
        build_distiller(student, student, {"distill_cls_mode": "ranking"}, 10, "cpu")


def _distance_student(seed: int = 3) -> nn.Module:
    """A v3-S-style student with the official distill_ns DLD branch on a reg_max-0 config: 4 distances."""
    cfg = tiny_cfg(aux_dist=True, base="yolov6s")
    cfg["head"]["dist_reg_max"] = 0
    torch.manual_seed(seed)
    model = randomized(build_model(cfg, num_classes=3), seed=seed)
    with torch.no_grad():  # positive distances, as a trained branch predicts
        for conv in model.detect.reg_preds_dist:
            conv.bias.uniform_(1.0, 3.0)
    return model


@pytest.mark.parametrize("teacher_kind", ["distances", "dfl", "self"])
def test_student_with_plain_distance_branch_is_distilled_with_giou(teacher_kind, imgs):
    student = _distance_student()
    if teacher_kind == "self":
        teacher = student
    else:
        teacher = _teacher(7, use_dfl=teacher_kind == "dfl", aux_dist=False)
    d = build_distiller(student, teacher, {}, 10, "cpu")
    assert (d.student_box, d.student_bins) == ("reg_dist", 1)
    out = bn_frozen_train(student)(imgs) if teacher_kind == "self" else student.train()(imgs)
    assert out["reg_dist"].shape[-1] == 4
    loss, items = d(imgs, out, epoch=0)
    assert torch.isfinite(loss) and torch.isfinite(items).all()
    if teacher_kind == "self":  # the student's distances are the teacher's own DLD distances: 1 - GIoU = 0
        assert float(items[1]) == pytest.approx(0.0, abs=1e-6)
        return
    assert 0 < float(items[1]) <= 2.0  # 1 - GIoU, weighted mean
    loss.backward()
    assert student.detect.reg_preds_dist[0].weight.grad.abs().sum() > 0


def test_teacher_with_plain_distance_branch_gives_sharp_targets_to_a_dfl_student(imgs):
    student = randomized(build_model(tiny_cfg(use_dfl=True), num_classes=3), seed=5)
    d = build_distiller(student, _distance_student(), {}, 10, "cpu")
    assert (d.teacher_box, d.teacher_bins, d.teacher_sharp) == ("reg_dist", 1, True)
    loss, items = d(imgs, student.train()(imgs), epoch=0)
    assert torch.isfinite(loss) and (items > 0).all()
