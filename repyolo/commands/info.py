"""``repyolo info``: parameters and GFLOPs of the training form and the fused deploy form."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="yolov6n", help="model name, model YAML, or checkpoint (.pt)")
    p.add_argument("--img", type=int, default=None, help="input size (default: 640, 1280 for P6 models)")
    p.add_argument("--nc", type=int, default=None, help="number of classes (default 80, or the checkpoint's)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of tables")


def model_info(model_or_name, img: int | None = None, nc: int | None = None) -> dict:
    """Parameters and GFLOPs (2 x multiply-adds) of a model, before and after ``fuse()``.

    Returns ``{"name", "img", "nc", "params": {"train", "deploy"}, "gflops": {"train", "deploy"},
    "layers": [(name, params_train, params_deploy), ...]}``.
    """
    import copy
    from pathlib import Path

    from repyolo.nn.model import build_model
    from repyolo.utils.flops import count_gflops, count_params

    if isinstance(model_or_name, str) and Path(model_or_name).suffix == ".pt":
        from repyolo.io.checkpoint import load_model

        model = load_model(model_or_name)
    elif isinstance(model_or_name, str):
        model = build_model(model_or_name, num_classes=80 if nc is None else nc)
    else:
        model = model_or_name
    model = model.eval()
    img = img or int(model.cfg.get("img_size", 640))
    fused = copy.deepcopy(model).fuse()
    parts = ["backbone", "neck", "detect"]
    layers = [(p, count_params(getattr(model, p)), count_params(getattr(fused, p))) for p in parts]
    return {
        "name": model.cfg.get("name", "?"), "img": img, "nc": model.nc,
        "params": {"train": count_params(model), "deploy": count_params(fused)},
        "gflops": {"train": round(count_gflops(model, img), 3), "deploy": round(count_gflops(fused, img), 3)},
        "layers": layers,
    }


def run(args: argparse.Namespace) -> int:
    info = model_info(args.model, args.img, args.nc)
    if args.json:
        print(json.dumps({k: info[k] for k in ("name", "img", "nc", "params", "gflops")}))
        return 0
    print(f"{info['name']}  ({info['nc']} classes, {info['img']}x{info['img']})")
    print(f"{'part':<10}{'train params':>16}{'deploy params':>16}")
    for name, pt, pd in info["layers"]:
        print(f"{name:<10}{pt:>16,}{pd:>16,}")
    print(f"{'total':<10}{info['params']['train']:>16,}{info['params']['deploy']:>16,}")
    print(f"GFLOPs    {info['gflops']['train']:>16.2f}{info['gflops']['deploy']:>16.2f}")
    return 0
