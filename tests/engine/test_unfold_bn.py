"""Identity BatchNorms (imported folded weights) get real statistics before fine-tuning, keeping the function."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from repyolo.engine.precise_bn import identity_batchnorms, unfold_identity_batchnorms
from repyolo.io.ncnn_lite import identity_bn


def folded_net(seed: int = 0) -> nn.Sequential:
    """conv -> identity BN -> ReLU -> conv -> identity BN, as an import of folded weights leaves it."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8, eps=1e-3), nn.ReLU(),
                        nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4, eps=1e-3))
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0, 1, generator=g)
            elif isinstance(m, nn.BatchNorm2d):
                bias = torch.randn(m.num_features, generator=g).numpy()
                m.load_state_dict({k: torch.as_tensor(v) for k, v in identity_bn(bias, m.eps).items()})
    return net.eval()


def test_unfolding_keeps_eval_and_fixes_train_mode():
    net = folded_net()
    assert len(identity_batchnorms(net)) == 2
    g = torch.Generator().manual_seed(1)
    images = [(torch.rand(4, 3, 16, 16, generator=g) * 255).to(torch.uint8) for _ in range(3)]
    x = images[0].float() / 255
    with torch.no_grad():
        ref = net(x)
        broken = copy.deepcopy(net).train()(x)  # batch statistics replace the identity: another function
    assert (broken - ref).abs().max() > 1.0
    changed, batches = unfold_identity_batchnorms(net, [(im,) for im in images], 10, "cpu")
    assert (changed, batches) == (2, 3) and not net.training and identity_batchnorms(net) == []
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref, atol=1e-4, rtol=1e-4)  # eval: the same function
        train_out = net.train()(x)  # training mode now starts close to it
    assert (train_out - ref).abs().mean() < 0.1 * ref.abs().mean()


def test_nothing_to_unfold_in_trained_models():
    net = folded_net()
    with torch.no_grad():
        net[1].running_mean.fill_(0.5)
    assert identity_batchnorms(net) == [net[4]]
    assert unfold_identity_batchnorms(net, [], 4, "cpu") == (0, 0)
