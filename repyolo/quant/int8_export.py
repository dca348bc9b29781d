"""``repyolo export --int8``: an INT8 ONNX file or OpenVINO IR in one call (PTQ with defaults)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from repyolo.errors import RepyoloError
from repyolo.export.openvino import convert_onnx
from repyolo.quant.ptq import quantize_ptq
from repyolo.runtime.metadata import from_strings


def export_int8(weights_or_model, format: str = "onnx", data=None, img_size: int | tuple[int, int] = 640,
                output: str | Path | None = None, calib: int = 100, batch: int = 1, dynamic: bool = False,
                half: bool = False, nms: bool = False) -> Path:
    """INT8 post-training quantization (static QDQ, calibrated on ``calib`` train images of the
    ``data`` YAML) through :func:`repyolo.quant.ptq.quantize_ptq`: an INT8 ``.onnx``, or an OpenVINO
    IR converted from it. Square ``img_size``, batch 1, no ``nms`` / ``dynamic`` / ``half``; for
    partial quantization and the calibrator choice use ``repyolo quantize``. Returns the written path."""
    fmt = str(format).lower()
    if fmt not in ("onnx", "openvino"):
        # NCNN INT8 was tried: per-tensor max calibration of the released YOLOv6-Lite-S (all convs but the
        # prediction ones INT8) leaves coco128 val mAP 0.307 -> 0.000 in ncnn (0.07 with the same scheme
        # simulated in PyTorch): not offered until calibration does better
        raise RepyoloError(f"--int8 is available for onnx and openvino exports, not {fmt}")
    if data is None:
        raise RepyoloError("--int8 needs --data DATA: calibration images for post-training quantization")
    if dynamic or half or nms or batch != 1:
        raise RepyoloError("--int8 exports a static batch-1 model: drop --dynamic, --half, --nms and --batch")
    size = img_size if isinstance(img_size, int) else tuple(img_size)
    if not isinstance(size, int):
        if size[0] != size[1]:
            raise RepyoloError(f"--int8 needs a square --img, got {size[0]}x{size[1]}")
        size = int(size[0])
    if fmt == "onnx":
        if output is None and isinstance(weights_or_model, (str, Path)):
            output = Path(weights_or_model).with_name(Path(weights_or_model).stem + "_int8.onnx")
        return Path(quantize_ptq(weights_or_model, data, calib=calib, img_size=size, output=output).path)
    if output is None:
        if isinstance(weights_or_model, (str, Path)):
            output = Path(weights_or_model).with_name(Path(weights_or_model).stem + "_int8_openvino_model")
        else:
            output = Path.cwd() / "model_int8_openvino_model"
    with tempfile.TemporaryDirectory(prefix="repyolo_int8_") as tmp:
        q = Path(quantize_ptq(weights_or_model, data, calib=calib, img_size=size,
                              output=Path(tmp) / "model_int8.onnx").path)
        props = {p.key: p.value for p in onnx.load(str(q), load_external_data=False).metadata_props}
        return convert_onnx(q, output, from_strings(props, q))
