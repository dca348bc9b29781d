"""Which repyolo model config an official YOLOv6 state dict is (keys, shapes, activations).

:func:`infer_config` first tries every bundled config (all published families: v3, P6, v2,
base, MBLA, QARepVGG, Lite), with ``nc`` and the head's training-only branches read off the
keys: a config fits when its model has exactly the file's keys and shapes (the DFL constants
``proj`` / ``proj_conv`` may be absent). When several fit (``yolov6l`` and ``yolov6l-base`` have
identical keys; only their activations differ), the activation classes of the file's pickled
module tree decide. Custom official configs of the v3 / v2 layouts (other multipliers) get a
literal config with the channels and repeats read off the keys (:func:`describe_architecture`).
"""
from __future__ import annotations

import functools
import json
import re
from collections import Counter

import torch

from repyolo.errors import CheckpointError, ConfigError
from repyolo.nn.model import YOLOv6, available_models, load_model_config, scale_width

# head branches used in training only (anchor-aided training, DLD distillation)
AUX_PREFIXES = ("detect.cls_preds_ab.", "detect.reg_preds_ab.", "detect.reg_preds_dist.")
# repyolo keys an official head may lack; they hold constants (the DFL bin values)
CONSTANT_KEYS = ("detect.proj", "detect.proj_conv.weight")
ACTIVATIONS = ("ReLU", "SiLU", "Hardswish", "Hardsigmoid", "LeakyReLU", "ReLU6", "Sigmoid")
_WRAPPED_CONV = re.compile(r"(^|\.)block\.(conv|bn)\.")


def to_repyolo_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official keys to repyolo's: ``.block.conv.`` -> ``.conv.``, ``.block.bn.`` -> ``.bn.`` (idempotent)."""
    return {_WRAPPED_CONV.sub(r"\1\2.", k): v for k, v in state.items()}


def shapes_of(state: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _meta_model(cfg: dict, nc: int) -> YOLOv6:
    with torch.device("meta"):
        return YOLOv6(cfg, nc)


@functools.lru_cache(maxsize=256)
def _model_facts(cfg_json: str, nc: int) -> tuple[tuple, tuple]:
    """``(((key, shape), ...), ((activation class, count), ...))`` of the model a JSON config describes,
    built once on the meta device per config (inferring a file's architecture tries every bundled one)."""
    model = _meta_model(json.loads(cfg_json), nc)
    return tuple(shapes_of(model.state_dict()).items()), tuple(sorted(activation_counts(model).items()))


def _facts(cfg: dict, nc: int) -> tuple[dict[str, tuple[int, ...]], Counter]:
    shapes, acts = _model_facts(json.dumps(cfg, sort_keys=True, default=str), int(nc))
    return dict(shapes), Counter(dict(acts))


def model_signature(cfg: dict, nc: int) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of the training-form model ``cfg`` describes (built on the meta device, cached)."""
    return _facts(cfg, nc)[0]


def activation_counts(model: torch.nn.Module) -> Counter:
    """How many modules of each activation class (:data:`ACTIVATIONS`) ``model`` holds."""
    return Counter(type(m).__name__ for m in model.modules() if type(m).__name__ in ACTIVATIONS)


def aux_branches(shapes: dict, nc: int) -> dict:
    """The head's training-only branches present in the file: ``aux_anchor`` (anchors per point),
    ``aux_dist`` (DLD branch) and its ``dist_reg_max`` (bins - 1, read off its output width)."""
    ab = shapes.get("detect.cls_preds_ab.0.weight")
    dist = shapes.get("detect.reg_preds_dist.0.weight")
    out = {"aux_anchor": ab[0] // nc if ab else 0, "aux_dist": dist is not None}
    if dist is not None:
        out["dist_reg_max"] = dist[0] // 4 - 1
    return out


def with_head_from(cfg: dict, shapes: dict, nc: int) -> dict:
    """``cfg`` with ``nc`` and the head's training-only branches the file has."""
    return {**cfg, "head": {**cfg.get("head", {}), **aux_branches(shapes, nc)}, "nc": nc}


def fits(expected: dict, shapes: dict) -> bool:
    """The file's keys/shapes equal the model's, allowing only the constant DFL keys to be absent."""
    return all(shapes.get(k) == s for k, s in expected.items() if k in shapes) and set(shapes) <= set(expected) \
        and all(k in shapes or k in CONSTANT_KEYS for k in expected)


def differences(expected: dict, found: dict, limit: int = 5) -> str:
    """One line on how ``found`` (the file) differs from ``expected`` (the model), first mismatch first."""
    missing = [k for k in expected if k not in found and k not in CONSTANT_KEYS]
    extra = [k for k in found if k not in expected]
    shape = [f"{k}: file {found[k]} vs model {expected[k]}" for k in expected if k in found and found[k] != expected[k]]
    parts = []
    if shape:
        parts.append(f"{len(shape)} shape mismatches (first: {'; '.join(shape[:limit])})")
    if missing:
        parts.append(f"{len(missing)} model keys not in the file (first: {', '.join(missing[:limit])})")
    if extra:
        parts.append(f"{len(extra)} file keys not in the model (first: {', '.join(extra[:limit])})")
    return "; ".join(parts)


def _num_classes(shapes: dict) -> int:
    if "detect.cls_preds.0.weight" not in shapes:
        raise CheckpointError("no detect.cls_preds weights: not a YOLOv6 detector")
    return shapes["detect.cls_preds.0.weight"][0]


def bundled_matches(shapes: dict, activations: Counter | None = None) -> list[dict]:
    """Every bundled config whose model has exactly these keys and shapes, best first: when
    several fit and ``activations`` (the file's activation-class counts) are given, those with the
    same counts, then those with the same set of activation classes, come first."""
    nc = _num_classes(shapes)
    scored = []
    for name in available_models():
        cfg = with_head_from(load_model_config(name), shapes, nc)
        try:
            signature, counts = _facts(cfg, nc)
        except ConfigError:
            continue
        if not fits(signature, shapes):
            continue
        score = 0 if not activations else 0 if counts == activations else 1 if set(counts) == set(activations) else 2
        scored.append((score, len(scored), cfg))
    return [cfg for _, _, cfg in sorted(scored, key=lambda s: s[:2])]


def infer_config(state_dict: dict[str, torch.Tensor], activations: Counter | None = None) -> tuple[dict, int]:
    """The model config whose build has exactly these keys and shapes, and the number of classes.

    ``state_dict`` may use official or repyolo key names; ``activations`` are the activation-class
    counts of the file's module tree (they tell apart configs with identical keys). Raises
    :class:`CheckpointError` when no config reproduces the file.
    """
    shapes = shapes_of(to_repyolo_keys(state_dict))
    nc = _num_classes(shapes)
    matches = bundled_matches(shapes, activations)
    if matches:
        return matches[0], nc
    try:
        arch = describe_architecture(shapes)
    except CheckpointError as exc:
        raise CheckpointError(f"no model config reproduces these weights ({exc})") from None
    cfg = {**literal_config(arch, activations), "nc": nc}
    try:
        expected = model_signature(cfg, nc)
    except ConfigError as exc:
        raise CheckpointError(f"cannot build a model for these weights: {exc}") from None
    if not fits(expected, shapes):
        raise CheckpointError(f"no model config reproduces these weights: {differences(expected, shapes)}")
    return cfg, nc


def config_for(model, state_dict: dict[str, torch.Tensor]) -> tuple[dict, int]:
    """A given config (bundled name, YAML or dict) with ``nc`` and the head's training-only
    branches taken from ``state_dict``; raises :class:`CheckpointError` naming the first mismatching
    layer if it does not fit."""
    shapes = shapes_of(to_repyolo_keys(state_dict))
    nc = _num_classes(shapes)
    cfg = with_head_from(load_model_config(model), shapes, nc)
    expected = model_signature(cfg, nc)
    if not fits(expected, shapes):
        raise CheckpointError(f"model {cfg.get('name', model)!r} does not fit these weights: "
                              f"{differences(expected, shapes)}")
    return cfg, nc


# ------------------------------------------------------------------------ literal configs (v3 / v2)


def _children(shapes: dict, prefix: str) -> list[str]:
    """Distinct names directly below ``prefix`` (``'a.b.'``), in key order."""
    seen: dict[str, None] = {}
    for k in shapes:
        if k.startswith(prefix):
            seen.setdefault(k[len(prefix):].split(".", 1)[0], None)
    return list(seen)


def _out_channels(shapes: dict, prefix: str) -> int:
    """Output channels of a stage/block at ``prefix`` (RepBlock, BepC3, RepVGG or Conv block)."""
    for suffix in ("cv3.conv.weight", "conv1.rbr_dense.conv.weight", "conv1.conv.weight",
                   "conv1.conv1.rbr_dense.conv.weight", "conv1.conv1.conv.weight",
                   "rbr_dense.conv.weight", "conv.weight"):
        if prefix + suffix in shapes:
            return shapes[prefix + suffix][0]
    raise CheckpointError(f"cannot read the width of {prefix.rstrip('.')}")


def _stage_units(shapes: dict, prefix: str) -> tuple[int, tuple[int, int] | None]:
    """``(repeats n, (hidden, out) for a BepC3 stage or None)`` of the stage at ``prefix``."""
    if prefix + "cv1.conv.weight" in shapes:
        units = 1 + len(_children(shapes, prefix + "m.block."))
        return 2 * units, (shapes[prefix + "cv1.conv.weight"][0], shapes[prefix + "cv3.conv.weight"][0])
    return 1 + len(_children(shapes, prefix + "block.")), None


def describe_architecture(shapes: dict[str, tuple[int, ...]]) -> dict:
    """Read a v3 / v2 (EfficientRep / CSPBep + Rep-PAN / RepBiFPAN) layout off repyolo-named keys.

    Returns ``p6``, ``fusion`` (``'bic'`` v3 / ``'concat'`` v2), ``block``, ``cspsppf``,
    ``backbone_channels`` / ``backbone_repeats``, ``neck_channels`` / ``neck_repeats`` (as
    built), ``csp`` (``(hidden, out)`` per BepC3, empty for RepBlock stages), ``head``, ``nl``, ``nc``.
    """
    try:
        return _describe(shapes)
    except KeyError as exc:
        raise CheckpointError(f"not a known YOLOv6 layout: no {exc.args[0]!r} weights") from None


def _describe(shapes: dict[str, tuple[int, ...]]) -> dict:
    if any(".rbr_reparam." in k for k in shapes) or ("backbone.stem.conv.bias" in shapes
                                                      and "backbone.stem.bn.weight" not in shapes):
        raise CheckpointError("a deploy (re-parameterized) checkpoint; import the training-form file "
                              "(the released .pt files are in training form)")
    if "backbone.stem.rbr_dense.conv.weight" in shapes:
        block, stem = "repvgg", shapes["backbone.stem.rbr_dense.conv.weight"]
    elif "backbone.stem.conv.weight" in shapes:
        block, stem = "conv", shapes["backbone.stem.conv.weight"]
    else:
        raise CheckpointError("no backbone.stem weights: not an EfficientRep / CSPBep backbone")
    if "backbone.stem.rbr_1x1.weight" in shapes:
        block = "qarepvgg"
    n_stages = len([c for c in _children(shapes, "backbone.") if c.startswith("ERBlock_")])
    if n_stages not in (4, 5):
        raise CheckpointError(f"unexpected backbone with {n_stages} stages")
    b_channels, b_repeats, csp = [stem[0]], [1], []
    for i in range(2, n_stages + 2):
        pre = f"backbone.ERBlock_{i}."
        b_channels.append(_out_channels(shapes, pre + "0."))
        n, hidden = _stage_units(shapes, pre + "1.")
        b_repeats.append(n)
        csp += [hidden] if hidden else []
    last = f"backbone.ERBlock_{n_stages + 1}.2."
    cspsppf = any(k.startswith(last + "cspsppf.") for k in shapes)
    if not cspsppf and not any(k.startswith(last + "sppf.") for k in shapes):
        raise CheckpointError("no SPPF / CSPSPPF block after the last backbone stage")
    if any(k.startswith("neck.Bifusion0.") for k in shapes):
        fusion = "bic"
    elif any(k.startswith("neck.upsample0.") for k in shapes):
        fusion = "concat"
    else:
        raise CheckpointError("unknown neck (neither BiC fusion nor up-sample + concat)")
    k = n_stages - 2
    top = n_stages + 1
    td = [f"neck.Rep_p{top - 1 - i}." for i in range(k)]
    bu = [f"neck.Rep_n{j}." for j in ([3, 4] if k == 2 else [4, 5, 6])]
    n_channels = [shapes[f"neck.reduce_layer{i}.conv.weight"][0] for i in range(k)]
    n_repeats = []
    for i in range(k):
        n_channels += [shapes[f"neck.downsample{2 - i}.conv.weight"][0], _out_channels(shapes, bu[i])]
    for pre in td + bu:
        n, hidden = _stage_units(shapes, pre)
        n_repeats.append(n)
        csp += [hidden] if hidden else []
    nl = len(_children(shapes, "detect.cls_preds."))
    if nl != k + 1 or "detect.cls_preds.0.weight" not in shapes:
        raise CheckpointError(f"head with {nl} levels does not fit a neck with {k + 1} outputs")
    nc = shapes["detect.cls_preds.0.weight"][0]
    reg_max = shapes["detect.proj"][0] - 1 if "detect.proj" in shapes else 16
    n_reg = shapes["detect.reg_preds.0.weight"][0]
    if n_reg not in (4, 4 * (reg_max + 1)):
        raise CheckpointError(f"reg_preds has {n_reg} outputs: expected 4 or 4 x {reg_max + 1} (DFL)")
    return {
        "p6": n_stages == 5, "fusion": fusion, "block": block, "cspsppf": cspsppf,
        "backbone_channels": b_channels, "backbone_repeats": b_repeats,
        "neck_channels": n_channels, "neck_repeats": n_repeats, "csp": csp,
        "head": {"use_dfl": n_reg != 4, "reg_max": reg_max, **aux_branches(shapes, nc)},
        "nl": nl, "nc": nc,
    }


def _csp_ratio(pairs: list[tuple[int, int]]) -> float | None:
    """A BepC3 hidden ratio ``e`` with ``int(out * e) == hidden`` for every ``(hidden, out)``."""
    if not pairs:
        return None
    h, o = pairs[0]
    for e in (0.5, 0.666667, 0.75, round(h / o, 6), round(h / o, 6) + 1e-6):
        if all(int(out * e) == hid for hid, out in pairs):
            return e
    raise CheckpointError(f"BepC3 blocks with inconsistent hidden widths {pairs[:4]}")


def literal_config(arch: dict, activations: Counter | None = None) -> dict:
    """A config that builds exactly these channels and repeats (multipliers 1.0). The activation:
    SiLU stages when the file's module tree has SiLU (with a ReLU neck, as the official L models,
    when it also has ReLU), else ReLU; without module-tree information, SiLU for plain-conv blocks."""
    p6 = arch["p6"]
    if activations:
        act = "silu" if activations.get("SiLU") else "relu"
        neck_act = "relu" if act == "silu" and activations.get("ReLU") else act
    else:
        act = "silu" if arch["block"] == "conv" else "relu"
        neck_act = act
    return {
        "name": f"imported{'-p6' if p6 else ''}{'-v2' if arch['fusion'] == 'concat' else ''}",
        "description": "architecture read from an official YOLOv6 checkpoint",
        "depth_multiple": 1.0, "width_multiple": 1.0, "block": arch["block"], "act": act,
        "csp_e": _csp_ratio(arch["csp"]),
        "backbone": {"repeats": arch["backbone_repeats"], "channels": arch["backbone_channels"],
                     "cspsppf": arch["cspsppf"]},
        "neck": {"repeats": arch["neck_repeats"], "channels": arch["neck_channels"], "fusion": arch["fusion"],
                 **({"act": neck_act} if neck_act != act else {})},
        "head": {"act": "silu", **arch["head"]},
        "strides": [8 * 2 ** i for i in range(arch["nl"])],
        "img_size": 1280 if p6 else 640,
        "loss": {"iou_type": "giou"},
        "atss_warmup_epochs": 4 if p6 or arch["fusion"] == "concat" else 0,
    }


def summary(cfg: dict, n_params: int) -> dict:
    """What an import found, for the log and the checkpoint's ``args.import``."""
    head = cfg.get("head", {})
    aux = [n for n, on in (("anchor-aided", head.get("aux_anchor")), ("DLD", head.get("aux_dist"))) if on]
    return {"model": cfg.get("name", "?"), "family": cfg.get("family", "custom"), "nc": cfg["nc"],
            "width_multiple": cfg.get("width_multiple"), "depth_multiple": cfg.get("depth_multiple"),
            "block": cfg.get("block", "lite" if cfg.get("backbone", {}).get("type") == "lite" else None),
            "act": cfg.get("act"), "dfl": bool(head.get("use_dfl")), "aux_branches": aux, "params": n_params}


__all__ = ["AUX_PREFIXES", "CONSTANT_KEYS", "activation_counts", "aux_branches", "bundled_matches", "config_for",
           "describe_architecture", "differences", "fits", "infer_config", "literal_config", "model_signature",
           "scale_width", "shapes_of", "summary", "to_repyolo_keys"]
