"""``repyolo info``: parameters and GFLOPs of the training form and the fused deploy form."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="yolov6n", help="model name, model YAML, or checkpoint (.pt)")
    p.add_argument("--img", type=int, default=None,
                   help="input size (default: the checkpoint's training size, else the model's: 640, P6 1280)")
    p.add_argument("--nc", type=int, default=None, help="number of classes of a model name / YAML (default 80)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of tables")


def run(args: argparse.Namespace) -> int:
    from repyolo.api import YOLO, format_info

    info = YOLO(args.model, nc=args.nc).info(args.img)
    if args.json:
        print(json.dumps({k: info[k] for k in ("name", "img", "nc", "params", "gflops")}))
    else:
        print(format_info(info))
    return 0
