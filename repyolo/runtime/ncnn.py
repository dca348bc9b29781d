"""NCNN backend: folders written by ``repyolo export --format ncnn``, and the released YOLOv6-Lite files.

The graphs end at the raw per-level head outputs (sigmoid class scores + box regression); this
backend runs them with the ``ncnn`` Python package (one image per call, float32 arithmetic by
default) and decodes the levels into the model contract ``(B, A, 4 + nc)``
(:func:`repyolo.ops.boxes.decode_levels`). Any multiple of the largest stride works as input size.

Where the description comes from:

- ``metadata.json`` beside the ``.param`` (written by the exporter): names, strides, DFL, blob names;
- no ``metadata.json``: a released YOLOv6-Lite graph is recognized by its layers
  (:func:`repyolo.io.ncnn_lite.map_lite_graph`): 80 COCO classes, strides 8 / 16 / 32 / 64,
  distances without DFL, input ``in0``, outputs ``out0`` .. ``out3``. Anything else is refused.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from repyolo.data.coco import COCO_NAMES
from repyolo.errors import CheckpointError, RepyoloError
from repyolo.io.ncnn import NcnnFormatError, NcnnNet, read_param
from repyolo.io.ncnn_lite import map_lite_graph
from repyolo.ops.boxes import decode_levels
from repyolo.runtime.base import FileBackend, resolve_pair
from repyolo.runtime.metadata import FORMAT, LETTERBOX, NCNN_METADATA_FILE, from_strings, to_strings
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)
LITE_STRIDES = [8, 16, 32, 64]


def resolve_param(path: str | Path) -> Path:
    """A ``.param`` file, or a folder holding exactly one -> the ``.param`` path (its ``.bin`` must exist)."""
    return resolve_pair(path, ".param", "NCNN")


def lite_metadata(param: Path) -> dict:
    """Metadata for a released YOLOv6-Lite graph (no ``metadata.json``), or an error naming the file."""
    graph = read_param(param)
    try:
        mapping = map_lite_graph(graph)
    except NcnnFormatError as exc:
        raise CheckpointError(f"{param}: no {NCNN_METADATA_FILE} beside it and not a released YOLOv6-Lite graph "
                              f"({exc}); export models with `repyolo export --format ncnn`") from None
    cls_conv = next(c.layer for c in mapping.convs if c.conv == "detect.cls_preds.0")
    nc = int(graph.layer(cls_conv).params[0])
    names = list(COCO_NAMES) if nc == len(COCO_NAMES) else [f"class{i}" for i in range(nc)]
    return {"format": FORMAT, "task": "detect", "model": f"yolov6-lite ({param.name})", "names": names, "nc": nc,
            "stride": max(LITE_STRIDES), "strides": LITE_STRIDES, "img_size": [320, 320], "batch": None,
            "dynamic": True, "half": False, "letterbox": dict(LETTERBOX), "output_layout": "raw",
            "reg_max": 0, "use_dfl": False, "ncnn": {"input": mapping.input, "outputs": mapping.outputs}}


def read_metadata(param: Path) -> dict:
    """``metadata.json`` beside ``param`` (checked like every export's metadata), else the Lite description."""
    path = param.parent / NCNN_METADATA_FILE
    if not path.is_file():
        return lite_metadata(param)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable metadata ({str(exc).splitlines()[0][:150]})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: metadata must be a JSON object")
    meta = from_strings(to_strings(raw), path)
    ncnn = meta.get("ncnn")
    if not isinstance(ncnn, dict) or not ncnn.get("outputs") or len(ncnn["outputs"]) != len(meta.get("strides", [])):
        raise CheckpointError(f"{path}: metadata without the NCNN input / output blobs of every level")
    return meta


class NcnnBackend(FileBackend):
    """An NCNN ``.param`` / ``.bin`` pair (or its folder) run by the ``ncnn`` package.

    Args:
        path: ``NAME_ncnn_model/``, its ``.param``, or a released YOLOv6-Lite ``.param``.
        device: ``'cpu'`` only (the Python package has no GPU path here).
        threads: ncnn threads (``None``: torch's intra-op thread count, i.e. ``OMP_NUM_THREADS`` when set;
            ncnn's OpenMP threads spin-wait, and on a loaded machine more threads than free cores make
            it 25x slower, measured).
        fp16: let ncnn store and compute in fp16 / bf16 where the CPU supports it (faster, scores
            change in the 3rd digit); default float32, which matches PyTorch.
    ``__call__(x (B, 3, H, W))`` -> ``(B, A, 4 + nc)`` float32 tensor (one ncnn run per image).
    """

    kind = "ncnn"

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", threads: int | None = None,
                 fp16: bool = False, **kwargs):
        self._check_options(kwargs)
        if str(device) not in ("cpu", "cpu:0"):
            raise RepyoloError(f"{path}: the ncnn backend runs on the CPU only (got device {device})")
        self.path = resolve_param(path)
        self.source = str(self.path)
        self.metadata = read_metadata(self.path)
        self.names = self.metadata["names"]
        self.strides = [int(s) for s in self.metadata["strides"]]
        self.stride = max(self.strides)
        self.use_dfl = bool(self.metadata.get("use_dfl", False))
        self.input_name = self.metadata["ncnn"].get("input", "in0")
        self.output_names = list(self.metadata["ncnn"]["outputs"])
        self.batch = None
        self.img_size = None  # the graph holds no input size
        self.net = NcnnNet(self.path, num_threads=threads or torch.get_num_threads(), fp32=not fp16)
        missing = [b for b in (self.input_name, *self.output_names) if b not in self.net.graph.blobs]
        if missing:
            raise CheckpointError(f"{self.path}: blobs {missing} of {NCNN_METADATA_FILE} are not in the graph")
        LOGGER.debug("%s: ncnn, %d classes, strides %s, DFL %s", self.path, len(self.names), self.strides,
                     self.use_dfl)

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        preds = []
        for image in x:
            out = self.net({self.input_name: image}, self.output_names)
            levels = [torch.from_numpy(out[name])[None] for name in self.output_names]
            preds.append(decode_levels(levels, len(self.names), self.strides, self.use_dfl)[0].numpy())
        return [np.stack(preds)]
