"""``repyolo bench``: latency and throughput of one model on several backends (interleaved runs)."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True,
                   help="checkpoint (.pt), or a model name / YAML (random weights: latency does not depend on them), "
                        "or an exported file (NCNN .param / folder, .onnx, OpenVINO folder: timed alone)")
    p.add_argument("--img", type=int, nargs="+", default=[640], metavar="S", help="input size: S or H W (default 640)")
    p.add_argument("--backends", default="torch,onnx,openvino",
                   help="comma list of torch, torch-unfused, torchscript, onnx, openvino, openvino-bf16, ncnn "
                        "(default torch,onnx,openvino)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="threads per backend (default: all cores)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls per backend first (default 5)")
    p.add_argument("--runs", type=int, default=30, help="timed calls per backend, interleaved (default 30)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results to this JSON file")
    p.add_argument("--no-fuse", action="store_true", help="time the torch backend without re-parameterization")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from repyolo.errors import RepyoloError
    from repyolo.export.bench import benchmark, format_table

    if len(args.img) not in (1, 2):
        raise RepyoloError(f"--img takes one size or H W, got {args.img}")
    img = args.img[0] if len(args.img) == 1 else tuple(args.img)
    result = benchmark(args.weights, img, args.backends, batch=args.batch, threads=args.threads,
                       warmup=args.warmup, runs=args.runs, fuse=not args.no_fuse)
    print(format_table(result))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return 0
