"""Import official YOLOv6 checkpoints (``yolov6n.pt`` ... from the official releases).

An official checkpoint is a ``torch.save``\\ d dict ``{"model": <pickled nn.Module>, "ema": ...,
"updates": ..., "optimizer": ..., "epoch": int}``. The module objects are pickled by class
path (``yolov6.models.yolo.Model`` ...), so a plain ``torch.load`` would import - and run -
the official package. Here the file is read by :func:`repyolo.io.torchfile.load_torch_file`
(torch's weights-only unpickler; module classes become inert stand-ins, anything else is
refused by name before it runs). The state dict is recovered by walking the stand-in module
tree (``ema`` when set, else ``model``), renamed to repyolo's module names (``.block.conv.`` ->
``.conv.``, ``.block.bn.`` -> ``.bn.``), and the architecture is found by
:func:`repyolo.io.official_arch.infer_config`. Every official tensor must land in the repyolo
model and none may be left over.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from repyolo.data.coco import COCO_NAMES
from repyolo.errors import CheckpointError
from repyolo.io.official_arch import (
    ACTIVATIONS,
    AUX_PREFIXES,
    config_for,
    differences,
    fits,
    infer_config,
    model_signature,
    shapes_of,
    summary,
    to_repyolo_keys,
)
from repyolo.io.torchfile import StandIn, describe_file, load_torch_file, referenced_globals
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

__all__ = ["COCO_NAMES", "convert_official", "looks_official", "read_official_state_dict", "to_repyolo_keys"]


def looks_official(path: str | Path) -> bool:
    """Cheap check (no unpickling): a torch file whose pickle references ``yolov6.models`` /
    ``yolov6.layers`` classes."""
    path = Path(path)
    try:
        if describe_file(path) not in ("a torch zip file", "a legacy torch file"):
            return False
        names = referenced_globals(path)
    except (CheckpointError, OSError):
        return False
    return any(re.match(r"yolov6\.(models|layers)\b", n) for n in names)


def _module_state(root: StandIn, source: str) -> tuple[dict[str, torch.Tensor], dict]:
    """``state_dict()`` of a stand-in module tree (parameters and persistent buffers, dotted names),
    and what else the tree tells: its classes, BatchNorm eps values and activation-class counts."""
    state: dict[str, torch.Tensor] = {}
    classes: set[str] = set()
    bn_eps: set[float] = set()
    acts: Counter = Counter()

    def walk(module: Any, prefix: str, depth: int) -> None:
        if not isinstance(module, StandIn):
            raise CheckpointError(f"{source}: {prefix or 'model'} is a {type(module).__name__}, not a module")
        if depth > 100:
            raise CheckpointError(f"{source}: module tree too deep (cycle?)")
        classes.add(module.qualname)
        short = module.qualname.rsplit(".", 1)[1]
        if short in ACTIVATIONS:
            acts[short] += 1
        attrs = module.__dict__
        if short == "BatchNorm2d" and isinstance(attrs.get("eps"), float):
            bn_eps.add(attrs["eps"])
        skip = attrs.get("_non_persistent_buffers_set") or set()
        for table in ("_parameters", "_buffers"):
            for name, tensor in (attrs.get(table) or {}).items():
                if tensor is None or (table == "_buffers" and name in skip):
                    continue
                if not isinstance(tensor, torch.Tensor):
                    raise CheckpointError(f"{source}: {prefix}{name} is not a tensor")
                state[f"{prefix}{name}"] = tensor
        for name, child in (attrs.get("_modules") or {}).items():
            if child is not None:
                walk(child, f"{prefix}{name}.", depth + 1)

    walk(root, "", 0)
    return state, {"classes": sorted(classes), "bn_eps": sorted(bn_eps), "activations": acts}


def read_official_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read an official checkpoint's weights without running code from it.

    Returns ``(state_dict, info)``: official key names (training form), float tensors as
    float32; ``info`` has ``source`` (``'ema'`` or ``'model'``), ``epoch``, ``classes`` (pickled
    class paths), ``bn_eps``, ``activations`` (class counts) and ``dtypes``.
    """
    path = Path(path)
    obj = load_torch_file(path)
    if isinstance(obj, StandIn):  # a bare pickled model
        obj = {"model": obj}
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not an official YOLOv6 checkpoint (top level is {type(obj).__name__})")
    source = "ema" if obj.get("ema") is not None else "model"
    root = obj.get(source)
    if root is None:
        raise CheckpointError(f"{path}: no 'model' or 'ema' entry (keys: {sorted(map(str, obj))[:8]})")
    if isinstance(root, StandIn):
        raw, info = _module_state(root, str(path))
    elif isinstance(root, dict) and root and all(isinstance(v, torch.Tensor) for v in root.values()):
        raw, info = dict(root), {"classes": [], "bn_eps": [], "activations": Counter()}
    else:
        raise CheckpointError(f"{path}: '{source}' holds a {type(root).__name__}, not a model")
    if not raw:
        raise CheckpointError(f"{path}: the '{source}' model holds no weights")
    state = {k: v.to(torch.float32, copy=True) if v.is_floating_point() else v.clone() for k, v in raw.items()}
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in raw.values() if v.is_floating_point()})
    epoch = obj.get("epoch")
    info.update(source=source, epoch=epoch if isinstance(epoch, int) else None, dtypes=dtypes)
    if any(abs(e - 1e-3) > 1e-9 for e in info["bn_eps"]):
        LOGGER.warning("%s: BatchNorm eps %s differ from repyolo's 1e-3; outputs may differ slightly",
                       path, info["bn_eps"])
    return state, info


def _fill_constants(state: dict, expected: dict, cfg: dict) -> None:
    """The DFL bin constants an official head may not store."""
    missing = [k for k in expected if k not in state]
    if missing:
        reg_max = cfg.get("head", {}).get("reg_max", 16)
        proj = torch.linspace(0, reg_max, reg_max + 1)
        constants = {"detect.proj": proj, "detect.proj_conv.weight": proj.view(1, -1, 1, 1)}
        state.update({k: constants[k].clone() for k in missing})


def convert_official(path: str | Path, keep_aux: bool = True, model=None) -> dict:
    """Convert an official YOLOv6 checkpoint into a repyolo checkpoint dict (not written).

    Args:
        path: the official ``.pt`` file.
        keep_aux: keep the training-only head branches (anchor-aided ``*_ab``, DLD
            ``reg_preds_dist``) so fine-tuning and distillation can use them; ``model.fuse()``
            drops them for deployment. ``False`` drops them now.
        model: force this config (bundled name, YAML path or dict) instead of inferring it.
    Returns:
        ``{"model_cfg", "names", "fused": False, "model": state_dict (float32), "ema": None,
        "epoch": -1, "args": {"imported_from": ..., "import": summary}, ...}``, ready for
        :func:`repyolo.io.checkpoint.save_checkpoint`.
    Raises:
        CheckpointError: unsafe or unreadable file, or weights that do not fit the model exactly.
    """
    path = Path(path)
    official, info = read_official_state_dict(path)
    state = to_repyolo_keys(official)
    if len(state) != len(official):
        raise CheckpointError(f"{path}: two official keys map to the same repyolo key")
    try:
        cfg, nc = config_for(model, state) if model is not None else infer_config(state, info["activations"])
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    expected = model_signature(cfg, nc)
    shapes = shapes_of(state)
    if not fits(expected, shapes):  # every official tensor lands on a model tensor of its shape, none left over
        raise CheckpointError(f"{path}: weights do not fit model {cfg.get('name')!r}: {differences(expected, shapes)}")
    _fill_constants(state, expected, cfg)
    state = {k: state[k] for k in expected}  # repyolo's key order
    n_params = sum(v.numel() for k, v in state.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked", "detect.proj")))
    report = summary(cfg, n_params)
    report.update(source=info["source"], tensors=len(official), dtypes=info["dtypes"], aux_kept=keep_aux)
    if not keep_aux:
        state = {k: v for k, v in state.items() if not k.startswith(AUX_PREFIXES)}
        cfg = {**cfg, "head": {**cfg["head"], "aux_anchor": 0, "aux_dist": False}}
    LOGGER.info("%s: official YOLOv6 %s, %d classes, %d tensors from '%s'", path, cfg.get("name"), nc,
                len(official), info["source"])
    return {
        "model_cfg": cfg,
        "names": list(COCO_NAMES) if nc == 80 else [f"class{i}" for i in range(nc)],
        "fused": False,
        "model": state,
        "ema": None, "ema_updates": 0,
        "optimizer": None, "scheduler": None, "scaler": None,
        "epoch": -1, "step": 0,
        "args": {"imported_from": str(path), "official_epoch": info["epoch"], "import": report},
        "metrics": {}, "best_fitness": 0.0,
    }
