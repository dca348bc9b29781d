"""Read the official YOLOv6 layer listings (``../shared/reference/official_models/<name>.txt``).

A listing has three sections: the published config (``model = {...}``, ``solver = ...``,
``data_aug = ...`` as JSON), the state_dict (``key<TAB>shape``) and the leaf modules
(``name<TAB>Class geometry``, e.g. ``Conv2d in=3 out=16 k=3 s=2 p=1 g=1 bias=False``).

Official names hold the Conv-BN-act wrappers' ``ConvModule`` in ``.block``; repyolo's
Conv-BN-act has ``conv``/``bn``/``act`` directly, so ``.block.conv`` -> ``.conv`` (same for
``bn`` and ``act``), the renaming of :func:`repyolo.io.official.to_repyolo_keys`.
:func:`describe_leaf` writes a repyolo leaf module in the listing's format.
"""
from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
LISTINGS = Path(os.environ.get("REPYOLO_OFFICIAL_MODELS", REPO.parent / "shared" / "reference" / "official_models"))

_WRAPPED_KEY = re.compile(r"(^|\.)block\.(conv|bn)\.")
_WRAPPED_LEAF = re.compile(r"(^|\.)block\.(conv|bn|act)$")


def repyolo_key(key: str) -> str:
    """Official state_dict key -> repyolo key (``.block.conv.`` -> ``.conv.``, ``.block.bn.`` -> ``.bn.``)."""
    return _WRAPPED_KEY.sub(r"\1\2.", key)


def repyolo_leaf(name: str) -> str:
    """Official leaf module name -> repyolo name (a trailing ``.block.conv|bn|act`` loses ``.block``)."""
    return _WRAPPED_LEAF.sub(r"\1\2", name)


def read_listing(path: Path, official_names: bool = False) -> dict:
    """``{"config": {"model", "solver", "data_aug"}, "state": {key: shape}, "leaves": {name: description}}``
    in file order, with repyolo names (see :func:`repyolo_key`, :func:`repyolo_leaf`) or, with
    ``official_names``, the listing's own names (what an official checkpoint holds)."""
    key_name, leaf_name = (str, str) if official_names else (repyolo_key, repyolo_leaf)
    config, state, leaves = {}, {}, {}
    section = None
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            section = line.split()[1]  # config | state_dict | leaf
            continue
        if not line or line.startswith("#"):
            continue
        if section == "config":
            name, _, value = line.partition(" = ")
            config[name] = json.loads(value)
        elif section == "state_dict":
            key, shape = line.split("\t")
            state[key_name(key)] = tuple(ast.literal_eval(shape))
        elif section == "leaf":
            name, desc = line.split("\t")
            leaves[leaf_name(name)] = desc
    return {"config": config, "state": state, "leaves": leaves}


def describe_leaf(m: nn.Module) -> str:
    """A leaf module in the listing's format: class name, then conv / pool geometry."""
    cls = type(m).__name__
    if isinstance(m, nn.Conv2d):
        return (f"{cls} in={m.in_channels} out={m.out_channels} k={m.kernel_size[0]} s={m.stride[0]} "
                f"p={m.padding[0]} g={m.groups} bias={m.bias is not None}")
    if isinstance(m, nn.ConvTranspose2d):
        return f"{cls} in={m.in_channels} out={m.out_channels} k={m.kernel_size[0]} s={m.stride[0]}"
    if isinstance(m, nn.MaxPool2d):
        return f"{cls} k={m.kernel_size} s={m.stride} p={m.padding}"
    if isinstance(m, nn.Upsample):
        return f"{cls} scale={float(m.scale_factor)} mode={m.mode}"
    return cls


def model_leaves(model: nn.Module) -> dict[str, str]:
    """``{name: description}`` of every leaf module (no children) of ``model``."""
    return {name: describe_leaf(m) for name, m in model.named_modules() if name and not any(m.children())}


def diff(expected: dict, got: dict, what: str, limit: int = 8) -> list[str]:
    """Human-readable differences between two ``{name: value}`` dicts (missing, extra, different)."""
    out = []
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    changed = [f"{k}: official {expected[k]!r}, repyolo {got[k]!r}"
               for k in expected if k in got and got[k] != expected[k]]
    if missing:
        out.append(f"{len(missing)} official {what} missing in repyolo, e.g. {missing[:limit]}")
    if extra:
        out.append(f"{len(extra)} repyolo {what} not in the listing, e.g. {extra[:limit]}")
    if changed:
        out.append(f"{len(changed)} {what} differ, e.g. " + "; ".join(changed[:limit]))
    return out
