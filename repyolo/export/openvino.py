"""OpenVINO IR export: ``NAME_openvino_model/NAME.xml`` + ``.bin`` + ``metadata.yaml``.

The model goes through ONNX (the same graph as :mod:`repyolo.export.onnx`, in-graph NMS
included) and ``openvino.convert_model``; metadata is kept twice: in the IR's ``rt_info``
(section ``repyolo``, same string map as the ONNX ``metadata_props``) and, for people and
tools that do not parse the IR, in ``metadata.yaml`` beside it.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from repyolo.errors import RepyoloError
from repyolo.export.onnx import DEFAULT_OPSET, export_onnx
from repyolo.runtime.metadata import OPENVINO_METADATA_FILE as METADATA_FILE
from repyolo.runtime.metadata import OPENVINO_RT_SECTION as RT_SECTION
from repyolo.runtime.metadata import to_strings
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


def export_openvino(model, out_dir: str | Path, metadata: dict, img_size: tuple[int, int] = (640, 640),
                    batch: int = 1, dynamic: bool = False, half: bool = False, opset: int = DEFAULT_OPSET,
                    nms: dict | None = None) -> Path:
    """Write ``model`` (fused, eval) as OpenVINO IR into the folder ``out_dir``; returns the folder.

    ``half`` stores fp16-compressed weights (the CPU plugin still computes in fp32 unless told
    otherwise); without it weights stay fp32, bit-compatible with the PyTorch model.
    """
    out_dir = Path(out_dir)
    metadata = {**metadata, "input": {**metadata["input"], "dtype": "float32"}}  # fp16 = weights only
    with tempfile.TemporaryDirectory(prefix="repyolo_ov_") as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", metadata, img_size, batch, dynamic,
                                half=False, opset=opset, simplify=True, nms=nms)
        return convert_onnx(onnx_path, out_dir, metadata, half)


def convert_onnx(onnx_path: str | Path, out_dir: str | Path, metadata: dict, half: bool = False) -> Path:
    """Convert a repyolo ONNX file (FP32, or an INT8 QDQ model from ``repyolo quantize``) into an IR
    folder ``out_dir`` carrying ``metadata``; returns the folder."""
    try:
        import openvino as ov
    except ImportError:
        raise RepyoloError("OpenVINO export needs the `openvino` package (pip install openvino)") from None
    out_dir = Path(out_dir)
    if out_dir.suffix.lower() == ".xml":  # a file name was given: use its folder
        out_dir, stem = out_dir.parent, out_dir.stem
    else:
        stem = out_dir.name.removesuffix("_openvino_model") or "model"
    out_dir.mkdir(parents=True, exist_ok=True)
    ov_model = ov.convert_model(str(onnx_path))
    for key, value in to_strings(metadata).items():
        ov_model.set_rt_info(value, [RT_SECTION, key])
    xml = out_dir / f"{stem}.xml"
    ov.save_model(ov_model, str(xml), compress_to_fp16=bool(half))
    (out_dir / METADATA_FILE).write_text(
        yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, default_flow_style=None))
    LOGGER.info("OpenVINO: %s (%s weights)", xml, "fp16" if half else "fp32")
    return out_dir
