"""Training settings as typed objects, resolved once per run: :class:`Hyp` and :class:`TrainArgs`.

:class:`Hyp` holds every hyper-parameter of the YOLOv6 recipe (optimizer, schedule, loss,
assigner, distillation, augmentation, evaluation thresholds). Its defaults are the published
recipe; a model config may set any of them at its top level (the recipe published for that model:
``lr0``, ``momentum``, ``weight_decay``, ``mixup``, ``scale``, ``atss_warmup_epochs`` ...; the box
loss as ``loss: {iou_type: ...}``); the user's ``--hyp FILE`` / ``--set key=value`` come last.
:meth:`Hyp.resolve` applies the three in that order and rejects unknown keys and bad values with
a one-line :class:`~repyolo.errors.ConfigError`. The recipe, the loss, the assigner, the distiller
and the trainer all read the one resolved object.

:class:`TrainArgs` is what ``repyolo train`` accepts; the CLI's options are generated from its
fields (:func:`add_dataclass_arguments`), so the two cannot drift apart.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from repyolo.errors import ConfigError


def setting(default, help: str, choices=None, cli: str | None = None, **argparse_kwargs):
    """A dataclass field with its help text (and CLI spelling) next to its default."""
    meta = {"help": help, "choices": choices, "cli": cli, "argparse": argparse_kwargs}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


LOSS_WEIGHT_KEYS = ("cls", "iou", "dfl")


@dataclass
class Hyp:
    """Every training hyper-parameter (see ``repyolo train --help-hyp``)."""

    # schedule and optimizer
    recipe: str = setting("auto", "auto | yolov6 | small: published constants, or scaled for short runs "
                          "(auto picks small below 20k optimizer steps, and logs it)", ("auto", "yolov6", "small"))
    optimizer: str = setting("SGD", "SGD | AdamW | RepOpt (RepOpt: models with block: repopt, needs scales)",
                             ("SGD", "AdamW", "RepOpt"))
    scales: str | None = setting(None, "RepOpt: scales file or hyper-search checkpoint")
    lr0: float = setting(0.01, "initial learning rate at batch 32 (model configs: 0.02 for N, 0.01 for S/M/L)")
    lrf: float = setting(0.01, "final learning rate = lr0 * lrf")
    lr_schedule: str = setting("cosine", "cosine | linear | constant", ("cosine", "linear", "constant"))
    momentum: float = setting(0.937, "SGD momentum / Adam beta1")
    weight_decay: float = setting(0.0005, "weight decay, scaled by the effective batch / nominal_batch")
    warmup_epochs: float = setting(3.0, "warm-up length in epochs")
    warmup_min_iters: int = setting(1000, "yolov6 recipe: warm-up never shorter than this many iterations")
    warmup_momentum: float = setting(0.8, "momentum at the start of warm-up")
    warmup_bias_lr: float = setting(0.1, "bias learning rate at the start of warm-up")
    nominal_batch: int = setting(64, "yolov6 recipe: gradient accumulation target batch")
    ema_decay: float = setting(0.9999, "EMA decay (the small recipe shortens it with the run)")
    ema_tau: float = setting(2000.0, "EMA ramp: decay * (1 - exp(-updates / tau))")
    close_mosaic: int = setting(15, "strong augmentation (mosaic, mixup) off for the last N epochs")
    grad_clip: float = setting(10.0, "gradient norm clip")
    bn_recal_images: int | None = setting(None, "precise BN before evaluation over N train images "
                                          "(null = recipe default: small 256, yolov6 off)")
    unfold_bn_images: int = setting(256, "start weights with identity BatchNorms (folded deploy weights, e.g. "
                                    "imported NCNN): estimate their statistics over N un-augmented train "
                                    "images first, keeping the function (0 = off)")
    # loss and label assignment
    loss_weights: dict = setting({"cls": 1.0, "iou": 2.5, "dfl": 0.5}, "loss weights {cls, iou, dfl}")
    cls_loss: str = setting("vfl", "vfl | focal | qfl | poly | bce", ("vfl", "focal", "qfl", "poly", "bce"))
    iou_type: str = setting("giou", "box loss: siou (model configs N/T) | giou (S/M/L) | ciou | diou | iou",
                            ("iou", "giou", "diou", "ciou", "siou"))
    assigner: str = setting("tal", "tal | atss | simota (after the ATSS warm-up epochs)", ("tal", "atss", "simota"))
    tal_topk: int = setting(13, "TAL: candidates per object")
    tal_alpha: float = setting(1.0, "TAL: classification score exponent")
    tal_beta: float = setting(6.0, "TAL: IoU exponent")
    atss_topk: int = setting(9, "ATSS: candidates per level per object")
    atss_warmup_epochs: int = setting(0, "epochs assigned by ATSS before the main assigner (model configs: "
                                      "0 for v3 P5, 4 for v2, P6 and Lite)")
    # self-distillation (--distill --teacher W)
    distill_weight_cls: float = setting(1.0, "distillation: class KL weight")
    distill_weight_dfl: float = setting(1.0, "distillation: box-distribution KL weight")
    distill_weight_cwd: float = setting(0.0, "distillation: channel-wise feature distillation weight (neck)")
    distill_temperature: float = setting(1.0, "distillation: KL temperature")
    distill_cls_mode: str = setting("binary", "distillation: per-class sigmoid KL (binary) or softmax KL",
                                    ("binary", "softmax"))
    distill_alpha0: float = setting(1.0, "distillation weight at the start (cosine-decayed)")
    distill_alpha_min: float = setting(0.01, "distillation weight at the end")
    distill_cwd_tau: float = setting(1.0, "distillation: CWD temperature")
    # augmentation
    hsv_h: float = setting(0.015, "hue jitter (fraction)")
    hsv_s: float = setting(0.7, "saturation jitter (fraction)")
    hsv_v: float = setting(0.4, "value jitter (fraction)")
    degrees: float = setting(0.0, "rotation (+/- degrees)")
    translate: float = setting(0.1, "translation (+/- fraction)")
    scale: float = setting(0.5, "scale gain (+/- fraction)")
    shear: float = setting(0.0, "shear (+/- degrees)")
    flipud: float = setting(0.0, "vertical flip probability")
    fliplr: float = setting(0.5, "horizontal flip probability")
    mosaic: float = setting(1.0, "mosaic probability")
    mixup: float = setting(0.0, "mixup probability (model configs: 0 for N/S, 0.1 for M/L)")
    # evaluation during training
    conf_thres: float = setting(0.03, "evaluation score threshold")
    iou_thres: float = setting(0.65, "evaluation NMS IoU")

    AUGMENT_KEYS: typing.ClassVar[tuple[str, ...]] = (
        "hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "flipud", "fliplr", "mosaic", "mixup")
    DISTILL_KEYS: typing.ClassVar[tuple[str, ...]] = (
        "distill_weight_cls", "distill_weight_dfl", "distill_weight_cwd", "distill_temperature",
        "distill_cls_mode", "distill_alpha0", "distill_alpha_min", "distill_cwd_tau")

    def __post_init__(self):
        for f in fields(self):
            setattr(self, f.name, _coerce(f, getattr(self, f.name), f"hyper-parameter {f.name!r}"))
        unknown = set(self.loss_weights) - set(LOSS_WEIGHT_KEYS)
        if unknown:
            raise ConfigError(f"loss_weights: unknown keys {sorted(unknown)}; expected {', '.join(LOSS_WEIGHT_KEYS)}")
        defaults = {"cls": 1.0, "iou": 2.5, "dfl": 0.5}
        self.loss_weights = {**defaults, **{k: float(v) for k, v in self.loss_weights.items()}}

    @classmethod
    def resolve(cls, model_cfg: dict | None = None, overrides: dict | None = None) -> "Hyp":
        """Defaults, then the model config's own recipe values, then the user's ``overrides``."""
        names = {f.name for f in fields(cls)}
        values = {}
        cfg = model_cfg or {}
        values.update({k: v for k, v in cfg.items() if k in names})
        if isinstance(cfg.get("loss"), dict) and "iou_type" in cfg["loss"]:
            values["iou_type"] = cfg["loss"]["iou_type"]
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"unknown hyper-parameter {unknown[0]!r} (see `repyolo train --help-hyp` for the "
                              f"{len(names)} known ones)")
        values.update(overrides)
        return cls(**values)

    def augmentation(self) -> dict:
        """The augmentation keys as the data set takes them."""
        return {k: getattr(self, k) for k in self.AUGMENT_KEYS}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainArgs:
    """What ``repyolo train`` accepts (the CLI options are generated from these fields)."""

    model: str | None = setting(None, "model name (yolov6n, yolov6lite-s ...) or YAML; default: the --weights "
                                "checkpoint's architecture, else yolov6n")
    data: str = setting("", "data YAML (YOLOv6 or ultralytics style)")
    epochs: int = setting(100, "training epochs")
    img: int | None = setting(None, "training image size in pixels (default: the model's, 640; Lite 320)")
    batch: int = setting(16, "batch size per process")
    device: str = setting("cpu", "cpu, 0, or 0,1 (one GPU per torchrun process)")
    project: str | None = setting(None, "folder of the runs (default runs/train; with --resume: the checkpoint's "
                                  "own run folder)")
    name: str | None = setting(None, "run name: project/name, or name2, name3 ... when it exists (default exp)")
    exist_ok: bool = setting(False, "reuse project/name instead of name2, name3 ...")
    weights: str | None = setting(None, "initial weights: a repyolo checkpoint or an official YOLOv6 checkpoint")
    resume: str | None = setting(None, "resume from LAST (default project/name/weights/last.pt)", nargs="?",
                                 const="last", metavar="LAST")
    workers: int = setting(2, "data loader workers per process")
    threads: int | None = setting(None, "torch intra-op threads (default: adaptive on a CPU: all the cores this "
                                  "process may use while the machine is quiet, minus the loader workers while "
                                  "other processes compete)")
    seed: int = setting(0, "random seed (weights init, shuffling, augmentation)")
    hyp: dict = setting({}, "hyper-parameter overrides (--hyp FILE, --set key=value)", cli="")
    teacher: str | None = setting(None, "teacher checkpoint for self-distillation")
    distill: bool = setting(False, "self-distillation from --teacher")
    sync_bn: bool = setting(False, "SyncBatchNorm under DDP")
    amp: bool = setting(True, "mixed precision: float16 autocast on CUDA, bfloat16 autocast on a CPU that computes "
                        "bfloat16 natively (avx512_bf16 / AMX: ~1.8x faster steps); the loss, the head's "
                        "predictions, the optimizer, the EMA and evaluation stay float32", cli="--no-amp")
    bf16: bool | None = setting(None, "bfloat16 autocast on the CPU (default: with mixed precision where the CPU "
                                "has it natively; --bf16 asks for it even with --no-amp)")
    channels_last: bool | None = setting(None, "channels-last memory format (default: on CUDA only; torch 2.13's "
                                         "CPU kernels corrupt memory with it)")
    compile: bool = setting(False, "torch.compile the training forward (minutes of compile time: long runs only; "
                            "falls back to eager if it fails)")
    cache: str | None = setting(None, "cache decoded images in RAM", ("ram",))
    eval_interval: int | None = setting(None, "evaluate every N epochs and at the end (default: an automatic "
                                        "schedule, sparse early and every epoch near the end; see the log)")
    no_val: bool = setting(False, "skip evaluation during training")
    rect_val: bool = setting(True, "rectangular validation batches", cli="")
    max_batches: int | None = setting(None, "debugging: stop every epoch after N batches", cli="")
    fitness_weights: list = setting([0.0, 0.1, 0.9], "weights of (mAP75, mAP50, mAP) in the best.pt score", cli="")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainArgs":
        """From a saved ``args`` dict (keys this version does not know are dropped)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ----------------------------------------------------------------------------------------------- coercion


def _base_type(annotation) -> tuple[type, bool]:
    """``'int | None'`` -> ``(int, True)`` (annotations are strings under ``from __future__``)."""
    text = str(annotation).replace(" ", "")
    optional = "None" in text.split("|")
    name = next((t for t in text.split("|") if t != "None"), "str")
    return {"int": int, "float": float, "str": str, "bool": bool, "dict": dict, "list": list}.get(name, str), optional


def _coerce(f: dataclasses.Field, value, what: str):
    typ, optional = _base_type(f.type)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{what}: a value is required")
    try:
        if typ is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1", "yes")
            value = bool(value)
        elif typ is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            value = int(value)
        elif typ is float:
            value = float(value)
        elif typ is dict and not isinstance(value, dict):
            raise ValueError(value)
        elif typ is list:
            value = list(value)
        elif typ is str:
            value = str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected {typ.__name__}, got {value!r}") from None
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        ci = {str(c).lower(): c for c in choices}
        if isinstance(value, str) and value.lower() in ci:
            return ci[value.lower()]
        raise ConfigError(f"{what}: {value!r} is not one of {', '.join(map(str, choices))}")
    return value


# ----------------------------------------------------------------------------------------------- files and CLI


def read_hyp_file(path: str | Path) -> dict:
    """A YAML of hyper-parameter overrides (a mapping), checked for readability only."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: hyper-parameter file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of hyper-parameters, got {type(data).__name__}")
    return data


def parse_set(items: list[str]) -> dict:
    """``['lr0=0.005', 'mosaic=0.5']`` -> ``{'lr0': 0.005, 'mosaic': 0.5}`` (values parsed as YAML)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: cannot parse the value") from None
    return out


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One option per field of ``cls`` (name ``--a-b`` for field ``a_b``; ``cli=''`` hides a field;
    ``cli='--no-x'`` makes a default-true bool a switch that turns it off), help with the default."""
    for f in fields(cls):
        cli = f.metadata.get("cli")
        if cli == "" or f.name in skip:
            continue
        typ, _ = _base_type(f.type)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = cli or "--" + f.name.replace("_", "-")
        kwargs = dict(f.metadata.get("argparse") or {})
        help_text = f.metadata.get("help", "")
        if typ is bool:
            if default:
                parser.add_argument(flag, dest=f.name, action="store_false", help=f"turn off: {help_text}")
            else:
                parser.add_argument(flag, dest=f.name, action="store_true", default=default, help=help_text)
            continue
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(flag, dest=f.name, type=typ, default=default,
                            help=help_text + (f" (default: {default})" if default not in (None, "") else ""), **kwargs)


def hyp_help() -> str:
    """Every hyper-parameter with its default and meaning (``repyolo train --help-hyp``)."""
    rows = []
    for f in fields(Hyp):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append(f"  {f.name:<22} {str(default):<28} {f.metadata.get('help', '')}")
    return ("hyper-parameters (override with --set key=value or --hyp FILE; model configs set their published "
            "values):\n" + "\n".join(rows))


__all__ = ["Hyp", "TrainArgs", "add_dataclass_arguments", "hyp_help", "parse_set", "read_hyp_file"]
