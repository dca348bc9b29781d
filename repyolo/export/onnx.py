"""ONNX export of a fused YOLOv6 model.

Exporter choice (torch 2.13): ``torch.onnx.export`` defaults to the ``torch.export``-based
exporter (``dynamo=True``), which needs the ``onnxscript`` package (not a repyolo dependency)
and does not run ``autograd.Function.symbolic``. The TorchScript-based exporter
(``dynamo=False``) is still shipped (with a deprecation warning), emits custom ops through
``symbolic`` (our in-graph NMS) and, after onnxslim, gives a clean graph: Conv/Relu/... plus
the box decoding, anchors folded into constants for static shapes. We use it.

Graph: input ``images`` float32 ``(B, 3, H, W)`` RGB 0..1; output ``outputs`` ``(B, A, 4 + nc)``
(or the four end-to-end outputs with ``nms=True``, see :mod:`repyolo.export.nms_graph`).
Metadata (:mod:`repyolo.runtime.metadata`) is stored in ``metadata_props``.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

from repyolo.errors import RepyoloError
from repyolo.runtime.metadata import END2END_OUTPUTS, RAW_OUTPUT, to_strings
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)
MIN_OPSET = 13
DEFAULT_OPSET = 13


def _max_opset() -> int:
    """Newest opset the TorchScript-based exporter of this torch writes (20 in torch 2.13)."""
    try:
        from torch.onnx import _constants
    except ImportError:
        return 17
    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", getattr(_constants, "ONNX_MAX_OPSET", 17)))


def check_opset(opset: int) -> None:
    """Raise a one-line error unless ``MIN_OPSET <= opset <=`` the exporter's newest opset."""
    max_opset = _max_opset()
    if not MIN_OPSET <= int(opset) <= max_opset:
        raise RepyoloError(f"--opset {opset}: repyolo exports use opset {MIN_OPSET}..{max_opset} "
                           f"(torch {torch.__version__}'s TorchScript-based exporter)")


def _torch_to_onnx(module: torch.nn.Module, example: torch.Tensor, opset: int, output_names: list[str],
                   dynamic: bool):
    """Trace ``module`` on ``example`` into an in-memory ``onnx.ModelProto``."""
    import onnx

    dynamic_axes = None
    if dynamic:
        dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}}
        for name in output_names:
            dynamic_axes[name] = {0: "batch", 1: "anchors"} if name == RAW_OUTPUT else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # legacy-exporter deprecation and tracer notes: not the user's concern
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=["images"], output_names=output_names, dynamic_axes=dynamic_axes,
                          do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def simplify_onnx(proto, simplify: bool = True):
    """onnxslim the graph (constant folding, dead-node removal, fusions); fall back to the raw graph
    when onnxslim is missing or fails. Returns a ``ModelProto``."""
    if not simplify:
        return proto
    try:
        import onnxslim
    except ImportError:
        LOGGER.warning("onnxslim not installed: exporting the unsimplified graph")
        return proto
    try:
        slim = onnxslim.slim(proto)
    except Exception as exc:  # onnxslim is best effort; the raw graph is valid
        LOGGER.warning("onnxslim failed (%s: %s): exporting the unsimplified graph", type(exc).__name__, exc)
        return proto
    return slim if slim is not None else proto


def export_onnx(model: torch.nn.Module, path: str | Path, metadata: dict, img_size: tuple[int, int] = (640, 640),
                batch: int = 1, dynamic: bool = False, half: bool = False, opset: int = DEFAULT_OPSET,
                simplify: bool = True, nms: dict | None = None) -> Path:
    """Write ``model`` (fused, eval) to ``path`` as ONNX.

    Args:
        metadata: dict from :func:`repyolo.runtime.metadata.build_metadata`, stored in the file.
        img_size: ``(H, W)`` of the example input (fixed unless ``dynamic``).
        batch: fixed batch size (ignored when ``dynamic``: batch, height, width become symbolic).
        half: fp16 weights and input (for GPU execution providers).
        nms: ``{"max_det", "conf", "iou", "multi_label"}`` to build the end-to-end graph, or ``None``.
    Returns:
        ``path``.
    """
    import onnx

    check_opset(opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model
    output_names = [RAW_OUTPUT]
    if nms:
        from repyolo.export.nms_graph import End2End

        module = End2End(model, **nms).eval()
        output_names = list(END2END_OUTPUTS)
    dtype = torch.float16 if half else torch.float32
    module = module.to(dtype)  # the head builds its anchor grid in float32 and casts it (fp16 arange)
    example = torch.zeros(batch, 3, *img_size, dtype=dtype)
    try:
        proto = _torch_to_onnx(module, example, opset, output_names, dynamic)
    except torch.onnx.errors.OnnxExporterError as exc:
        raise RepyoloError(f"ONNX export failed at opset {opset}: {str(exc).splitlines()[0]}") from None
    proto = simplify_onnx(proto, simplify)
    proto.producer_name = "repyolo"
    del proto.metadata_props[:]
    for key, value in to_strings(metadata).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    LOGGER.info("ONNX: %s (opset %d, %s, %.1f MB)", path, opset,
                "dynamic batch/size" if dynamic else f"{batch}x3x{img_size[0]}x{img_size[1]}",
                path.stat().st_size / 1e6)
    return path
