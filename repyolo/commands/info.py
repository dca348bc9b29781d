"""``repyolo info``: the model zoo (every bundled config by family, with its published numbers), or
parameters and GFLOPs of one model in its training form and its fused deploy form."""
from __future__ import annotations

import argparse
import json

# family key -> heading, in the order `repyolo info` lists them (unknown families follow, by name)
FAMILIES = {
    "v3": "YOLOv6 v3 (EfficientRep / CSPBep + RepBiFPAN)",
    "v3-p6": "YOLOv6 v3 P6 (1280 px, strides 8-64)",
    "v2": "YOLOv6 v2 (paper: EfficientRep + Rep-PAN)",
    "base": "base (Conv-BN-ReLU, no RepVGG branches: PTQ-friendly)",
    "mbla": "MBLA (multi-branch layer aggregation stages)",
    "qa": "QARepVGG (quantization-aware re-parameterization)",
    "lite": "Lite (mobile: depthwise, channel shuffle, SE, HardSwish; 320 px)",
    "repopt": "RepOpt-VGG (plain blocks trained with RepOptimizer)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model name, model YAML, or checkpoint (.pt); without it: the "
                   "list of every bundled model")
    p.add_argument("--list", action="store_true", help="list every bundled model by family with its published "
                   "deploy size and COCO mAP (the default without --model)")
    p.add_argument("--img", type=int, default=None, help="input size (default: the model's, 640; P6 1280, Lite 320)")
    p.add_argument("--nc", type=int, default=None, help="number of classes (default 80, or the checkpoint's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


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


def zoo_by_family() -> list[tuple[str, list[dict]]]:
    """``[(family, [model entries])]`` of every bundled config (:func:`repyolo.nn.model.model_zoo`),
    families in :data:`FAMILIES` order, models by published size (unpublished configs last); nothing is built."""
    from repyolo.nn.model import model_zoo

    groups: dict[str, list[dict]] = {}
    for entry in sorted(model_zoo(), key=lambda e: (e["published"].get("params_m", float("inf")), e["name"])):
        groups.setdefault(entry["family"], []).append(entry)
    order = list(FAMILIES) + sorted(set(groups) - set(FAMILIES))
    return [(family, groups[family]) for family in order if family in groups]


def _cell(value, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def zoo_table() -> str:
    """The text of ``repyolo info --list``: one block per family, one line per model."""
    lines = ["bundled models (published deploy size at the published input size; COCO val mAP@0.5:0.95, %)"]
    head = f"  {'model':<17}{'params (M)':>11}{'GFLOPs':>9}{'img':>6}{'mAP':>7}{'INT8 mAP':>10}  note"
    for family, entries in zoo_by_family():
        lines += ["", f"{family}: {FAMILIES.get(family, family)}", head]
        for e in entries:
            p = e["published"]
            note = p.get("note", "" if p else "not a published size")
            if "coco_map_int8" in p:
                note = (note + "; " if note else "") + "INT8: TensorRT PTQ"
            lines.append(f"  {e['name']:<17}{_cell(p.get('params_m'), '{:g}'):>11}{_cell(p.get('gflops'), '{:g}'):>9}"
                         f"{p.get('img', e['img_size']):>6}{_cell(p.get('coco_map'), '{:.1f}'):>7}"
                         f"{_cell(p.get('coco_map_int8'), '{:.1f}'):>10}  {note}".rstrip())
    lines += ["", "`repyolo info --model NAME` counts a model's own parameters and GFLOPs (training and deploy form); "
              "official config names (yolov6n_base, yolov6_lite_s.py, ...) work too"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.list or args.model is None:
        if args.json:
            print(json.dumps([{**e, "family": family} for family, entries in zoo_by_family() for e in entries]))
        else:
            print(zoo_table())
        return 0
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
