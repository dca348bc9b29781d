"""NCNN export: our own writer (no pnnx), a folder ``NAME_ncnn_model/`` with ``NAME.param``, ``NAME.bin``
and ``metadata.json``.

The graph is the fused model up to the raw per-level head outputs (:mod:`repyolo.export.ncnn_graph`),
written by :func:`repyolo.io.ncnn.write_ncnn`; decoding stays outside, in
:class:`repyolo.runtime.ncnn.NcnnBackend`, like the released YOLOv6-Lite NCNN files. So the files
take any input size (a multiple of the stride) and do not depend on the export size. Why not pnnx
(NCNN's converter, on PyPI): it needs a TorchScript trace first; a model traced with its decode
keeps the traced size in ``Reshape`` layers, so run at another size it silently returns the wrong
number of anchors (yolov6n traced at 320, run at 416: 2100 rows instead of 3549, no error); it
writes six side files beside its input (``.pnnx.param/.bin/.onnx``, two ``.py``); it has no INT8
path. This writer is exact (fp32 weights: the ncnn runtime equals PyTorch to float rounding),
takes about a second, and is checked on every family.

``.param`` has no slot for metadata, hence ``metadata.json`` (the keys of
:mod:`repyolo.runtime.metadata`, plus an ``ncnn`` section: input and output blob names, the output
layout, weight storage; and ``reg_max`` / ``use_dfl`` for the decoder).

When the ``ncnn`` package is installed the written pair is run once on a random input and compared
with PyTorch: a conversion that does not reproduce the model is an error, never a silent file.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from repyolo.errors import RepyoloError
from repyolo.export.ncnn_graph import INPUT_BLOB, RawOutputs, ncnn_graph
from repyolo.io.ncnn import write_ncnn
from repyolo.runtime.metadata import NCNN_METADATA_FILE
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)
CHECK_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}  # max |ncnn - torch| of scores and grid distances, relative


def ncnn_metadata(model, metadata: dict, outputs: list[str], storage: str) -> dict:
    """The metadata of :mod:`repyolo.runtime.metadata` for an NCNN folder (any size, one image per run)."""
    head = model.detect
    n_reg = 4 * (head.reg_max + 1) if head.use_dfl else 4
    return {**metadata, "batch": None, "dynamic": True, "half": storage == "fp16",
            "reg_max": int(head.reg_max), "use_dfl": bool(head.use_dfl),
            "input": {**metadata["input"], "name": INPUT_BLOB, "dtype": "float32", "layout": "CHW"},
            "outputs": (f"per level out0..out{len(outputs) - 1} (strides {metadata['strides']}): ({head.nc} + "
                        f"{n_reg}, H/s, W/s): sigmoid class scores, then "
                        + (f"DFL logits (4 sides x {head.reg_max + 1} bins)" if head.use_dfl else
                           "ltrb distances in grid units") + "; anchor points at cell centres; decoded by repyolo"),
            "ncnn": {"input": INPUT_BLOB, "outputs": outputs, "storage": storage}}


def check_against_torch(model, param: Path, bin_: Path, outputs: list[str], size: tuple[int, int],
                        storage: str) -> float:
    """Run the pair in the ncnn runtime (fp32 arithmetic) and PyTorch on one random input; returns the
    largest difference relative to each output's scale, raises when above :data:`CHECK_TOLERANCE`."""
    from repyolo.io.ncnn import NcnnNet

    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = [r[0].numpy() for r in RawOutputs(model)(x)]
    got = NcnnNet(param, bin_, num_threads=1)(x.numpy(), outputs)
    worst = 0.0
    for name, r in zip(outputs, ref):
        if got[name].shape != r.shape:
            raise RepyoloError(f"{param}: ncnn gives {name} of shape {got[name].shape}, PyTorch {r.shape}")
        worst = max(worst, float(np.abs(got[name] - r).max() / max(np.abs(r).max(), 1.0)))
    if worst > CHECK_TOLERANCE[storage]:
        raise RepyoloError(f"{param}: the written model does not reproduce PyTorch (max relative difference "
                           f"{worst:.3g} > {CHECK_TOLERANCE[storage]}); this is a bug of the exporter")
    return worst


def export_ncnn(model, out_dir: str | Path, metadata: dict, img_size: tuple[int, int], half: bool = False,
                check: bool = True) -> Path:
    """Write ``model`` (fused, eval, float32, CPU) to the folder ``out_dir``; returns the folder.

    Args:
        metadata: from :func:`repyolo.runtime.metadata.build_metadata` (``img_size`` is recorded as the
            size the model was meant for; the files take any multiple of the stride).
        half: store weights as fp16 (NCNN's usual storage: half the file; the runtime computes in fp32
            unless told otherwise) instead of fp32.
        check: compare the written pair with PyTorch when the ``ncnn`` package is installed.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RepyoloError(f"{out_dir}: exists and is not a folder")
    storage = "fp16" if half else "fp32"
    example = torch.zeros(1, 3, *img_size)
    graph, weights, outputs = ncnn_graph(model, example)
    name = str(model.cfg.get("name", "model")).replace("/", "_") or "model"
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        param, bin_ = write_ncnn(graph, weights, tmp / f"{name}.param", storage=storage)
        meta = ncnn_metadata(model, metadata, outputs, storage)
        (tmp / NCNN_METADATA_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        worst = None
        if check:
            try:
                import ncnn  # noqa: F401  (optional: only the check needs the runtime)
            except ImportError:
                LOGGER.info("ncnn is not installed: the written files were not run (pip install repyolo[ncnn])")
            else:
                worst = check_against_torch(model, param, bin_, outputs, img_size, storage)
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size_mb = (out_dir / f"{name}.bin").stat().st_size / 1e6
    LOGGER.info("NCNN: %s (%d layers, %s weights %.1f MB%s)", out_dir, len(graph.layers), storage, size_mb,
                "" if worst is None else f", ncnn vs PyTorch max relative difference {worst:.1e}")
    return out_dir
