"""repyolo: YOLOv6 object detection (re-parameterizable networks, training, evaluation, deployment)."""
__version__ = "0.1.0"

from repyolo.nn.model import YOLOv6, build_model  # noqa: E402


def load_model(weights, device="cpu"):
    """Load the model stored in a repyolo checkpoint (or an official YOLOv6 checkpoint), eval mode."""
    from repyolo.engine.checkpoint import load_model as _load

    return _load(weights, device=device)


__all__ = ["YOLOv6", "build_model", "load_model", "__version__"]
