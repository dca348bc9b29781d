"""RepOptimizer units: the gradient mask, equivalence at initialisation, the step identity of the paper."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import randomize_bn

from repyolo.engine.repoptimizer import RepOptimizer, build_repoptimizer, extract_scales, grad_mask, init_from_scales
from repyolo.nn.repopt import HyperSearchBlock, RepOptBlock, merged_kernel
from repyolo.nn.units import basic_block


def test_grad_mask_hand_computed_with_identity():
    s, t = torch.tensor([2.0, 3.0]), torch.tensor([1.0, 0.5])
    # out channel 0: s^2 = 4 everywhere, centre 4 + 1 = 5, own-channel centre 5 + 1 = 6
    # out channel 1: s^2 = 9 everywhere, centre 9 + 0.25 = 9.25, own-channel centre 10.25
    expected = torch.tensor([
        [[[4, 4, 4], [4, 6, 4], [4, 4, 4]], [[4, 4, 4], [4, 5, 4], [4, 4, 4]]],
        [[[9, 9, 9], [9, 9.25, 9], [9, 9, 9]], [[9, 9, 9], [9, 10.25, 9], [9, 9, 9]]],
    ])
    assert torch.equal(grad_mask(s, t, 2, identity=True), expected)


def test_grad_mask_hand_computed_without_identity():
    s, t = torch.tensor([0.5]), torch.tensor([2.0])
    # a stride-2 / non-square block: 0.25 everywhere, 0.25 + 4 at every centre
    expected = torch.full((1, 3, 3, 3), 0.25)
    expected[:, :, 1, 1] = 4.25
    assert torch.equal(grad_mask(s, t, 3, identity=False), expected)
    with pytest.raises(ValueError, match="C_in == C_out"):
        grad_mask(s, t, 3, identity=True)


@pytest.mark.parametrize("c_in,c_out,stride", [(6, 6, 1), (4, 6, 1), (6, 6, 2)])
def test_hypersearch_block_equals_plain_block_initialised_from_its_scales(c_in, c_out, stride):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(3)
    hs = HyperSearchBlock(c_in, c_out, 3, stride).double()  # draws W3 then W1 from the global RNG
    hs.scale_3x3.weight.data.copy_(torch.rand(c_out, generator=g) + 0.3)
    hs.scale_1x1.weight.data.copy_(torch.rand(c_out, generator=g) - 0.5)
    randomize_bn(hs.bn, seed=int(torch.randint(0, 2**31, (1,), generator=g)))
    model = nn.Sequential(RepOptBlock(c_in, c_out, 3, stride)).double()
    model[0].bn.load_state_dict(hs.bn.state_dict())
    torch.manual_seed(3)  # the same draws: init_from_scales merges fresh nn.Conv2d-like kernels
    init_from_scales(model, {"0": {"scale_3x3": hs.scale_3x3.weight.data, "scale_1x1": hs.scale_1x1.weight.data,
                                   "identity": hs.identity}})
    assert hs.identity == (c_in == c_out and stride == 1) == model[0].identity
    x = torch.randn(2, c_in, 9, 9, generator=g, dtype=torch.float64)
    for train in (False, True):  # running statistics and batch statistics
        hs.train(train), model.train(train)
        torch.testing.assert_close(model(x), hs(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(hs.to_plain().double()(x), hs(x), rtol=0, atol=1e-12)


def _csla_reference(c_in, c_out, stride, s, t, g):
    """The multi-branch block RepOpt stands for: BN(s*conv3x3 + t*conv1x1 + d*x) with constant s, t and
    trainable W3, W1 and (identity blocks) a per-channel identity weight d initialised to 1 -- the
    branch whose gradient contributes the mask's +1."""
    w3 = (torch.randn(c_out, c_in, 3, 3, generator=g, dtype=torch.float64) * 0.2).requires_grad_()
    w1 = (torch.randn(c_out, c_in, 1, 1, generator=g, dtype=torch.float64) * 0.2).requires_grad_()
    d = torch.ones(c_out, dtype=torch.float64, requires_grad=True) if c_in == c_out and stride == 1 else None
    bn = nn.BatchNorm2d(c_out).double()

    def forward(x):
        y = s.view(1, -1, 1, 1) * F.conv2d(x, w3, stride=stride, padding=1) + \
            t.view(1, -1, 1, 1) * F.conv2d(x, w1, stride=stride)
        if d is not None:
            y = y + d.view(1, -1, 1, 1) * x
        return F.relu(bn(y))

    def kernel():
        k = merged_kernel(w3, w1, s, t, identity=False)
        if d is not None:
            k = k.clone()
            idx = torch.arange(c_out)
            k[idx, idx, 1, 1] += d
        return k.detach()

    params = [w3, w1] + ([d] if d is not None else []) + list(bn.parameters())
    return forward, kernel, params, bn


@pytest.mark.parametrize("c_in,c_out,stride", [(5, 5, 1), (3, 5, 1), (5, 5, 2)])
@pytest.mark.parametrize("momentum,nesterov,steps", [(0.0, False, 1), (0.9, True, 3)])
def test_repopt_step_equals_sgd_step_on_the_multi_branch_block(c_in, c_out, stride, momentum, nesterov, steps):
    """The key identity: with the mask, the plain kernel's update is the merged kernel's update."""
    g = torch.Generator().manual_seed(1)
    s = torch.rand(c_out, generator=g, dtype=torch.float64) + 0.5
    t = torch.rand(c_out, generator=g, dtype=torch.float64) - 0.3
    forward, kernel, ref_params, ref_bn = _csla_reference(c_in, c_out, stride, s, t, g)
    model = nn.Sequential(RepOptBlock(c_in, c_out, 3, stride)).double()
    with torch.no_grad():
        model[0].conv.weight.copy_(kernel())  # the same function at the start
    model[0].bn.load_state_dict(ref_bn.state_dict())
    scales = {"0": {"scale_3x3": s, "scale_1x1": t, "identity": c_in == c_out and stride == 1}}
    opt = build_repoptimizer(model, scales, lr0=0.1, momentum=momentum, weight_decay=0.0, nesterov=nesterov,
                             reinit=False)
    ref_opt = torch.optim.SGD(ref_params, lr=0.1, momentum=momentum, nesterov=nesterov)
    start = kernel()
    for _ in range(steps):
        x = torch.randn(4, c_in, 8, 8, generator=g, dtype=torch.float64)
        target = torch.randn(4, c_out, 8 // stride, 8 // stride, generator=g, dtype=torch.float64)
        for o, fwd in ((opt, model), (ref_opt, forward)):
            o.zero_grad()
            F.mse_loss(fwd(x), target).backward()
            o.step()
    assert (kernel() - start).abs().max() > 1e-3  # the kernels did move
    torch.testing.assert_close(model[0].conv.weight.detach(), kernel(), rtol=0, atol=1e-12)
    torch.testing.assert_close(model[0].bn.weight.detach(), ref_bn.weight.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(model[0].bn.running_var, ref_bn.running_var, rtol=0, atol=1e-12)


def test_plain_sgd_does_not_satisfy_the_identity():
    """Control for the test above: without the mask the plain kernel drifts away from the merged one."""
    g = torch.Generator().manual_seed(2)
    s, t = torch.full((4,), 1.5, dtype=torch.float64), torch.full((4,), 0.7, dtype=torch.float64)
    forward, kernel, ref_params, ref_bn = _csla_reference(4, 4, 1, s, t, g)
    block = RepOptBlock(4, 4).double()
    with torch.no_grad():
        block.conv.weight.copy_(kernel())
    block.bn.load_state_dict(ref_bn.state_dict())
    opt, ref_opt = torch.optim.SGD(block.parameters(), lr=0.1), torch.optim.SGD(ref_params, lr=0.1)
    x = torch.randn(4, 4, 8, 8, generator=g, dtype=torch.float64)
    target = torch.randn(4, 4, 8, 8, generator=g, dtype=torch.float64)
    for o, fwd in ((opt, block), (ref_opt, forward)):
        F.mse_loss(fwd(x), target).backward()
        o.step()
    assert (block.conv.weight.detach() - kernel()).abs().max() > 1e-4


def test_weight_decay_is_added_after_the_mask():
    w = nn.Parameter(torch.randn(2, 2, 3, 3))
    mask = grad_mask(torch.tensor([2.0, 0.5]), torch.tensor([1.0, 1.0]), 2, True)
    grad = torch.randn(2, 2, 3, 3)
    before = w.detach().clone()
    opt = RepOptimizer([{"params": [w], "weight_decay": 0.1}], {w: mask}, lr=0.5)
    w.grad = grad.clone()
    opt.step()
    torch.testing.assert_close(w.detach(), before - 0.5 * (mask * grad + 0.1 * before))


def test_build_repoptimizer_groups_and_masks_on_a_model():
    from repyolo import build_model
    from repyolo.engine.optim import build_optimizer

    torch.manual_seed(0)
    hs = build_model("yolov6n-repopt", num_classes=3, block="hypersearch", width_multiple=0.0625,
                     depth_multiple=0.1)
    scales = extract_scales(hs)
    model = build_model("yolov6n-repopt", num_classes=3, width_multiple=0.0625, depth_multiple=0.1)
    blocks = [m for m in model.modules() if isinstance(m, RepOptBlock)]
    assert len(blocks) == len(scales) > 0
    opt = build_repoptimizer(model, scales, lr0=1.0, momentum=0.0, weight_decay=0.0, nesterov=False)
    ref = build_optimizer(model, "SGD", 1.0, 0.9, 0.0)
    assert [len(g["params"]) for g in opt.param_groups] == [len(g["params"]) for g in ref.param_groups]
    group0 = {id(p) for p in opt.param_groups[0]["params"]}
    assert set(map(id, opt.grad_masks)) == {id(b.conv.weight) for b in blocks} <= group0
    # one step: masked kernels move by -mask * grad, everything else by -grad
    out = model.train()(torch.rand(2, 3, 64, 64))
    # (the head's prediction convs start at zero weight: take the loss on the neck's features too)
    (out["cls"].square().mean() + sum(f.square().mean() for f in out["feats"])).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
             for n, p in model.named_parameters()}
    masked = {id(p) for p in opt.grad_masks}
    assert all(grads[n].abs().sum() > 0 for n, p in model.named_parameters() if id(p) in masked)
    opt.step()
    for n, p in model.named_parameters():
        step = grads[n] * opt.grad_masks[p] if id(p) in masked else grads[n]
        torch.testing.assert_close(p.detach(), before[n] - step, rtol=1e-5, atol=1e-6)


def test_basic_block_kinds():
    assert isinstance(basic_block("repopt", "relu")(8, 8), RepOptBlock)
    assert isinstance(basic_block("hypersearch", "relu")(8, 16, 3, 2), HyperSearchBlock)
    with pytest.raises(ValueError, match="repopt"):
        basic_block("repvgg2", "relu")
