"""Parameters and GFLOPs of a model, training form and fused deploy form (``repyolo info``)."""
from __future__ import annotations

import copy

import torch

from repyolo.utils.flops import count_gflops, count_params

PARTS = ("backbone", "neck", "detect")


def model_info(model: torch.nn.Module, img: int | None = None) -> dict:
    """Parameters and GFLOPs (2 x multiply-adds) of ``model`` before and after ``fuse()`` (on a copy).

    Returns ``{"name", "img", "nc", "params": {"train", "deploy"}, "gflops": {"train", "deploy"},
    "layers": [(part, params_train, params_deploy), ...]}``; ``img`` defaults to the model config's
    ``img_size`` (640; 1280 for P6). FLOPs are counted on shapes only (see :mod:`repyolo.utils.flops`).
    """
    was_training = model.training
    model = model.eval()
    img = int(img or model.cfg.get("img_size", 640))
    fused = copy.deepcopy(model).fuse()
    layers = [(p, count_params(getattr(model, p)), count_params(getattr(fused, p))) for p in PARTS]
    out = {
        "name": model.cfg.get("name", "?"), "img": img, "nc": model.nc,
        "params": {"train": count_params(model), "deploy": count_params(fused)},
        "gflops": {"train": round(count_gflops(model, img), 3), "deploy": round(count_gflops(fused, img), 3)},
        "layers": layers,
    }
    model.train(was_training)
    return out


def format_info(info: dict) -> str:
    """The ``repyolo info`` table of a :func:`model_info` dict."""
    lines = [f"{info['name']}  ({info['nc']} classes, {info['img']}x{info['img']})",
             f"{'part':<10}{'train params':>16}{'deploy params':>16}"]
    lines += [f"{name:<10}{pt:>16,}{pd:>16,}" for name, pt, pd in info["layers"]]
    lines.append(f"{'total':<10}{info['params']['train']:>16,}{info['params']['deploy']:>16,}")
    lines.append(f"GFLOPs    {info['gflops']['train']:>16.2f}{info['gflops']['deploy']:>16.2f}")
    return "\n".join(lines)
