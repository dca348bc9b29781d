"""Helpers for the export tests: small random-weight models whose outputs are not trivial.

A freshly built head has zero prediction weights (constant scores, one box per anchor);
:func:`perturb` gives it seeded random weights and biases, and random BN statistics so that
``fuse()`` has real work to do.
"""
from __future__ import annotations

import torch
from helpers import randomize_bn, save_model  # noqa: F401 - save_model is part of this module's helpers

from repyolo.nn.model import load_model_config


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int = 0, cls_bias: float = -4.0, spread: float = 1.0,
            size: int = 160) -> torch.nn.Module:
    """Seeded random BN statistics and head weights; box distances stay positive (valid boxes).

    The class branch is calibrated on a random input so that every class has the same mean
    logit ``cls_bias`` and the logits vary by ``spread`` (std) across positions: scores then
    depend on the image (a few confident boxes of several classes per photo) instead of one
    class winning everywhere.
    """
    randomize_bn(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    head = model.detect
    for conv in head.reg_preds:
        conv.weight.normal_(0.0, 0.05, generator=g)
        conv.bias.uniform_(0.5, 3.0, generator=g)
    for conv in head.cls_preds:
        conv.weight.normal_(0.0, 1.0, generator=g)
    feats = {}
    hooks = [conv.register_forward_hook(lambda mod, inp, out, k=k: feats.__setitem__(k, inp[0]))
             for k, conv in enumerate(head.cls_preds)]
    model.eval()(torch.rand(2, 3, size, size, generator=g))  # size: a multiple of the model's stride
    for h in hooks:
        h.remove()
    for k, conv in enumerate(head.cls_preds):
        mean = feats[k].mean((0, 2, 3), keepdim=True)
        centred = torch.nn.functional.conv2d(feats[k] - mean, conv.weight)
        conv.weight.mul_(spread / centred.std().clamp_min(1e-6))
        conv.bias.copy_(cls_bias - torch.nn.functional.conv2d(mean, conv.weight).flatten())
    return model


def csp_config() -> dict:
    """A small CSP (BepC3 + DFL) model: the yolov6m config at width 0.25, depth 0.33."""
    cfg = load_model_config("yolov6m")
    cfg.update(name="yolov6m-w025", width_multiple=0.25, depth_multiple=0.33)
    return cfg


def assert_parity(out: torch.Tensor, ref: torch.Tensor, rel: float = 1e-3) -> None:
    """Boxes and scores each within ``rel`` x their own scale (max |value|)."""
    assert out.shape == ref.shape
    for part, name in ((slice(0, 4), "boxes"), (slice(4, None), "scores")):
        o, r = out[..., part], ref[..., part]
        err = (o - r).abs().max().item()
        assert err <= rel * r.abs().max().item(), f"{name}: max abs diff {err:.3g} vs scale {r.abs().max().item():.3g}"
