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


def quantize_partial(weights, data, **kwargs):
    """See :func:`repyolo.quant.partial.quantize_partial`."""
    from repyolo.quant.partial import quantize_partial as _partial

    return _partial(weights, data, **kwargs)


def sensitivity_analysis(weights, data, **kwargs):
    """See :func:`repyolo.quant.sensitivity.sensitivity_analysis`."""
    from repyolo.quant.sensitivity import sensitivity_analysis as _sens

    return _sens(weights, data, **kwargs)


def quantize_qat(weights, data, **kwargs):
    """See :func:`repyolo.quant.qat.quantize_qat`."""
    from repyolo.quant.qat import quantize_qat as _qat

    return _qat(weights, data, **kwargs)


def load_sensitivity_report(path):
    """A saved :class:`~repyolo.quant.sensitivity.SensitivityReport`."""
    from repyolo.quant.sensitivity import SensitivityReport

    return SensitivityReport.load(path)


__all__ = ["quantize_ptq", "quantize_partial", "sensitivity_analysis", "quantize_qat", "load_sensitivity_report"]
