"""Helpers of the quantization tests: a small YOLOv6 with non-trivial outputs, onnxruntime runs."""
from __future__ import annotations

import numpy as np
import torch
from helpers import randomize_bn, save_model  # noqa: F401 - save_model is part of this module's helpers

from repyolo.nn.model import build_model

IMG = 64
NAMES = ["circle", "rectangle", "triangle", "star", "ring"]


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Seeded random BN statistics and head weights (a fresh head predicts constants)."""
    randomize_bn(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    for conv in model.detect.cls_preds:
        conv.weight.normal_(0.0, 0.1, generator=g)
        conv.bias.normal_(-2.0, 1.0, generator=g)
    for conv in model.detect.reg_preds:
        conv.weight.normal_(0.0, 0.05, generator=g)
        conv.bias.uniform_(0.5, 3.0, generator=g)
    return model.eval()


def tiny_model(seed: int = 0) -> torch.nn.Module:
    """yolov6n at width 0.125 (channels 8..64), 5 classes, perturbed."""
    model = perturb(build_model("yolov6n", num_classes=len(NAMES), width_multiple=0.125), seed)
    model.names = list(NAMES)
    return model



def run_onnx(model_or_path, x: np.ndarray) -> np.ndarray:
    """One onnxruntime run (1 thread) of an ONNX path or ModelProto on float32 ``x``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    src = str(model_or_path) if not hasattr(model_or_path, "SerializeToString") else model_or_path.SerializeToString()
    sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
