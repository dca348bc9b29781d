"""The Python API: detection and evaluation in a few lines.

.. code-block:: python

    from repyolo.api import Detector

    det = Detector("runs/train/exp/weights/best.pt", img_size=640, conf=0.25)
    results = det("bus.jpg")                 # or an RGB array, a folder, a video, a list...
    r = results[0]
    r.boxes, r.scores, r.class_ids, r.names  # original-image pixels
    canvas = r.plot()                        # RGB array with boxes drawn
    metrics = det.val("data.yaml")           # COCO mAP dict (see repyolo.engine.evaluator)

``YOLO`` is the same class under another name.
"""
from __future__ import annotations

from repyolo.engine.predictor import Predictor
from repyolo.engine.results import Result
from repyolo.utils.device import select_device


class Detector:
    """A loaded detector.

    Args:
        weights: ``.pt`` checkpoint, ONNX file, OpenVINO folder, a runtime Backend or an ``nn.Module``.
        device: ``'cpu'``, ``'0'``, ``'cuda:N'``.
        img_size: inference size (long side; gray padding to a multiple of the stride; boxes are mapped back
            exactly).
        conf, iou: confidence and NMS IoU thresholds; max_det: detections per image.
        classes: keep only these class ids; agnostic: class-agnostic NMS.
        batch_size: images per forward pass when given a list.
    """

    def __init__(self, weights, device="cpu", img_size: int = 640, conf: float = 0.25, iou: float = 0.45,
                 max_det: int = 300, classes=None, agnostic: bool = False, batch_size: int = 1, half: bool = False):
        self.weights = weights
        self.predictor = Predictor(weights, device=device, img_size=img_size, conf_thres=conf, iou_thres=iou,
                                   max_det=max_det, classes=classes, agnostic=agnostic, batch_size=batch_size,
                                   half=half)

    @property
    def names(self) -> list[str]:
        return self.predictor.names

    @property
    def backend(self):
        return self.predictor.backend

    def __call__(self, source, vid_stride: int = 1) -> list[Result]:
        """Detect in ``source``: an RGB uint8 array, a path (image, folder, glob, video, list file),
        or a list of them. Returns one :class:`Result` per image / frame, in order. Unreadable
        files are skipped with a warning; DataError when nothing could be read."""
        return self.predictor(source, vid_stride=vid_stride)

    predict = __call__

    def val(self, data, split: str = "val", img_size: int | None = None, batch_size: int = 32, **kwargs) -> dict:
        """COCO evaluation on ``split`` of the data YAML ``data`` with the YOLOv6 protocol
        (conf 0.03, IoU 0.65, rectangular batches); ``kwargs`` go to
        :class:`~repyolo.engine.evaluator.Evaluator`. Returns its result dict."""
        from repyolo.engine.evaluator import Evaluator

        size = img_size or self.predictor.img_size[0]
        ev = Evaluator(data=data, split=split, img_size=size, batch_size=batch_size,
                       device=self.predictor.device, **kwargs)
        return ev(self.predictor.backend)


YOLO = Detector

__all__ = ["Detector", "YOLO", "Result", "select_device"]
