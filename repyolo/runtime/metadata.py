"""Self-describing deployed models: the metadata every exported file carries.

An exported model (ONNX ``metadata_props``, OpenVINO ``rt_info`` + ``metadata.yaml``,
TorchScript ``_extra_files``, NCNN ``metadata.json`` beside the pair) stores one flat dict of
string keys; values are JSON text (strings are stored as they are). Keys::

    format          "repyolo"  (marks a file written by this exporter)
    repyolo_version "0.1.0"
    task            "detect"
    model           model config name, e.g. "yolov6n"
    names           ["person", ...]                    class names, index = class id
    nc              80
    stride          32                                 largest stride: H, W must be multiples
    strides         [8, 16, 32]
    img_size        [640, 640]                         (H, W) the file was exported for
    batch           1 | null                           fixed batch, or null when dynamic
    dynamic         false                              true: any batch, any H, W multiple of stride
    half            false                              fp16 weights and input
    input           {"name": "images", "layout": "NCHW", "dtype": "float32", "color": "RGB", "range": [0, 1]}
    letterbox       {"pad_value": 114, "center": true}  how images were resized for training/eval
    output_layout   "raw" | "end2end"
    outputs         one-line description of the outputs
    nms             {"conf": .., "iou": .., "max_det": .., "multi_label": ..} (end2end only) | null
"""
from __future__ import annotations

import json
from pathlib import Path

from repyolo.errors import CheckpointError

FORMAT = "repyolo"
RAW_OUTPUT = "outputs"
END2END_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")
LETTERBOX = {"pad_value": 114, "center": True}
OPENVINO_RT_SECTION = "repyolo"      # OpenVINO rt_info section holding the metadata
OPENVINO_METADATA_FILE = "metadata.yaml"  # copy beside the IR (older readers)
TORCHSCRIPT_EXTRA_FILE = "metadata.json"  # TorchScript _extra_files entry
NCNN_METADATA_FILE = "metadata.json"  # beside the .param / .bin (a .param has no metadata slot)
_STRING_KEYS = {"format", "repyolo_version", "task", "model", "output_layout", "outputs"}


def build_metadata(model, img_size: tuple[int, int], batch: int | None, dynamic: bool, half: bool,
                   nms: dict | None = None) -> dict:
    """Metadata dict (Python values) for an exported ``model`` (a fused :class:`~repyolo.nn.model.YOLOv6`)."""
    from repyolo.version import __version__

    names = [str(n) for n in getattr(model, "names", [])] or [str(i) for i in range(model.nc)]
    strides = [int(s) for s in model.stride.tolist()]
    if nms:
        outputs = ("num_dets (B,1) int32; det_boxes (B,max_det,4) float x1 y1 x2 y2 input pixels; "
                   "det_scores (B,max_det) float; det_classes (B,max_det) int32; rows >= num_dets are "
                   "padding (score 0, box 0, class -1)")
    else:
        outputs = "outputs (B,A,4+nc): x1 y1 x2 y2 in input pixels + class scores 0..1, before NMS"
    return {
        "format": FORMAT,
        "repyolo_version": __version__,
        "task": "detect",
        "model": str(model.cfg.get("name", "yolov6")),
        "names": names,
        "nc": len(names),
        "stride": max(strides),
        "strides": strides,
        "img_size": [int(img_size[0]), int(img_size[1])],
        "batch": None if dynamic else int(batch),
        "dynamic": bool(dynamic),
        "half": bool(half),
        "input": {"name": "images", "layout": "NCHW", "dtype": "float16" if half else "float32",
                  "color": "RGB", "range": [0, 1]},
        "letterbox": dict(LETTERBOX),
        "output_layout": "end2end" if nms else "raw",
        "outputs": outputs,
        "nms": dict(nms) if nms else None,
    }


def to_strings(meta: dict) -> dict[str, str]:
    """Python values -> the string map stored in a model file."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def from_strings(props: dict[str, str], source: str | Path) -> dict:
    """The string map read from a model file -> Python values, checked.

    Raises :class:`CheckpointError` naming ``source`` when the file was not written by repyolo.
    """
    if not props or props.get("format") != FORMAT:
        raise CheckpointError(f"{source}: not a repyolo export (no 'format: repyolo' metadata); "
                              "export it with `repyolo export`")
    meta = {}
    for key, text in props.items():
        if key in _STRING_KEYS:
            meta[key] = str(text)
            continue
        try:
            meta[key] = json.loads(text)
        except (TypeError, ValueError):
            meta[key] = text
    names = meta.get("names")
    if not isinstance(names, list) or not names:
        raise CheckpointError(f"{source}: repyolo metadata without class names")
    meta["names"] = [str(n) for n in names]
    meta["stride"] = int(meta.get("stride", 32))
    return meta
