"""Export to deployment runtimes (ONNX, OpenVINO, TorchScript, NCNN) and one Backend interface over them.

``export_model(weights_or_model, format, **opts) -> Path`` writes a self-describing file;
``repyolo.runtime.load_backend(path)`` runs it.
"""
from __future__ import annotations


def export_model(weights_or_model, format: str = "onnx", **opts):
    """See :func:`repyolo.export.exporter.export_model` (imported lazily: onnx is heavy)."""
    from repyolo.export.exporter import export_model as _export

    return _export(weights_or_model, format, **opts)


__all__ = ["export_model"]
