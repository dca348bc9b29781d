"""repyolo: YOLOv6 object detection (re-parameterizable networks, training, evaluation, deployment).

Layers, lowest first. A module may import from its own layer and the layers below it, never
from a layer above (``tests/test_layers.py`` enforces this on every import statement, including
imports inside functions)::

    version errors utils cfg
    ops
    nn
    data
    assign
    loss
    io
    runtime
    engine
    export
    quant
    api
    commands cli

``ops`` box and NMS maths; ``nn`` the networks; ``data`` data sets and media; ``assign`` label
assignment; ``loss`` losses; ``io`` checkpoints and foreign weight files (official YOLOv6, NCNN);
``runtime`` one Backend over PyTorch / ONNX Runtime / OpenVINO / TorchScript / NCNN; ``engine`` training,
evaluation and prediction; ``export`` deployment files; ``quant`` INT8; ``api`` the Python API the
``commands`` of the ``cli`` are a thin shell over.
"""
from repyolo.version import __version__

__all__ = ["YOLO", "YOLOv6", "build_model", "load_model", "__version__"]


def __getattr__(name: str):
    """``repyolo.YOLO`` (the life-cycle API) / ``repyolo.build_model`` / ``repyolo.load_model`` /
    ``repyolo.YOLOv6`` (the network), imported on first use, so that ``import repyolo.ops`` stays
    light and the package root depends on no layer."""
    if name == "YOLO":
        from repyolo.api.model import YOLO

        return YOLO
    if name in ("YOLOv6", "build_model"):
        from repyolo.nn import model

        return getattr(model, name)
    if name == "load_model":
        from repyolo.io.checkpoint import load_model

        return load_model
    raise AttributeError(f"module 'repyolo' has no attribute {name!r}")
