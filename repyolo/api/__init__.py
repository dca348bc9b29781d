"""The Python API: one :class:`YOLO` object per model through its life cycle, and the functions
the commands of the ``repyolo`` CLI call (each command parses its arguments and calls one of these).

.. code-block:: python

    from repyolo import YOLO

    m = YOLO("yolov6n")
    m.train(data="data.yaml", epochs=50, img=640)
    metrics = m.val()
    results = m("bus.jpg")                   # or m.predict(...): a list of Result
    r = results[0]
    r.boxes, r.scores, r.class_ids, r.names  # original-image pixels
    onnx = m.export(format="onnx")
    YOLO(onnx).predict("bus.jpg")            # exported files predict, val and bench
"""
from repyolo.api.data import check_data, show_data
from repyolo.api.info import format_info, model_info
from repyolo.api.model import YOLO, Detector, run_training, score_predictions
from repyolo.api.weights import import_weights
from repyolo.engine.results import Result
from repyolo.utils.device import select_device

__all__ = ["YOLO", "Detector", "Result", "check_data", "format_info", "import_weights", "model_info", "run_training",
           "score_predictions", "select_device", "show_data"]
