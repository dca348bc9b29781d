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
    p.add_argument("--img", type=int, default=None,
                   help="input size (default: the checkpoint's training size, else the model's: 640, P6 1280, "
                   "Lite 320)")
    p.add_argument("--nc", type=int, default=None, help="number of classes of a model name / YAML (default 80)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


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
    from repyolo.api import YOLO, format_info

    info = YOLO(args.model, nc=args.nc).info(args.img)
    if args.json:
        print(json.dumps({k: info[k] for k in ("name", "img", "nc", "params", "gflops")}))
    else:
        print(format_info(info))
    return 0
