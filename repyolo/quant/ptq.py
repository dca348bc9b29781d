"""Post-training quantization (PTQ) of a fused YOLOv6 model to an INT8 QDQ ONNX file.

Pipeline: export the fused FP32 model to a static-shape ONNX file -> calibrate the activation
ranges once on letterboxed images (:mod:`repyolo.quant.calibrate`) -> insert
QuantizeLinear / DequantizeLinear pairs with onnxruntime's QDQ quantizer: INT8 weights
(per output channel, symmetric), per-tensor activations (UINT8 asymmetric by default: the
U8S8 kernels are the fast path of onnxruntime on x86; INT8 activations ran ~3x slower on the
AVX512-VNNI machine of the benchmark, per-tensor weights lost 1.2 mAP points).

The box-decoding tail of the head (level concat, score sigmoid, distance -> box) always stays
FP32: boxes in pixels and scores in 0..1 share one output tensor, and a single 8-bit scale
for both would wipe out the scores. The head's 1x1 prediction convs can be kept FP32 too
(``quantize_preds=False``).

The result is a standard QDQ ONNX model: onnxruntime fuses it into QLinearConv kernels,
OpenVINO reads it as an INT8 model. It keeps the FP32 export's metadata (class names, stride,
input size...) plus a ``quantization`` entry, so ``repyolo val --weights model_int8.onnx``
works through the ONNX backend.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from repyolo.errors import RepyoloError
from repyolo.quant import graph as G
from repyolo.quant.partial import choose_skipped
from repyolo.quant.qdq import QuantSettings, default_output, prepare, to_openvino
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


@dataclass
class PTQResult:
    """What :func:`quantize_ptq` produced: ``path`` (INT8 ONNX), ``fp32_convs`` (convs kept FP32),
    ``skipped`` (sensitive convs skipped by partial quantization), ``search`` (mAP-budget search
    steps, if any), ``fp32_path`` (the FP32 ONNX it was built from, when kept), ``openvino``
    (the OpenVINO IR folder, when written)."""

    path: Path
    fp32_convs: list[str]
    skipped: list[str] = field(default_factory=list)
    search: list[dict] = field(default_factory=list)
    fp32_path: Path | None = None
    openvino: Path | None = None


def quantize_ptq(weights, data, *, calib: int = 100, calibrator: str = "minmax", img_size: int = 640,
                 output: str | Path | None = None, exclude=(), per_channel: bool = True,
                 activation_type: str = "uint8", quantize_preds: bool = True, calib_split: str = "train",
                 skip_sensitive: int = 0, map_budget: float | None = None, rank_by: str = "mse",
                 sensitivity: str | Path | None = None, eval_images: int = 100, keep_fp32: bool = False,
                 openvino: bool = False, threads: int | None = None, seed: int = 0) -> PTQResult:
    """Quantize ``weights`` to an INT8 QDQ ONNX model (full or partial PTQ).

    Args:
        weights: checkpoint path, model, or FP32 repyolo ``.onnx``.
        data: data YAML (calibration images from ``calib_split``, mAP search on ``val``).
        calib: calibration images; calibrator: ``'minmax' | 'percentile' | 'entropy'``.
        img_size: static input size of the export.
        output: INT8 ``.onnx`` path (default ``W_int8.onnx`` beside the weights).
        exclude: node names to keep in FP32 (besides the decoding tail).
        per_channel, activation_type, quantize_preds: see :class:`QuantSettings`.
        skip_sensitive: keep the ``k`` most sensitive convs in FP32 (partial quantization).
        map_budget: keep the fewest most-sensitive convs in FP32 whose mixed model loses at most
            this much mAP@0.5:0.95 (a fraction, e.g. ``0.01``) on ``eval_images`` val images.
        rank_by: sensitivity metric that orders the convs (``'mse' | 'snr' | 'cosine' | 'map'``).
        sensitivity: a saved sensitivity JSON report to take the ranking from (else computed).
        keep_fp32: also keep the FP32 ONNX export beside the output (``*_fp32.onnx``).
        openvino: also write an OpenVINO IR folder of the INT8 model (:func:`to_openvino`).
    """
    settings = QuantSettings(calibrator=calibrator, calib=calib, calib_split=calib_split,
                             activation_type=activation_type, per_channel=per_channel, quantize_preds=quantize_preds)
    out = Path(output) if output else default_output(weights)
    if out.suffix.lower() != ".onnx":
        raise RepyoloError(f"--output {out}: the INT8 model is an .onnx file")
    with tempfile.TemporaryDirectory(prefix="repyolo_quant_") as tmp:
        ctx = prepare(weights, data, settings, img_size=img_size, workdir=tmp, seed=seed)
        unknown = sorted(set(exclude) - {n.name for n in ctx.fp.proto.graph.node})
        if unknown:
            raise RepyoloError(f"--exclude: no node named {', '.join(unknown[:5])} in the model "
                               f"(conv nodes look like {ctx.fp.convs[0]!r}; see `repyolo quantize sensitivity`)")
        skipped, search = [], []
        if skip_sensitive or map_budget is not None:
            skipped, search = choose_skipped(ctx, data, skip_sensitive=skip_sensitive, map_budget=map_budget,
                                             rank_by=rank_by, report=sensitivity, eval_images=eval_images,
                                             threads=threads, seed=seed, exclude=exclude)
        proto = ctx.build(exclude=list(exclude) + list(skipped))
        method = "partial-ptq" if skipped else "ptq"
        path = ctx.save(proto, out, method=method, skipped=list(skipped), excluded=list(exclude))
        fp32_path = None
        if keep_fp32:
            import shutil

            fp32_path = out.with_name(out.stem.removesuffix("_int8") + "_fp32.onnx")
            shutil.copyfile(ctx.fp.path, fp32_path)
        LOGGER.info("INT8 model: %s (%d convs INT8, %d FP32; %.1f MB)", path, len(G.quantized_convs(proto)),
                    len(G.float_convs(proto)), path.stat().st_size / 1e6)
        ov_dir = to_openvino(path) if openvino else None
        return PTQResult(path=path, fp32_convs=G.float_convs(proto), skipped=list(skipped), search=search,
                         fp32_path=fp32_path, openvino=ov_dir)


__all__ = ["PTQResult", "quantize_ptq"]
