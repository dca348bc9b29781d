"""Import the released YOLOv6-Lite NCNN models (``yolov6-lite-s.param`` + ``.bin``) as repyolo checkpoints.

The NCNN pair holds the deploy form (BatchNorm folded into the convolutions, weights usually fp16).
:func:`convert_ncnn` maps it onto the official module names (:mod:`repyolo.io.ncnn_lite`, by
dataflow), renames the keys to repyolo's (:func:`~repyolo.io.official_arch.to_repyolo_keys`),
picks the Lite config whose model has exactly these keys and shapes (``yolov6lite-s`` / ``-m`` /
``-l``), and returns a training-form checkpoint dict: every folded convolution becomes its
convolution + an identity BatchNorm (eps :data:`repyolo.nn.model.BN_EPS`) carrying the folded
bias, so the checkpoint evaluates like the NCNN file and fine-tunes like any other. 80-class
files get the COCO names.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from repyolo.data.coco import COCO_NAMES
from repyolo.errors import CheckpointError
from repyolo.io.ncnn import MAGIC, NcnnFormatError, read_ncnn
from repyolo.io.ncnn_lite import lite_state_dict_from_ncnn
from repyolo.io.official_arch import config_for, differences, model_signature, shapes_of, summary, to_repyolo_keys
from repyolo.nn.model import BN_EPS, available_models, load_model_config
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

__all__ = ["convert_ncnn", "looks_ncnn", "lite_configs"]


def looks_ncnn(path: str | Path) -> bool:
    """Cheap check: a ``.param`` file, or a file whose first line is NCNN's magic number."""
    path = Path(path)
    if path.suffix.lower() == ".param":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(16).split(b"\n", 1)[0].strip() == str(MAGIC).encode()
    except OSError:
        return False


def lite_configs() -> list[str]:
    """The bundled YOLOv6-Lite config names (``family: lite``)."""
    return [n for n in available_models() if load_model_config(n).get("family") == "lite"]


def _pick_config(state: dict[str, torch.Tensor], model: str | None, source: str) -> tuple[dict, int]:
    """The forced ``model`` config, or the one Lite config that fits ``state`` exactly."""
    if model is not None:
        try:
            return config_for(model, state)
        except CheckpointError as exc:
            raise CheckpointError(f"{source}: {exc}") from None
    nc = int(state["detect.cls_preds.0.weight"].shape[0])
    shapes = shapes_of(state)
    misfits = []
    for name in lite_configs():
        try:
            return config_for(name, state)
        except CheckpointError:
            expected = model_signature(load_model_config(name), nc)
            wrong = sum(shapes.get(k) != v for k, v in expected.items()) + len(set(shapes) - set(expected))
            misfits.append((wrong, name, differences(expected, shapes)))
    wrong, name, diff = min(misfits)
    raise CheckpointError(f"{source}: a YOLOv6-Lite graph, but its weights fit none of {', '.join(lite_configs())} "
                          f"(closest {name}: {diff})")


def convert_ncnn(param_path: str | Path, bin_path: str | Path | None = None, model: str | None = None) -> dict:
    """Convert a released YOLOv6-Lite NCNN pair into a repyolo checkpoint dict (not written).

    Args:
        param_path: the ``.param`` file; ``bin_path``: its weights (default: same name, ``.bin``).
        model: force this config (bundled name or YAML) instead of matching the Lite configs.
    Returns:
        ``{"model_cfg", "names", "fused": False, "model": state_dict (float32, training form with
        identity BatchNorms), "ema": None, "epoch": -1, "args": {"imported_from", "import": summary}, ...}``,
        ready for :func:`repyolo.io.checkpoint.save_checkpoint`.
    Raises:
        CheckpointError: one line naming the file and the first mismatching layer (truncated or
        foreign ``.bin``, a garbled ``.param`` line, a graph that is not YOLOv6-Lite, weights that
        fit no Lite config).
    """
    param_path = Path(param_path)
    bin_path = Path(bin_path) if bin_path is not None else param_path.with_suffix(".bin")
    if not param_path.is_file():
        raise CheckpointError(f"{param_path}: NCNN param file not found")
    if not bin_path.is_file():
        raise CheckpointError(f"{bin_path}: the weights file of {param_path.name} is missing beside it")
    ncnn_model = read_ncnn(param_path, bin_path)
    official = lite_state_dict_from_ncnn(ncnn_model.graph, ncnn_model.weights, BN_EPS)
    state = to_repyolo_keys({k: torch.from_numpy(np.array(v)) for k, v in official.items()})
    if "detect.cls_preds.0.weight" not in state:
        raise NcnnFormatError(f"{param_path}: no class prediction convolution found")
    cfg, nc = _pick_config(state, model, str(param_path))
    expected = model_signature(cfg, nc)
    state = {k: state[k] for k in expected}  # repyolo's key order (config_for checked they are all there)
    n_params = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var",
                                                                          "num_batches_tracked")))
    report = summary(cfg, n_params)
    storages = sorted(set(ncnn_model.storage.values()))
    report.update(source="ncnn", tensors=len(official), dtypes=storages, aux_kept=False)
    LOGGER.info("%s: YOLOv6-Lite NCNN model -> %s, %d classes, %d convolutions (%s weights)", param_path,
                cfg.get("name"), nc, len(ncnn_model.weights), "/".join(storages))
    return {
        "model_cfg": cfg,
        "names": list(COCO_NAMES) if nc == len(COCO_NAMES) else [f"class{i}" for i in range(nc)],
        "fused": False,
        "model": state,
        "ema": None, "ema_updates": 0,
        "optimizer": None, "scheduler": None, "scaler": None,
        "epoch": -1, "step": 0,
        "args": {"imported_from": str(param_path), "import": report},
        "metrics": {}, "best_fitness": 0.0,
    }
