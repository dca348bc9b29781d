"""``repyolo bench``: latency and throughput of one model on several backends (interleaved runs);
calls :meth:`repyolo.api.YOLO.bench`."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True,
                   help="checkpoint (.pt), a model name / YAML (random weights: latency does not depend on them), "
                        "or an exported file (.onnx, OpenVINO folder, .torchscript, NCNN .param / folder: timed on "
                        "its own runtime)")
    p.add_argument("--img", type=int, nargs="+", default=None, metavar="S",
                   help="input size: S or H W (default: the training size, an exported file's fixed size, else 640)")
    p.add_argument("--backends", default=None,
                   help="comma list of torch, torch-unfused, torchscript, onnx, openvino, openvino-bf16, ncnn "
                        "(default: torch,onnx,openvino; an exported file: its own runtime)")
    p.add_argument("--batch", type=int, default=1, help="images per call")
    p.add_argument("--threads", type=int, default=None, help="threads per backend (default: all cores)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls per backend first (default 5)")
    p.add_argument("--runs", type=int, default=30, help="timed calls per backend, interleaved (default 30)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results to this JSON file")
    p.add_argument("--no-fuse", action="store_true", help="time the torch backend without re-parameterization")


def run(args: argparse.Namespace) -> int:
    from repyolo.api import YOLO
    from repyolo.errors import RepyoloError
    from repyolo.export.bench import format_table

    if args.img is not None and len(args.img) not in (1, 2):
        raise RepyoloError(f"--img takes one size or H W, got {args.img}")
    img = None if args.img is None else args.img[0] if len(args.img) == 1 else tuple(args.img)
    result = YOLO(args.weights).bench(img, args.backends, batch=args.batch, threads=args.threads,
                                      warmup=args.warmup, runs=args.runs, fuse=not args.no_fuse, json_out=args.json)
    print(format_table(result))
    return 0
