"""``repyolo train``: train a YOLOv6 model (single process, or DDP under torchrun)."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from repyolo.errors import RepyoloError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model name (yolov6n ...) or YAML; default: the --weights "
                   "checkpoint's architecture, else yolov6n")
    p.add_argument("--data", required=False, help="data YAML (YOLOv6 or ultralytics style)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--img", type=int, default=640, help="training image size (pixels)")
    p.add_argument("--batch", type=int, default=16, help="batch size per process")
    p.add_argument("--device", default="cpu", help="cpu, 0, or 0,1 (one GPU per torchrun process)")
    p.add_argument("--project", default="runs/train")
    p.add_argument("--name", default="exp")
    p.add_argument("--exist-ok", action="store_true", help="reuse project/name instead of name2, name3 ...")
    p.add_argument("--weights", default=None, help="initial weights: repyolo or official YOLOv6 checkpoint")
    p.add_argument("--resume", nargs="?", const=True, default=None,
                   help="resume from LAST (default project/name/weights/last.pt)")
    p.add_argument("--workers", type=int, default=2, help="data loader workers per process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hyp", default=None, help="YAML of hyper-parameter overrides (see repyolo/cfg/hyp.yaml)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="hyper-parameter overrides")
    p.add_argument("--recipe", choices=["auto", "yolov6", "small"], default=None,
                   help="schedule: published YOLOv6 constants, or scaled for short runs (default auto)")
    p.add_argument("--cache", choices=["ram"], default=None, help="cache decoded images in RAM")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--eval-interval", type=int, default=None, help="evaluate every N epochs (and the last)")
    p.add_argument("--no-val", action="store_true", help="skip evaluation during training")
    p.add_argument("--teacher", default=None, help="teacher checkpoint for self-distillation")
    p.add_argument("--distill", action="store_true", help="self-distillation from --teacher")


def parse_overrides(args: argparse.Namespace) -> dict:
    hyp = {}
    if args.hyp:
        path = Path(args.hyp)
        if not path.is_file():
            raise RepyoloError(f"{path}: hyper-parameter file not found")
        hyp.update(yaml.safe_load(path.read_text()) or {})
    for item in args.set or []:
        if "=" not in item:
            raise RepyoloError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        hyp[key] = yaml.safe_load(value)
    if args.recipe:
        hyp["recipe"] = args.recipe
    return hyp


def run(args: argparse.Namespace) -> int:
    from repyolo.engine.trainer import TrainArgs, Trainer

    if not args.data and not args.resume:
        raise RepyoloError("--data is required (a data YAML), unless --resume")
    if args.distill and not args.teacher:
        raise RepyoloError("--distill needs --teacher TEACHER.pt")
    targs = TrainArgs(model=args.model, data=args.data or "", epochs=args.epochs, img=args.img, batch=args.batch,
                      device=str(args.device), project=args.project, name=args.name, weights=args.weights,
                      resume=args.resume, workers=args.workers, seed=args.seed, hyp=parse_overrides(args),
                      exist_ok=args.exist_ok, teacher=args.teacher, distill=args.distill, sync_bn=args.sync_bn,
                      amp=not args.no_amp, cache=args.cache, eval_interval=args.eval_interval, no_val=args.no_val)
    Trainer(targs).train()
    return 0
