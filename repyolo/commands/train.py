"""``repyolo train``: train a YOLOv6 model (single process, or DDP under torchrun).

The options are generated from :class:`repyolo.cfg.settings.TrainArgs`; hyper-parameters are set
with ``--hyp FILE`` / ``--set key=value`` / ``--recipe`` and checked against
:class:`repyolo.cfg.settings.Hyp` before anything starts (``--help-hyp`` lists them). The run is
:func:`repyolo.api.run_training`, the same code path as ``YOLO(...).train(...)``.
"""
from __future__ import annotations

import argparse

from repyolo.cfg.settings import Hyp, TrainArgs, add_dataclass_arguments, hyp_help, parse_set, read_hyp_file
from repyolo.errors import RepyoloError


class _HypHelp(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="list every hyper-parameter with its default and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(hyp_help())
        parser.exit()


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(p, TrainArgs)
    p.add_argument("--hyp", dest="hyp_file", default=None, metavar="FILE",
                   help="YAML of hyper-parameter overrides (keys: see --help-hyp)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="hyper-parameter overrides")
    p.add_argument("--recipe", choices=["auto", "yolov6", "small"], default=None,
                   help="schedule: published YOLOv6 constants, or scaled for short runs (default: auto)")
    p.add_argument("--help-hyp", action=_HypHelp)


def hyp_overrides(args: argparse.Namespace) -> dict:
    """``--hyp FILE`` then ``--set`` then ``--recipe``, validated against :class:`Hyp` (one-line errors)."""
    hyp = read_hyp_file(args.hyp_file) if args.hyp_file else {}
    hyp.update(parse_set(args.set))
    if args.recipe:
        hyp["recipe"] = args.recipe
    Hyp.resolve(None, hyp)  # unknown keys and bad values fail here, before any work
    return hyp


def train_args(args: argparse.Namespace) -> TrainArgs:
    """The :class:`TrainArgs` of a parsed command line."""
    if not args.data and not args.resume:
        raise RepyoloError("--data is required (a data YAML), unless --resume")
    if args.distill and not args.teacher:
        raise RepyoloError("--distill needs --teacher TEACHER.pt")
    fields = {k: getattr(args, k) for k in TrainArgs.__dataclass_fields__ if hasattr(args, k)}
    return TrainArgs(**{**fields, "data": args.data or "", "hyp": hyp_overrides(args)})


def run(args: argparse.Namespace) -> int:
    from repyolo.api import run_training

    run_training(train_args(args))
    return 0
