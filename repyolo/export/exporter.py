"""``export_model``: one entry point from a checkpoint (or model) to a deployable file.

The model is always exported in its deploy form: a non-fused checkpoint is fused first
(RepVGG branches merged, BN folded) and the training-only head branches (anchor-aided
``*_ab``, DLD ``reg_preds_dist``) are dropped by ``fuse()``.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from repyolo.errors import RepyoloError
from repyolo.export.onnx import DEFAULT_OPSET, check_opset
from repyolo.runtime.metadata import build_metadata
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)
FORMATS = ("onnx", "openvino", "torchscript", "ncnn")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript", "openvino": "_openvino_model", "ncnn": "_ncnn_model"}


def deploy_model(weights_or_model) -> torch.nn.Module:
    """A fused, eval-mode, float32 CPU copy of a checkpoint path or a model (the input is not modified)."""
    if isinstance(weights_or_model, torch.nn.Module):
        model = copy.deepcopy(weights_or_model)
    else:
        from repyolo.io.checkpoint import load_model

        model = load_model(weights_or_model)
    if not hasattr(model, "fuse") or not hasattr(model, "stride"):
        raise RepyoloError(f"cannot export {type(model).__name__}: not a repyolo YOLOv6 model")
    model = model.float().cpu().eval()
    was_fused = getattr(model, "is_fused", False)
    model.fuse()
    if not was_fused:
        LOGGER.info("fused the model for deployment (re-parameterized blocks, BN folded, auxiliary branches dropped)")
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def input_size(img_size, stride: int) -> tuple[int, int]:
    """``(H, W)`` of an int or a pair, checked to be positive multiples of ``stride``."""
    h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
    if h <= 0 or w <= 0 or h % stride or w % stride:
        raise RepyoloError(f"--img {h}x{w}: height and width must be positive multiples of the model stride {stride}")
    return h, w


def default_output(weights_or_model, model: torch.nn.Module, fmt: str) -> Path:
    """``W.onnx`` / ``W.torchscript`` / ``W_openvino_model/`` / ``W_ncnn_model/`` beside the weights (cwd for
    a model object)."""
    if isinstance(weights_or_model, (str, Path)):
        base = Path(weights_or_model)
        return base.with_name(base.stem + SUFFIX[fmt])
    return Path.cwd() / (str(model.cfg.get("name", "model")) + SUFFIX[fmt])


def export_model(weights_or_model, format: str = "onnx", *, img_size: int | tuple[int, int] = 640,
                 batch: int = 1, dynamic: bool = False, half: bool = False, opset: int = DEFAULT_OPSET,
                 simplify: bool = True, nms: bool = False, max_det: int = 100, conf: float = 0.25,
                 iou: float = 0.45, multi_label: bool = False, output: str | Path | None = None) -> Path:
    """Export a checkpoint (path) or a YOLOv6 model to ``format``; returns the written path.

    INT8 files come from the quantization stage (:func:`repyolo.quant.export_int8`).

    Args:
        format: ``'onnx' | 'openvino' | 'torchscript' | 'ncnn'`` (NCNN: a folder with ``.param``, ``.bin`` and
            ``metadata.json``; the graph ends at the raw head outputs and takes any input size).
        img_size: input size, an int or ``(H, W)``, multiples of the model stride.
        batch: fixed batch size; ``dynamic=True`` makes batch, height and width free (ONNX, OpenVINO).
        half: fp16 (ONNX: for GPU providers; OpenVINO: fp16-compressed weights; TorchScript: CUDA only;
            NCNN: fp16 weight storage).
        opset: ONNX opset (13..20 with torch 2.13).
        simplify: run onnxslim on the ONNX graph.
        nms: end-to-end graph with class-aware NMS (ONNX, OpenVINO): outputs ``num_dets``,
            ``det_boxes``, ``det_scores``, ``det_classes`` with ``max_det`` rows per image,
            thresholds ``conf`` / ``iou``, ``multi_label`` as in the Python post-processing.
        output: file (ONNX, TorchScript) or folder (OpenVINO); default beside the weights.
    """
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise RepyoloError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if batch < 1:
        raise RepyoloError(f"--batch {batch}: must be >= 1")
    if fmt in ("onnx", "openvino"):
        check_opset(opset)
    if nms:
        if fmt in ("torchscript", "ncnn"):
            raise RepyoloError(f"--nms is available for onnx and openvino exports ({fmt} keeps raw outputs; "
                               "NMS runs in repyolo's post-processing)")
        if max_det < 1 or not 0.0 <= conf < 1.0 or not 0.0 < iou <= 1.0:
            raise RepyoloError(f"--nms needs max_det >= 1, 0 <= conf < 1, 0 < iou <= 1 "
                               f"(got {max_det}, {conf}, {iou})")
    model = deploy_model(weights_or_model)
    size = input_size(img_size, model.max_stride)
    nms_cfg = {"max_det": int(max_det), "conf": float(conf), "iou": float(iou),
               "multi_label": bool(multi_label)} if nms else None
    out = Path(output) if output else default_output(weights_or_model, model, fmt)
    if half and fmt == "onnx":
        LOGGER.warning("--half: the fp16 ONNX model is meant for GPU execution providers (CUDA, TensorRT); "
                       "onnxruntime's CPU provider runs fp16 slower than fp32 or not at all - "
                       "export without --half for CPU")
    meta = build_metadata(model, size, batch, dynamic, half, nms_cfg)
    if fmt == "onnx":
        from repyolo.export.onnx import export_onnx

        return export_onnx(model, out, meta, size, batch, dynamic, half, opset, simplify, nms_cfg)
    if fmt == "openvino":
        from repyolo.export.openvino import export_openvino

        return export_openvino(model, out, meta, size, batch, dynamic, half, opset, nms_cfg)
    if fmt == "ncnn":
        from repyolo.export.ncnn import export_ncnn

        if dynamic or batch != 1:
            LOGGER.info("NCNN: the graph takes any input size and runs one image per call; --dynamic / --batch "
                        "change nothing")
        return export_ncnn(model, out, meta, size, half)
    from repyolo.export.torchscript import export_torchscript

    if dynamic:
        LOGGER.info("TorchScript: the trace takes any batch and input size already; --dynamic changes nothing")
    return export_torchscript(model, out, meta, size, batch, half)
