"""INT8 quantization of YOLOv6 models for CPU deployment (QDQ ONNX: onnxruntime, OpenVINO).

* :func:`quantize_ptq` - post-training quantization with calibration (MinMax / Percentile /
  Entropy), full or partial (``skip_sensitive=k`` / ``map_budget=0.01``);
* :func:`sensitivity_analysis` - per-layer sensitivity (mAP drop, MSE, SNR, cosine), one conv
  quantized at a time;
* :func:`quantize_qat` - quantization-aware fine-tuning of the fused model with channel-wise
  distillation from its FP32 self.

Each writes a self-describing ONNX file that ``repyolo val`` / ``load_backend`` read like any export.
"""
from __future__ import annotations


def quantize_ptq(weights, data, **kwargs):
    """See :func:`repyolo.quant.ptq.quantize_ptq`."""
    from repyolo.quant.ptq import quantize_ptq as _ptq

    return _ptq(weights, data, **kwargs)


def quantize_partial(weights, data, *, skip_sensitive: int = 0, map_budget: float | None = None, **kwargs):
    """:func:`quantize_ptq` keeping the ``skip_sensitive`` most sensitive convs in FP32, or the fewest
    that keep the mAP drop within ``map_budget`` (see :mod:`repyolo.quant.partial`)."""
    from repyolo.errors import RepyoloError

    if not skip_sensitive and map_budget is None:
        raise RepyoloError("partial quantization needs skip_sensitive > 0 or a map_budget")
    return quantize_ptq(weights, data, skip_sensitive=skip_sensitive, map_budget=map_budget, **kwargs)


def sensitivity_analysis(weights, data, **kwargs):
    """See :func:`repyolo.quant.sensitivity.sensitivity_analysis`."""
    from repyolo.quant.sensitivity import sensitivity_analysis as _sens

    return _sens(weights, data, **kwargs)


def quantize_qat(weights, data, **kwargs):
    """See :func:`repyolo.quant.qat.quantize_qat`."""
    from repyolo.quant.qat import quantize_qat as _qat

    return _qat(weights, data, **kwargs)


def export_int8(weights, format="onnx", **kwargs):
    """See :func:`repyolo.quant.int8_export.export_int8`."""
    from repyolo.quant.int8_export import export_int8 as _int8

    return _int8(weights, format, **kwargs)


def load_sensitivity_report(path):
    """A saved :class:`~repyolo.quant.sensitivity.SensitivityReport`."""
    from repyolo.quant.sensitivity import SensitivityReport

    return SensitivityReport.load(path)


__all__ = ["quantize_ptq", "quantize_partial", "sensitivity_analysis", "quantize_qat", "load_sensitivity_report",
           "export_int8"]
