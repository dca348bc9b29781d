"""RepOpt at model level: one graph for training and deployment, scales files, the hyper-search step,
and the training comparison RepVGG vs RepOpt vs plain SGD."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import randomize_bn

from repyolo import build_model
from repyolo.engine.repoptimizer import build_repoptimizer, extract_scales, hypersearch_config, load_scales, save_scales
from repyolo.errors import CheckpointError, ConfigError
from repyolo.nn.blocks import RepVGGBlock
from repyolo.nn.repopt import HyperSearchBlock, RepOptBlock
from repyolo.nn.units import basic_block
from repyolo.utils.flops import count_params

TINY = dict(width_multiple=0.0625, depth_multiple=0.17)


@pytest.fixture
def one_thread():
    """Deterministic, and much faster than 2 threads on a shared, loaded machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name,reference", [("yolov6n-repopt", "yolov6n"), ("yolov6s-repopt", "yolov6s")])
def test_train_graph_is_the_deploy_graph(name, reference):
    """No multi-branch module anywhere; fusing only folds BNs (checked parameter by parameter), and the
    deploy model has exactly the fused RepVGG model's parameters (count and shapes)."""
    model = build_model(name, num_classes=80).eval()
    assert not any(isinstance(m, (RepVGGBlock, HyperSearchBlock)) for m in model.modules())
    blocks = [m for m in model.modules() if isinstance(m, RepOptBlock)]
    assert blocks and all(list(dict(b.named_children())) == ["conv", "bn", "act"] for b in blocks)
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    train_params = count_params(model)
    kernels = {id(b): b.conv.weight.shape for b in blocks}
    model.fuse()
    # each BN (weight + bias, 2C) became a conv bias (C); nothing else changed
    assert count_params(model) == train_params - bn_channels
    assert all(b.bn is None and b.conv.weight.shape == kernels[id(b)] and b.conv.bias is not None for b in blocks)
    ref = build_model(reference, num_classes=80).eval().fuse()
    assert count_params(model) == count_params(ref)
    shapes = lambda m: sorted(tuple(p.shape) for p in m.parameters())  # noqa: E731
    assert shapes(model) == shapes(ref)


def test_fused_repopt_model_computes_the_same_function():
    torch.manual_seed(0)
    model = build_model("yolov6n-repopt", num_classes=4, **TINY).eval()
    randomize_bn(model)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        before = model(x)
        after = model.fuse()(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_scales_file_roundtrip_and_hypersearch_checkpoint(tmp_path):
    from repyolo.io.checkpoint import save_checkpoint

    torch.manual_seed(0)
    hs = build_model(hypersearch_config("yolov6n-repopt"), num_classes=3, **TINY)
    for m in hs.modules():
        if isinstance(m, HyperSearchBlock):
            m.scale_3x3.weight.data.uniform_(0.5, 1.5)
            m.scale_1x1.weight.data.uniform_(-0.5, 0.5)
    scales = extract_scales(hs)
    assert all(v["identity"] == hs.get_submodule(k).identity for k, v in scales.items())
    path = save_scales(scales, tmp_path / "scales.pt", model_name="tiny-hs")
    assert torch.load(path, weights_only=True)["format"] == "repyolo-repopt-scales"
    back = load_scales(path)
    assert back.keys() == scales.keys()
    assert all(torch.equal(back[k]["scale_1x1"], scales[k]["scale_1x1"]) for k in scales)
    # a training checkpoint of the hyper-search model is a valid source too (EMA weights read)
    ckpt = save_checkpoint({"model_cfg": hs.cfg, "model": hs.state_dict(), "ema": hs.state_dict()}, tmp_path / "hs.pt")
    from_ckpt = load_scales(ckpt)
    assert all(torch.equal(from_ckpt[k]["scale_3x3"], scales[k]["scale_3x3"]) for k in scales)
    # the plain model starts as the hyper-search model's function (same fresh-kernel draws aside)
    plain = build_model("yolov6n-repopt", num_classes=3, **TINY)
    opt = build_repoptimizer(plain, path, lr0=0.01)
    assert len(opt.grad_masks) == len(scales)


def test_scales_errors_name_the_problem(tmp_path):
    hs = build_model(hypersearch_config("yolov6n-repopt"), num_classes=3, **TINY)
    scales = extract_scales(hs)
    wider = build_model("yolov6n-repopt", num_classes=3, width_multiple=0.125, depth_multiple=0.17)
    with pytest.raises(ConfigError, match="channels"):
        build_repoptimizer(wider, scales)
    deeper = build_model("yolov6n-repopt", num_classes=3, width_multiple=0.0625, depth_multiple=0.33)
    with pytest.raises(ConfigError, match="missing"):
        build_repoptimizer(deeper, scales)
    with pytest.raises(ConfigError, match="no RepOpt blocks"):
        build_repoptimizer(build_model("yolov6n", num_classes=3, **TINY), scales)
    with pytest.raises(ConfigError, match="hyper-search blocks"):
        extract_scales(build_model("yolov6n", num_classes=3, **TINY))
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_scales(bad)
    with pytest.raises(ConfigError, match="nope.pt"):
        load_scales(tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="'backbone.stem'"):
        load_scales({"backbone.stem": {"scale_3x3": torch.ones(4)}})
    from repyolo.io.checkpoint import save_checkpoint

    rv = build_model("yolov6n", num_classes=3, **TINY)
    path = save_checkpoint({"model_cfg": rv.cfg, "model": rv.state_dict()}, tmp_path / "rv.pt")
    with pytest.raises(ConfigError, match="hypersearch"):
        load_scales(path)


def test_repoptimizer_follows_the_yolov6_schedule():
    """The trainer's Schedule sets LR / momentum per group; RepOptimizer is an SGD and takes it."""
    from repyolo.engine.optim import Schedule

    hs = build_model(hypersearch_config("yolov6n-repopt"), num_classes=3, **TINY)
    model = build_model("yolov6n-repopt", num_classes=3, **TINY)
    opt = build_repoptimizer(model, extract_scales(hs), lr0=0.02, momentum=0.937, weight_decay=5e-4)
    sched = Schedule(0.02, epochs=10, warmup_iters=10)
    sched.apply(opt, 5, 0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01) and opt.param_groups[2]["lr"] == pytest.approx(0.06)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.8 + 0.137 / 2)
    state = opt.state_dict()
    opt.load_state_dict(state)  # resumable like SGD (masks are constants, not state)


# ---------------------------------------------------------------------------- training comparison
def vgg_stack(kind: str, width: int = 16, depth: int = 12, n_out: int = 4) -> nn.Sequential:
    """A RepVGG-like plain stack: stride-2 stem, depth/2 blocks, stride-2 block, depth/2 blocks, pool, linear."""
    make = basic_block(kind, "relu")
    layers = [make(3, width, 3, 2)] + [make(width, width) for _ in range(depth // 2)]
    layers += [make(width, 2 * width, 3, 2)] + [make(2 * width, 2 * width) for _ in range(depth // 2)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, n_out))


def teacher_task(seed: int = 0, n: int = 256, size: int = 16):
    """Regression onto the (standardised) outputs of a fixed random conv net."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g)
    torch.manual_seed(seed + 100)
    teacher = vgg_stack("conv", width=8, depth=4).eval()
    with torch.no_grad():
        y = teacher(x)
    return x, (y - y.mean(0)) / y.std(0)


def fit(model, opt, x, y, steps: int = 150, batch: int = 32, seed: int = 0) -> float:
    """Mean training loss of the last 20 steps."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        loss = F.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses[-20:]) / 20


@pytest.mark.slow
def test_repopt_trains_like_repvgg_and_better_than_plain_sgd(one_thread):
    """Same budget (150 steps, lr 0.05, Nesterov 0.9), same data and seed, a 14-block plain stack:
    RepOpt (scales from a hyper-search run) ends close to RepVGG; the same plain network with
    plain SGD (default init, no masks) ends clearly worse."""
    x, y = teacher_task(0)
    sgd = lambda m: torch.optim.SGD(m.parameters(), 0.05, momentum=0.9, nesterov=True)  # noqa: E731
    torch.manual_seed(0)
    repvgg = vgg_stack("repvgg")
    loss_repvgg = fit(repvgg, sgd(repvgg), x, y)
    torch.manual_seed(0)
    hs = vgg_stack("hypersearch")
    fit(hs, sgd(hs), x, y)
    scales = extract_scales(hs)
    torch.manual_seed(0)
    plain = vgg_stack("repopt")
    loss_repopt = fit(plain, build_repoptimizer(plain, scales, 0.05, 0.9, 0.0), x, y)
    torch.manual_seed(0)
    plain_sgd = vgg_stack("repopt")
    loss_plain = fit(plain_sgd, sgd(plain_sgd), x, y)
    print(f"final train loss: RepVGG {loss_repvgg:.4f}  RepOpt {loss_repopt:.4f}  plain SGD {loss_plain:.4f}")
    assert loss_repopt <= 1.25 * loss_repvgg
    assert loss_plain >= 1.2 * loss_repopt
    # and the RepOpt network needs no conversion: it already is its deploy form
    assert not any(isinstance(m, (RepVGGBlock, HyperSearchBlock)) for m in plain.modules())


@pytest.mark.slow
def test_hyper_search_with_the_trainer_writes_usable_scales(tmp_path):
    from repyolo.data.synthetic import generate_synthetic
    from repyolo.engine.hypersearch import hyper_search

    data = generate_synthetic(tmp_path / "syn", n_train=8, n_val=4, img_size=64, seed=0)
    cfg = {**hypersearch_config("yolov6n-repopt"), **TINY}
    scales = hyper_search(cfg, data=data, epochs=2, img=64, batch=4, project=tmp_path / "runs", name="hs",
                          workers=0, max_batches=2, no_val=True, hyp={"nominal_batch": 4})
    path = tmp_path / "runs" / "hs" / "scales.pt"
    assert path.is_file() and load_scales(path).keys() == scales.keys()
    moved = max((v["scale_3x3"] - 1).abs().max().item() for v in scales.values())
    assert moved > 0  # the scales were trained
    plain = build_model("yolov6n-repopt", num_classes=5, **TINY)
    assert len(build_repoptimizer(plain, path).grad_masks) == len(scales)
