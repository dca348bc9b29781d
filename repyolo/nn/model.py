"""The YOLOv6 detector: backbone -> neck -> decoupled head, built from a YAML config.

A model config is plain data (YAML, never executed):

.. code-block:: yaml

    name: yolov6n
    family: v3               # v3 | v3-p6 | v2 | base | mbla | qa | lite | ... (groups `repyolo info`)
    published: {params_m: 4.7, gflops: 11.4, img: 640}   # published deploy size (and coco_map, %)
    depth_multiple: 0.33
    width_multiple: 0.25
    block: repvgg            # 3x3 unit: repvgg | qarepvgg | conv (plain Conv-BN-act) | repopt | hypersearch
    act: relu                # relu | silu (the 3x3 units and the stages)
    csp_e: null              # BepC3 / MBLA hidden ratio (M: 0.6667, L: 0.5), null = RepBlock stages
    stage_block: null        # repblock | bepc3 | mbla; null = repblock, or bepc3 when csp_e is set
    backbone: {repeats: [1, 6, 12, 18, 6], channels: [64, 128, 256, 512, 1024], cspsppf: true}
    neck: {fusion: bic, repeats: [12, 12, 12, 12], channels: [256, 128, 128, 256, 256, 512],
           act: relu}        # act: the reduce / BiC / down-sample convs' activation (default: act)
    head: {use_dfl: false, reg_max: 16, act: silu, aux_anchor: 0, aux_dist: false}
    strides: [8, 16, 32]
    loss: {iou_type: siou}
    atss_warmup_epochs: 0

``depth_multiple`` scales repeats (``max(round(n * d), 1)`` for ``n > 1``), ``width_multiple``
scales channels (rounded up to a multiple of 8).

The mobile family has its own backbone and neck (:mod:`repyolo.nn.lite`) and a depthwise head:

.. code-block:: yaml

    width_multiple: 0.7
    backbone: {type: lite, repeats: [1, 3, 7, 3], channels: [24, 32, 64, 128, 256], scale_size: 0.5}
    neck: {type: lite, unified_channels: 96}
    head: {unit: dpblock, kernel: 5, act: hardswish, use_dfl: false, reg_max: 0}
    strides: [8, 16, 32, 64]

Head keys: ``use_dfl``, ``reg_max`` (DFL bins - 1; 0 = no DFL constants), ``act``, ``unit``
(``conv`` | ``dpblock``), ``kernel``, ``aux_anchor``, ``aux_dist``, ``dist_reg_max`` (bins - 1 of
the DLD branch, default ``reg_max``). Training hyper-parameters a model publishes are top-level
keys named as the fields of :class:`repyolo.cfg.settings.Hyp` (``lr0``, ``mixup``,
``atss_warmup_epochs``, ``loss.iou_type``, and
for the newer families ``momentum``, ``weight_decay``, ``scale``); the network ignores them.
"""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import torch
import torch.nn as nn
import yaml

from repyolo.errors import ConfigError
from repyolo.nn.backbone import EfficientRep
from repyolo.nn.blocks import fuse_modules
from repyolo.nn.head import EffiDeHead
from repyolo.nn.lite import LiteEffiBackbone, LiteEffiNeck
from repyolo.nn.neck import RepPAN

CFG_DIR = Path(__file__).resolve().parent.parent / "cfg"


def available_models() -> list[str]:
    """Names of the bundled model configs (``yolov6n`` ... ``yolov6l6``, ``*-v2``, ``*-base``, ``*-mbla``,
    ``*-qa``, ``yolov6lite-*``)."""
    return sorted(p.stem for p in CFG_DIR.glob("yolov6*.yaml"))


def model_zoo() -> list[dict]:
    """Every bundled config as ``{"name", "family", "description", "img_size", "published"}``, read from
    the YAML files (no model is built). ``published`` is the config's ``published:`` mapping (deploy
    ``params_m``, ``gflops`` at ``img``, ``coco_map`` / ``coco_map_int8`` in %, ``note``), or ``{}``."""
    out = []
    for name in available_models():
        cfg = yaml.safe_load((CFG_DIR / f"{name}.yaml").read_text())
        out.append({"name": name, "family": str(cfg.get("family", "custom")), "description": cfg.get("description", ""),
                    "img_size": cfg.get("img_size", 640), "published": dict(cfg.get("published") or {})})
    return out


# official config spellings -> bundled names, applied in order to the lower-cased file stem
_OFFICIAL_SPELLINGS = (
    (re.compile(r"^yolov6[-_]?lite[-_]"), "yolov6lite-"),  # yolov6_lite_s, yolov6lite_s -> yolov6lite-s
    (re.compile(r"_"), "-"),                                # yolov6n_base -> yolov6n-base, yolov6s_mbla ...
    (re.compile(r"-opt$"), "-repopt"),                      # repopt/yolov6s_opt.py -> yolov6s-repopt
    (re.compile(r"^yolov6t$"), "yolov6t-v2"),               # T exists in the v2 release only
)


def bundled_name(name: str) -> str | None:
    """The bundled config a model name means, or ``None``: a repyolo name (``yolov6n-base``) or an
    official config name or file (``yolov6n_base``, ``configs/base/yolov6n_base.py``, ``yolov6_lite_s``,
    ``yolov6lite_s``, ``yolov6s_mbla``, ``yolov6n_qa``, ``yolov6l6.py``), case-insensitive.
    Official ``.py`` configs are matched by name only, never read or executed."""
    stem = Path(str(name)).name
    if stem.lower().endswith(".py"):
        stem = stem[:-3]
    candidates = [stem, stem.lower()]
    canonical = stem.lower()
    for pattern, repl in _OFFICIAL_SPELLINGS:
        canonical = pattern.sub(repl, canonical)
    candidates.append(canonical)
    return next((c for c in candidates if c and (CFG_DIR / f"{c}.yaml").is_file()), None)


def resolve_model_path(name_or_yaml: str | Path) -> Path:
    """The YAML file a model argument names: a ``.yaml`` / ``.yml`` path (which must exist), else a
    bundled config by name (:func:`bundled_name`). Raises :class:`ConfigError` listing the bundled names."""
    text = str(name_or_yaml)
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml"):
        if path.is_file():
            return path
        raise ConfigError(f"model config {text!r} not found (bundled configs are named without a path: "
                          f"{', '.join(available_models())})")
    name = bundled_name(text)
    if name is not None:
        return CFG_DIR / f"{name}.yaml"
    if path.is_file() and path.suffix.lower() != ".py":
        return path  # a model YAML under another extension
    raise ConfigError(f"unknown model {text!r}: not a model YAML and not a bundled config or official config "
                      f"name (bundled: {', '.join(available_models())})")


def load_model_config(name_or_yaml: str | Path | dict) -> dict:
    """Resolve a model name (bundled, or an official config name such as ``yolov6n_base.py``), a YAML
    path or a dict into a config dict (a fresh copy)."""
    if isinstance(name_or_yaml, dict):
        return copy.deepcopy(name_or_yaml)
    path = resolve_model_path(name_or_yaml)
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(cfg, dict) or "backbone" not in cfg or "neck" not in cfg:
        raise ConfigError(f"{path}: a model config needs 'backbone' and 'neck' sections")
    cfg.setdefault("name", path.stem)
    return cfg


def scale_depth(n: int, d: float) -> int:
    return max(round(n * d), 1) if n > 1 else n


def scale_width(c: int, w: float) -> int:
    return int(math.ceil(c * w / 8) * 8)


def build_backbone(cfg: dict) -> nn.Module:
    """The backbone a config describes: ``backbone.type`` ``efficientrep`` (default; EfficientRep /
    CSPBep, P5 or P6) or ``lite`` (Lite_EffiBackbone). Its ``out_channels`` lists the features it returns."""
    d, w = float(cfg.get("depth_multiple", 1.0)), float(cfg.get("width_multiple", 1.0))
    b = cfg["backbone"]
    kind = b.get("type", "efficientrep")
    if kind == "lite":
        return LiteEffiBackbone(b["channels"], b["repeats"], width=w, scale_size=float(b.get("scale_size", 0.5)),
                                act=b.get("act", "hardswish"))
    if kind != "efficientrep":
        raise ValueError(f"unknown backbone type {kind!r}; expected 'efficientrep' or 'lite'")
    return EfficientRep(
        [scale_width(c, w) for c in b["channels"]], [scale_depth(r, d) for r in b["repeats"]],
        block=cfg.get("block", "repvgg"), act=cfg.get("act", "relu"), csp_e=cfg.get("csp_e"),
        fuse_p2=cfg["neck"].get("fusion", "bic") == "bic", cspsppf=b.get("cspsppf", False),
        stage=cfg.get("stage_block"))


def build_neck(cfg: dict, in_channels: list[int]) -> nn.Module:
    """The neck a config describes: ``neck.type`` ``reppan`` (default; Rep-PAN / RepBiFPAN and their
    CSP forms) or ``lite`` (Lite_EffiNeck). Its ``out_channels`` lists the head's input widths."""
    d, w = float(cfg.get("depth_multiple", 1.0)), float(cfg.get("width_multiple", 1.0))
    n = cfg["neck"]
    kind = n.get("type", "reppan")
    if kind == "lite":
        return LiteEffiNeck(in_channels, int(n.get("unified_channels", 96)), int(n.get("kernel", 5)),
                            act=n.get("act", "hardswish"))
    if kind != "reppan":
        raise ValueError(f"unknown neck type {kind!r}; expected 'reppan' or 'lite'")
    act = cfg.get("act", "relu")
    return RepPAN(
        in_channels, [scale_width(c, w) for c in n["channels"]], [scale_depth(r, d) for r in n["repeats"]],
        fusion=n.get("fusion", "bic"), csp_e=cfg.get("csp_e"), block=cfg.get("block", "repvgg"), act=act,
        stage=cfg.get("stage_block"), lateral_act=n.get("act", act))


def build_head(cfg: dict, in_channels: list[int], num_classes: int) -> EffiDeHead:
    """The decoupled head a config's ``head`` section describes, over ``in_channels``."""
    h = cfg.get("head", {})
    strides = cfg.get("strides") or [8 * 2 ** i for i in range(len(in_channels))]
    return EffiDeHead(
        in_channels, num_classes, strides, reg_max=h.get("reg_max", 16), use_dfl=h.get("use_dfl", False),
        act=h.get("act", "silu"), aux_anchor=h.get("aux_anchor", 0), aux_dist=h.get("aux_dist", False),
        dist_reg_max=h.get("dist_reg_max"), unit=h.get("unit", "conv"), kernel=h.get("kernel", 5))


BN_EPS, BN_MOMENTUM = 1e-3, 0.03  # BatchNorm settings of the published YOLOv6 models


class YOLOv6(nn.Module):
    """YOLOv6 detector.

    ``forward(x)`` with ``x`` float ``(B, 3, H, W)`` in 0..1 (H, W multiples of the largest stride):
    in eval mode ``(B, A, 4 + nc)`` (xyxy pixels + class scores, before NMS); in training mode
    the head's dict of raw outputs (see :class:`~repyolo.nn.head.EffiDeHead`).
    """

    def __init__(self, cfg: dict, num_classes: int = 80):
        super().__init__()
        self.cfg = copy.deepcopy(cfg)
        self.cfg["nc"] = self.nc = int(num_classes)
        self.names = [str(i) for i in range(self.nc)]
        try:
            self.backbone = build_backbone(cfg)
            self.neck = build_neck(cfg, self.backbone.out_channels)
            self.detect = build_head(cfg, self.neck.out_channels, self.nc)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"model config {cfg.get('name', '?')!r} is malformed: {exc!r}") from None
        strides = self.detect.strides
        if len(strides) != self.detect.nl:
            raise ConfigError(f"model config {cfg.get('name', '?')!r}: {len(strides)} strides for "
                              f"{self.detect.nl} output levels")
        self.register_buffer("stride", torch.tensor(strides, dtype=torch.float32), persistent=False)
        self.is_fused = False
        for m in self.modules():  # YOLOv6's BatchNorm settings (the one place they are set)
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = BN_EPS, BN_MOMENTUM

    def forward(self, x: torch.Tensor):
        return self.detect(self.neck(self.backbone(x)))

    def fuse(self) -> "YOLOv6":
        """Re-parameterize in place for deployment: every RepVGG block becomes one 3x3 conv, every
        BN is folded into its conv, training-only head branches are dropped. Idempotent; returns self."""
        fuse_modules(self)
        self.detect.drop_aux()
        self.cfg.setdefault("head", {})
        self.cfg["head"] = {**self.cfg["head"], "aux_anchor": 0, "aux_dist": False}
        self.is_fused = True
        return self

    @property
    def max_stride(self) -> int:
        return int(self.stride.max())


def build_model(name_or_yaml: str | Path | dict, num_classes: int = 80, **overrides) -> YOLOv6:
    """Build a YOLOv6 model from a bundled name (``yolov6n`` ...), a YAML path or a config dict.

    ``overrides`` replace top-level config keys (e.g. ``head={...}``). Weights are randomly
    initialized (BN eps 1e-3, momentum 0.03, as in YOLOv6).
    """
    cfg = load_model_config(name_or_yaml)
    if overrides:
        cfg.pop("published", None)  # the published sizes are those of the config as bundled
    cfg.update(overrides)
    return YOLOv6(cfg, num_classes)
