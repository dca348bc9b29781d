"""DetectionLoss end to end: target padding, every option, empty batches, real models, a tiny overfit."""
from __future__ import annotations

import pytest
import torch

import repyolo
from repyolo.cfg.settings import Hyp
from repyolo.errors import ConfigError
from repyolo.loss import DetectionLoss, build_loss, pad_targets
from repyolo.loss.detection import aided_anchor_boxes
from repyolo.nn.model import load_model_config
from repyolo.ops.boxes import make_anchors

NC = 3


@pytest.fixture
def one_thread():
    """Run a model test on one intra-op thread: for these tiny tensors a second thread gains little, and
    on a shared, oversubscribed machine its spin-waits made a step ~50x slower. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fake_outputs(batch=2, size=64, use_dfl=False, reg_max=16, reg_dist=False, seed=0):
    """A head's train-mode dict for a ``size`` x ``size`` input, random but reasonable, with grads."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(size // s, size // s) for s in (8, 16, 32)]
    points, strides = make_anchors(shapes, [8, 16, 32])
    a = len(points)
    cls = (torch.randn(batch, a, NC, generator=g) - 2).requires_grad_()
    if use_dfl:
        reg = torch.randn(batch, a, 4 * (reg_max + 1), generator=g).requires_grad_()
    else:
        reg = (torch.rand(batch, a, 4, generator=g) * 3 + 0.5).requires_grad_()
    out = {"cls": cls, "reg": reg, "anchors": points, "strides": strides, "feats": []}
    if reg_dist:
        out["reg_dist"] = torch.randn(batch, a, 4 * (reg_max + 1), generator=g).requires_grad_()
    return out


TARGETS = torch.tensor([[0, 1, 6.0, 8.0, 30.0, 40.0], [0, 2, 26.0, 20.0, 60.0, 50.0], [0, 0, 20.0, 20.0, 36.0, 33.0]])


def test_pad_targets():
    targets = torch.tensor([[2, 1, 1, 2, 3, 4], [0, 0, 5, 6, 7, 8], [2, 2, 9, 9, 10, 10.0]])
    labels, boxes, mask = pad_targets(targets, 4)
    assert labels.shape == (4, 2, 1) and boxes.shape == (4, 2, 4) and mask.shape == (4, 2, 1)
    assert mask[:, :, 0].tolist() == [[True, False], [False, False], [True, True], [False, False]]
    assert labels[2, :, 0].tolist() == [1, 2] and boxes[2, 1].tolist() == [9, 9, 10, 10]
    assert boxes[0, 0].tolist() == [5, 6, 7, 8] and boxes[1].abs().sum() == 0
    labels, boxes, mask = pad_targets(torch.zeros(0, 6), 3)
    assert labels.shape == (3, 0, 1) and boxes.shape == (3, 0, 4) and mask.shape == (3, 0, 1)
    with pytest.raises(ValueError, match="batch indices"):
        pad_targets(targets, 2)
    with pytest.raises(ValueError, match=r"\(M, 6\)"):
        pad_targets(torch.zeros(3, 5), 2)


@pytest.mark.parametrize("assigner", ["tal", "atss", "simota"])
@pytest.mark.parametrize("iou_type", ["giou", "siou", "ciou"])
def test_every_assigner_and_iou_type(assigner, iou_type):
    out = fake_outputs()
    fn = DetectionLoss(NC, hyp=Hyp(iou_type=iou_type, assigner=assigner, atss_warmup_epochs=0))
    loss, items = fn(out, TARGETS, 5, 2)
    assert loss.dim() == 0 and torch.isfinite(loss) and items.shape == (3,) and not items.requires_grad
    assert items[0] > 0 and items[1] > 0 and items[2] == 0  # no DFL branch
    loss.backward()
    assert out["cls"].grad.abs().sum() > 0 and out["reg"].grad.abs().sum() > 0
    w = {"cls": 1.0, "iou": 2.5, "dfl": 0.5}
    assert float(loss.detach()) == pytest.approx(w["cls"] * float(items[0]) + w["iou"] * float(items[1]), rel=1e-5)


@pytest.mark.parametrize("cls_loss", ["vfl", "focal", "qfl", "poly", "bce"])
def test_every_classification_loss(cls_loss):
    out = fake_outputs()
    loss, items = DetectionLoss(NC, hyp=Hyp(cls_loss=cls_loss))(out, TARGETS, 10, 2)
    loss.backward()
    assert torch.isfinite(loss) and items[0] > 0 and torch.isfinite(out["cls"].grad).all()


def test_dfl_head_and_dld_branch():
    out = fake_outputs(use_dfl=True)
    loss, items = DetectionLoss(NC, use_dfl=True)(out, TARGETS, 0, 2)
    loss.backward()
    assert items[2] > 0 and out["reg"].grad.abs().sum() > 0
    # both a DFL head and a DLD branch: their DFL terms add up
    both = {**out, "reg_dist": out["reg"].detach().clone().requires_grad_()}
    _, items_both = DetectionLoss(NC, use_dfl=True)(both, TARGETS, 0, 2)
    assert float(items_both[2]) == pytest.approx(2 * float(items[2]), rel=1e-5)
    # no DFL in the main branch, but a DLD branch: supervised by DFL too
    out = fake_outputs(reg_dist=True)
    loss, items = DetectionLoss(NC, use_dfl=False)(out, TARGETS, 0, 2)
    loss.backward()
    assert items[2] > 0 and out["reg_dist"].grad.abs().sum() > 0
    assert float(loss.detach()) == pytest.approx(float(items[0] + 2.5 * items[1] + 0.5 * items[2]), rel=1e-5)


def test_loss_is_normalised_by_target_scores_not_batch():
    # the same image twice: per-anchor sums double and so does the target-score sum -> the same loss
    out1 = fake_outputs(batch=1)
    out2 = {k: (torch.cat([v, v]).detach() if k in ("cls", "reg") else v) for k, v in out1.items()}
    targets2 = torch.cat([TARGETS, TARGETS + torch.tensor([1.0, 0, 0, 0, 0, 0])])
    fn = DetectionLoss(NC, hyp=Hyp(atss_warmup_epochs=0))
    loss1, _ = fn(out1, TARGETS, 0, 1)
    loss2, _ = fn(out2, targets2, 0, 2)
    assert float(loss1.detach()) == pytest.approx(float(loss2.detach()), rel=1e-5)


def test_empty_images_and_empty_batch():
    out = fake_outputs(use_dfl=True)
    loss, items = DetectionLoss(NC, use_dfl=True)(out, TARGETS[:1], 0, 2)  # image 1 has no boxes
    assert torch.isfinite(loss)
    out = fake_outputs(use_dfl=True)
    loss, items = DetectionLoss(NC, use_dfl=True)(out, torch.zeros(0, 6), 0, 2)  # n_max = 0
    assert torch.isfinite(loss) and items[0] > 0 and items[1] == 0 and items[2] == 0
    loss.backward()
    assert out["cls"].grad.abs().sum() > 0  # background still pushes the scores down
    assert out["reg"].grad is not None and out["reg"].grad.abs().sum() == 0


@pytest.mark.parametrize("iou_type", ["iou", "giou", "diou", "ciou", "siou"])
@pytest.mark.parametrize("assigner", ["tal", "atss", "simota"])
def test_degenerate_predictions_and_targets_stay_finite(iou_type, assigner):
    out = fake_outputs()
    with torch.no_grad():
        out["reg"].zero_()  # every predicted box is a point
    targets = torch.cat([TARGETS, torch.tensor([[1, 0, 10.0, 10.0, 10.0, 30.0]])])  # a zero-width target
    fn = DetectionLoss(NC, hyp=Hyp(iou_type=iou_type, assigner=assigner, atss_warmup_epochs=0))
    loss, items = fn(out, targets, 0, 2)
    loss.backward()
    assert torch.isfinite(items).all() and torch.isfinite(out["reg"].grad).all()
    assert torch.isfinite(out["cls"].grad).all()


def test_warmup_uses_atss_then_the_main_assigner():
    fn = DetectionLoss(NC, hyp=Hyp(assigner="simota", atss_warmup_epochs=2))
    calls = []
    for name in ("warmup_assigner", "assigner"):
        inner = getattr(fn, name)
        setattr(fn, name, lambda *a, _inner=inner, _name=name: calls.append(_name) or _inner(*a))
    for epoch in range(4):
        fn(fake_outputs(), TARGETS, epoch, 2)
    assert calls == ["warmup_assigner", "warmup_assigner", "assigner", "assigner"]


def test_bad_inputs_raise_clear_errors():
    fn = DetectionLoss(NC)
    with pytest.raises(ValueError, match="target classes"):
        fn(fake_outputs(), torch.tensor([[0, 3, 1.0, 1, 5, 5]]), 0, 2)
    with pytest.raises(ValueError, match="batch_size"):
        fn(fake_outputs(), TARGETS, 0, 3)
    with pytest.raises(ValueError, match="use_dfl"):
        DetectionLoss(NC, use_dfl=True)(fake_outputs(), TARGETS, 0, 2)
    with pytest.raises(ConfigError, match="iou_type"):
        DetectionLoss(NC, hyp=Hyp(iou_type="wiou"))
    with pytest.raises(ConfigError, match="assigner"):
        DetectionLoss(NC, hyp=Hyp(assigner="ota"))
    with pytest.raises(ConfigError, match="loss_weights"):
        DetectionLoss(NC, hyp=Hyp(loss_weights={"box": 1.0}))


def tiny_dfl_config():
    cfg = load_model_config("yolov6m")
    cfg.update(width_multiple=0.125, name="tiny-dfl")
    cfg["head"] = {**cfg["head"], "aux_dist": True}
    return cfg


def test_build_loss_reads_the_model_and_hyp():
    model = repyolo.build_model("yolov6n", num_classes=NC)
    loss = build_loss(model, {})
    assert (loss.nc, loss.use_dfl, loss.iou_type, loss.atss_warmup_epochs) == (NC, False, "siou", 0)
    assert loss.assigner_name == "tal" and loss.assigner.topk == 13 and loss.cls_loss.name == "vfl"
    loss = build_loss(model, {"iou_type": "ciou", "cls_loss": "qfl", "assigner": "atss", "atss_warmup_epochs": 3,
                              "loss_weights": {"iou": 5.0}, "tal_topk": 10})
    got = (loss.iou_type, loss.cls_loss.name, loss.assigner_name, loss.atss_warmup_epochs)
    assert got == ("ciou", "qfl", "atss", 3)
    assert loss.loss_weights == {"cls": 1.0, "iou": 5.0, "dfl": 0.5}
    with pytest.raises(ConfigError, match="assigner"):
        build_loss(model, {"assigner": "hungarian"})
    dfl_model = repyolo.build_model(tiny_dfl_config(), num_classes=NC)
    loss = build_loss(dfl_model, {"tal_topk": 10})
    assert loss.use_dfl and loss.reg_max == 16 and loss.iou_type == "giou" and loss.assigner.topk == 10


def grad_sum(modules):
    return sum(float(p.grad.abs().sum()) for m in modules for p in m.parameters() if p.grad is not None)


@pytest.mark.parametrize("which", ["yolov6n", "tiny-dfl"])
def test_end_to_end_on_real_models(which, one_thread):
    torch.manual_seed(0)
    model = repyolo.build_model("yolov6n" if which == "yolov6n" else tiny_dfl_config(), num_classes=NC).train()
    x = torch.rand(2, 3, 128, 128)
    targets = torch.tensor([[0, 1, 10.0, 12.0, 60.0, 70.0], [0, 2, 50.0, 40.0, 120.0, 100.0],
                            [0, 0, 70.0, 8.0, 90.0, 30.0]])  # image 1 has no targets
    outputs = model(x)
    fn = build_loss(model, {"atss_warmup_epochs": 1})
    for epoch in (0, 1):  # ATSS warm-up, then TAL
        loss, items = fn(outputs, targets, epoch, 2)
        assert torch.isfinite(loss) and items[0] > 0 and items[1] > 0
        assert (items[2] > 0) == (which == "tiny-dfl")  # DFL main branch + DLD branch
    loss.backward()
    head = model.detect
    # the prediction convs start at zero weights: their own gradients are non-zero at once ...
    assert grad_sum(head.cls_preds) > 0 and grad_sum(head.reg_preds) > 0
    if which == "tiny-dfl":
        assert grad_sum(head.reg_preds_dist) > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # ... and after one step the gradient flows through the whole head into the backbone
    torch.optim.SGD(model.parameters(), lr=0.01).step()
    model.zero_grad()
    fn(model(x), targets, 1, 2)[0].backward()
    assert grad_sum(head.stems) > 0 and grad_sum(head.cls_convs) > 0 and grad_sum(head.reg_convs) > 0
    assert grad_sum([model.backbone]) > 0


def test_tiny_overfit_reduces_the_loss(one_thread):
    torch.manual_seed(0)
    cfg = load_model_config("yolov6n")
    cfg.update(width_multiple=0.125, name="tiny")
    model = repyolo.build_model(cfg, num_classes=NC).train()
    x = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0, 1, 6.0, 8.0, 30.0, 40.0], [1, 2, 26.0, 20.0, 60.0, 50.0]])
    fn = build_loss(model, {})
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, nesterov=True)
    history = []
    for _ in range(40):
        loss, _ = fn(model(x), targets, 0, 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    assert sum(history[-5:]) / 5 < 0.5 * history[0], history


def test_aided_anchor_boxes():
    points = torch.tensor([[4.0, 4.0], [16.0, 16.0]])
    strides = torch.tensor([[8.0], [32.0]])
    boxes = aided_anchor_boxes(points, strides, 3)
    assert boxes.shape == (6, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert torch.allclose(w * h, torch.tensor([40.0 ** 2] * 3 + [160.0 ** 2] * 3))
    assert torch.allclose(h / w, torch.tensor([0.5, 1.0, 2.0] * 2))
    assert torch.allclose((boxes[:, :2] + boxes[:, 2:]) / 2, points.repeat_interleave(3, 0))


def test_anchor_aided_branch_is_supervised(one_thread):
    torch.manual_seed(0)
    cfg = load_model_config("yolov6n")
    cfg.update(width_multiple=0.125, name="tiny-ab")
    cfg["head"] = {**cfg["head"], "aux_anchor": 3}
    model = repyolo.build_model(cfg, num_classes=NC).train()
    outputs = model(torch.rand(2, 3, 64, 64))
    assert outputs["cls_ab"].shape[1] == 3 * outputs["cls"].shape[1]
    fn = build_loss(model, {})
    loss, items = fn(outputs, TARGETS, 0, 2)
    plain = {k: v for k, v in outputs.items() if not k.endswith("_ab")}
    _, items_plain = fn(plain, TARGETS, 0, 2)
    assert (items[:2] > items_plain[:2]).all() and items[2] == 0
    loss.backward()
    assert grad_sum(model.detect.cls_preds_ab) > 0 and grad_sum(model.detect.reg_preds_ab) > 0
    # without any target the branch still learns "background"
    model.zero_grad()
    loss, items = fn(model(torch.rand(2, 3, 64, 64)), torch.zeros(0, 6), 0, 2)
    loss.backward()
    assert torch.isfinite(loss) and grad_sum(model.detect.cls_preds_ab) > 0


def test_half_precision_outputs_are_computed_in_float32():
    out = fake_outputs()
    half = {k: (v.detach().half().requires_grad_() if k in ("cls", "reg") else v) for k, v in out.items()}
    loss, items = DetectionLoss(NC)(half, TARGETS, 0, 2)
    ref, ref_items = DetectionLoss(NC)({**out, "cls": half["cls"].float(), "reg": half["reg"].float()}, TARGETS, 0, 2)
    assert loss.dtype == torch.float32 and torch.allclose(items, ref_items, rtol=1e-5)
    loss.backward()
    assert half["cls"].grad.dtype == torch.float16 and torch.isfinite(half["reg"].grad.float()).all()


def test_dld_branch_of_plain_distances_gets_the_iou_loss():
    """A 4-channel DLD branch (distill_ns on a reg_max-0 config) is trained on its decoded boxes: with the
    same distances as the main branch its IoU term equals the main one; DFL stays 0; gradients reach it."""
    fn = DetectionLoss(NC, hyp=Hyp(iou_type="giou"))
    base = fake_outputs()
    same = {**base, "reg_dist": base["reg"].detach().clone().requires_grad_()}
    _, plain = fn(base, TARGETS, 0, 2)
    loss, items = fn(same, TARGETS, 0, 2)
    assert items[1] == pytest.approx(2 * float(plain[1]), rel=1e-5) and items[2] == 0
    loss.backward()
    assert same["reg_dist"].grad.abs().sum() > 0 and torch.isfinite(same["reg_dist"].grad).all()
    other = {**base, "reg_dist": (base["reg"].detach() * 0.5).requires_grad_()}
    assert fn(other, TARGETS, 0, 2)[1][1] > items[1]  # worse boxes, larger IoU loss


def test_dld_branch_bins_are_read_off_its_width():
    """A DFL DLD branch with another bin count than the head's reg_max is supervised with its own bins."""
    fn = DetectionLoss(NC, reg_max=16)
    out = fake_outputs()
    out["reg_dist"] = torch.randn(2, out["reg"].shape[1], 4 * 8, generator=torch.Generator().manual_seed(1))
    _, items = fn(out, TARGETS, 0, 2)
    assert items[2] > 0 and torch.isfinite(items).all()
    with pytest.raises(ValueError, match="box branch"):
        fn({**out, "reg_dist": out["reg_dist"][..., :7]}, TARGETS, 0, 2)
