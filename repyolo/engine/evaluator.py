"""COCO evaluation of a detector (a weights file, a runtime Backend or a model in memory).

:class:`Evaluator` runs the YOLOv6 evaluation protocol over a :class:`DetectionDataset`:
rectangular batches (images sorted by aspect ratio, one letterboxed shape per batch, gray 114
padding), confidence 0.03, multi-label class-aware NMS at IoU 0.65, 300 detections per image;
boxes are mapped back to original pixels and scored with COCOeval (faster-coco-eval).
:func:`scores_from_predictions` scores a COCO results file without a model.

Both return the JSON contract of ``repyolo val``::

    {"map", "map50", "map75", "map_small", "map_medium", "map_large",     # fractions 0..1
     "per_class": {name: ap},                                              # NaN (-> null) without GT
     "precision", "recall", "f1",                                          # at conf_thres_pr
     "speed_ms": {"preprocess", "inference", "nms"},                       # per image
     "classes": {name: {"images", "instances", "ap50", "ap", "precision", "recall"}},
     "n_images", "n_instances", "conf_thres_pr"}
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from repyolo.engine.metrics import (
    category_names,
    category_order,
    check_detections,
    coco_map,
    nan_to_none,
    normalize_gt,
    threshold_stats,
)
from repyolo.errors import DataError
from repyolo.ops.image import to_model_input
from repyolo.ops.postprocess import filter_detections, non_max_suppression, scale_boxes
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

# YOLOv6 evaluation defaults
EVAL_CONF = 0.03
EVAL_IOU = 0.65
EVAL_MAX_DET = 300
EVAL_PAD = 0.5


def summarize(coco_gt: dict, detections: list[dict], names: list[str] | None = None, conf_thres_pr: float = 0.25,
              save_dir: str | Path | None = None, plots: bool = True) -> dict:
    """Score COCO ``detections`` against ``coco_gt``: COCO AP (see :func:`coco_map`), P/R/F1 at
    ``conf_thres_pr`` and per-class details; writes PR-curve and confusion-matrix PNGs to
    ``save_dir`` when ``plots``. Returns the result dict of the module docstring (without ``speed_ms``)."""
    gt = normalize_gt(coco_gt)
    cat_ids = category_order(gt)
    names = category_names(gt, names)
    ap = coco_map(gt, detections)
    st = threshold_stats(gt, detections, conf_thres=conf_thres_pr)
    classes = {}
    for k, name in enumerate(names):
        classes[name] = {"category_id": cat_ids[k], "images": int(st["images_per_class"][k]),
                         "instances": int(st["n_gt"][k]), "ap50": float(ap["ap50"][k]), "ap": float(ap["ap"][k]),
                         "precision": float(st["per_class_precision"][k]), "recall": float(st["per_class_recall"][k])}
    out = {key: ap[key] for key in ("map", "map50", "map75", "map_small", "map_medium", "map_large")}
    out["per_class"] = {name: float(ap["ap"][k]) for k, name in enumerate(names)}
    out.update(precision=st["precision"], recall=st["recall"], f1=st["f1"], conf_thres_pr=float(conf_thres_pr),
               classes=classes, n_images=len(gt["images"]), n_instances=int(st["n_gt"].sum()),
               n_detections=len(detections))
    if save_dir is not None and plots:
        from repyolo.utils.plots import plot_confusion_matrix, plot_pr_curve

        save_dir = Path(save_dir)
        try:
            plot_pr_curve(ap["pr_curve"], names, save_dir / "pr_curve.png", ap50=ap["ap50"])
            plot_confusion_matrix(st["confusion"], names, save_dir / "confusion_matrix.png")
        except Exception as exc:  # a plot must never cost the numbers
            LOGGER.warning("could not draw evaluation plots: %s", exc)
    return out


def load_predictions(pred_json) -> list:
    """A COCO results list from a path or an already loaded list (clear DataError if unreadable)."""
    if isinstance(pred_json, (list, tuple)):
        return list(pred_json)
    path = Path(pred_json)
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({str(exc).splitlines()[0][:150]})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of detections (COCO results format)")
    return data


def scores_from_predictions(pred_json, coco_gt_dict: dict, names: list[str] | None = None,
                            conf_thres_pr: float = 0.25, save_dir=None, plots: bool = False) -> dict:
    """Score a COCO results file (or list) against a COCO ground-truth dict, without a model.

    Image and category ids must be those of ``coco_gt_dict`` (a data set's COCO json ids, or the
    ids :meth:`DetectionDataset.coco_gt` gives a YOLO-txt set). Returns the ``repyolo val`` dict
    with ``speed_ms`` values ``None``.
    """
    where = str(pred_json) if not isinstance(pred_json, (list, tuple)) else "predictions"
    gt = normalize_gt(coco_gt_dict)
    dets = check_detections(load_predictions(pred_json), gt, where=where)
    out = summarize(gt, dets, names=names, conf_thres_pr=conf_thres_pr, save_dir=save_dir, plots=plots)
    out["speed_ms"] = {"preprocess": None, "inference": None, "nms": None}
    return out


def to_json(results: dict) -> dict:
    """The result dict with NaN -> None and numpy -> Python (ready for ``json.dump``)."""
    return nan_to_none(results)


def format_table(results: dict) -> str:
    """The per-class table ``Class Images Instances P R AP50 AP`` with an ``all`` row first."""
    head = f"{'Class':>20} {'Images':>8} {'Instances':>10} {'P':>7} {'R':>7} {'AP50':>7} {'AP50-95':>8}"

    def num(x, w):
        return f"{'-':>{w}}" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:>{w}.3f}"

    lines = [head, f"{'all':>20} {results.get('n_images', 0):>8} {results.get('n_instances', 0):>10} "
                   f"{num(results['precision'], 7)} {num(results['recall'], 7)} {num(results['map50'], 7)} "
                   f"{num(results['map'], 8)}"]
    for name, c in results.get("classes", {}).items():
        if not c["instances"] and (c["ap"] is None or math.isnan(c["ap"])):
            continue  # class absent from the ground truth: AP undefined, left out of the mean
        lines.append(f"{name[:20]:>20} {c['images']:>8} {c['instances']:>10} {num(c['precision'], 7)} "
                     f"{num(c['recall'], 7)} {num(c['ap50'], 7)} {num(c['ap'], 8)}")
    absent = [n for n, c in results.get("classes", {}).items() if not c["instances"]]
    if absent:
        lines.append(f"({len(absent)} classes without ground truth: AP undefined, excluded from the mean)")
    sp = results.get("speed_ms") or {}
    if sp and sp.get("inference") is not None:
        lines.append(f"Speed per image: {sp['preprocess']:.1f} ms pre-process, {sp['inference']:.1f} ms inference, "
                     f"{sp['nms']:.1f} ms NMS")
    return "\n".join(lines)


def _as_backend(model, device):
    """(backend, restore) from a Backend, a weights path or an ``nn.Module`` (not fused, mode restored)."""
    from repyolo.runtime import Backend, load_backend
    from repyolo.runtime.pytorch import TorchBackend

    if isinstance(model, Backend):
        return model, lambda: None
    if isinstance(model, torch.nn.Module):
        was_training = model.training
        try:
            dev = next(model.parameters()).device
        except StopIteration:
            dev = torch.device(device)
        backend = TorchBackend(model, dev, fuse=False)
        return backend, (lambda: model.train(was_training))
    return load_backend(model, device), lambda: None


class Evaluator:
    """COCO evaluation of a detector over one split of a data set.

    Args:
        dataset: a built :class:`~repyolo.data.dataset.DetectionDataset` (its own ``img_size``,
            ``rect`` and batch shapes are used), or ``None`` to build one from ``data``.
        data: a data YAML path (or a :class:`DataConfig`); ``split``: ``'val'``, ``'train'`` or ``'test'``.
        img_size, batch_size, workers: loader settings; ``rect``: rectangular batches.
        conf_thres, iou_thres, max_det, multi_label: NMS settings (YOLOv6 evaluation defaults);
            ``multi_label=False`` keeps each box's best class only.
        reduced_decode: JPEG decoding shrinks large photos while decoding (fast, the default);
            ``False``: full-size decode + INTER_AREA (see :class:`~repyolo.data.dataset.DetectionDataset`).
        uniform_gain: map boxes back with the one letterbox gain of the long side (and the integer
            padding), as the official YOLOv6 / NCNN demos do, instead of the exact per-axis gains.
        conf_thres_pr: score threshold of the reported precision / recall / F1.
        save_dir: where ``predictions.json`` and the plots go (``None`` = nothing written).
        plots: draw the PR curve and the confusion matrix (needs ``save_dir``).
        device: device for weights paths (an in-memory model stays on its device).
        threads: torch intra-op threads during the evaluation (``None``: the thread policy of
            :mod:`repyolo.utils.threads`, the available cores minus ``workers``); restored afterwards.
        progress: show a progress bar over the batches.

    Call it with a weights path, a :class:`~repyolo.runtime.base.Backend` or an ``nn.Module``
    (the trainer passes its EMA model: it is not fused and its train/eval mode is restored).
    """

    def __init__(self, dataset=None, data=None, split: str = "val", img_size: int = 640, batch_size: int = 32,
                 workers: int = 2, rect: bool = True, conf_thres: float = EVAL_CONF, iou_thres: float = EVAL_IOU,
                 max_det: int = EVAL_MAX_DET, multi_label: bool = True, conf_thres_pr: float = 0.25,
                 save_dir: str | Path | None = None, plots: bool = True, save_json: bool = True,
                 device: str | torch.device = "cpu", reduced_decode: bool = True, uniform_gain: bool = False,
                 threads: int | None = None, progress: bool = False):
        if dataset is None and data is None:
            raise ValueError("Evaluator needs a dataset or a data YAML")
        self.dataset, self.data, self.split = dataset, data, split
        self.img_size, self.batch_size, self.workers, self.rect = int(img_size), int(batch_size), int(workers), rect
        self.conf_thres, self.iou_thres, self.max_det = float(conf_thres), float(iou_thres), int(max_det)
        self.multi_label, self.conf_thres_pr = multi_label, float(conf_thres_pr)
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.plots, self.save_json = plots, save_json
        self.device = device
        self.reduced_decode, self.uniform_gain = bool(reduced_decode), bool(uniform_gain)
        self.threads, self.progress = threads, bool(progress)
        self._gt = None
        self._built_for = None

    # ------------------------------------------------------------------ data

    def _dataset_for(self, backend):
        """The data set, built on first use for the backend's stride / fixed input size."""
        fixed = getattr(backend, "img_size", None)
        stride = int(getattr(backend, "stride", 32) or 32)
        if self.dataset is not None:
            if fixed is not None and (getattr(self.dataset, "rect", False) or
                                      tuple(fixed) != (self.dataset.img_size,) * 2):
                raise DataError(f"the model takes a fixed {tuple(fixed)} input: build the data set with "
                                f"img_size={fixed[0]}, rect=False")
            return self.dataset
        key = (stride, tuple(fixed) if fixed is not None else None)
        if self._built_for != key:
            from repyolo.data.config import DataConfig, load_data_config

            cfg = self.data if isinstance(self.data, DataConfig) else load_data_config(self.data)
            img_size, rect = self.img_size, self.rect
            if fixed is not None:
                if fixed[0] != fixed[1]:
                    raise DataError(f"the model takes a fixed non-square {tuple(fixed)} input; "
                                    "evaluation needs a square or dynamic-shape model")
                img_size, rect = int(fixed[0]), False
                if img_size != self.img_size:
                    LOGGER.info("model input is fixed at %d: evaluating at %d", img_size, img_size)
            self._ds = cfg.dataset(self.split, img_size=img_size, augment=False, rect=rect,
                                   batch_size=self.batch_size, stride=stride, pad=EVAL_PAD, workers=self.workers,
                                   reduced_decode=self.reduced_decode)
            self._built_for = key
            self._gt = None
        return self._ds

    def coco_gt(self, dataset) -> dict:
        if self._gt is None or self._gt[0] is not dataset:
            self._gt = (dataset, normalize_gt(dataset.coco_gt()))
        return self._gt[1]

    # ------------------------------------------------------------------ run

    @torch.inference_mode()
    def predict(self, backend, dataset) -> tuple[list[dict], dict]:
        """Run ``backend`` over ``dataset``: COCO result dicts and per-image ``speed_ms``."""
        from repyolo.data.loader import build_dataloader

        bs = self.batch_size
        if getattr(dataset, "rect", False) and getattr(dataset, "batch_index", None) is not None and len(dataset):
            bs = int((np.asarray(dataset.batch_index) == 0).sum())  # the batches its shapes were made for
        loader = build_dataloader(dataset, batch_size=bs, workers=self.workers, shuffle=False)
        dev = getattr(backend, "device", torch.device("cpu"))
        end2end = bool(getattr(backend, "end2end", False))
        if end2end:
            LOGGER.warning("end-to-end model: its in-graph NMS settings apply (single-label), so mAP can be "
                           "lower than with the raw-output model and repyolo's multi-label NMS")
        cat_ids = np.asarray(dataset.category_ids, dtype=np.int64)
        sync = (lambda: torch.cuda.synchronize()) if torch.device(dev).type == "cuda" else (lambda: None)
        t = np.zeros(3)
        n_img, first, t_first, n_first = 0, True, np.zeros(3), 0
        ids, img_index, boxes, scores, classes = [], [], [], [], []
        path_ids = None
        batches = loader
        if self.progress:
            from tqdm import tqdm

            batches = tqdm(loader, total=len(loader), desc="val", mininterval=2.0, leave=False,
                           bar_format="{l_bar}{bar:20}{r_bar}")
        for imgs, _, paths, metas in batches:
            n = imgs.shape[0]
            t0 = time.perf_counter()
            x = to_model_input(imgs, dev)  # (fixed-batch backends chunk / pad)
            sync()
            t1 = time.perf_counter()
            if end2end:  # NMS inside the model file (its own IoU threshold, fixed at export)
                dets = [filter_detections(d, self.conf_thres, None, self.max_det)
                        for d in backend.detect(x, self.conf_thres)[:n]]
                sync()
                t2 = time.perf_counter()
            else:
                preds = backend(x)
                sync()
                t2 = time.perf_counter()
                preds = torch.as_tensor(preds)[:n]
                if preds.shape[-1] - 4 != dataset.nc:
                    raise DataError(f"the model predicts {preds.shape[-1] - 4} classes but the data set has "
                                    f"{dataset.nc} ({', '.join(dataset.names[:5])}...)")
                dets = non_max_suppression(preds, self.conf_thres, self.iou_thres, multi_label=self.multi_label,
                                           max_det=self.max_det)
            sync()
            t3 = time.perf_counter()
            if first:  # the first batch pays one-off costs (allocations, lazy init): not timed
                first = False
                t_first, n_first = np.array((t1 - t0, t2 - t1, t3 - t2)), n
            else:
                t += (t1 - t0, t2 - t1, t3 - t2)
                n_img += n
            for det, meta, path in zip(dets, metas, paths):
                if self.uniform_gain:  # the long side's gain for both axes
                    meta = {k: v for k, v in meta.items() if k != "ratio_xy"}
                det = scale_boxes(det.cpu(), meta).numpy()
                img_index.append(np.full(len(det), len(ids), dtype=np.int64))
                boxes.append(det[:, :4])
                scores.append(det[:, 4])
                classes.append(det[:, 5].astype(np.int64))
                if "image_id" in meta:
                    ids.append(meta["image_id"])
                else:  # older data sets: look the id up by file
                    path_ids = path_ids or dict(zip(dataset.im_files, dataset.image_ids))
                    ids.append(path_ids[path])
        if n_img == 0:  # a single batch: report it as it is
            t, n_img = t_first, n_first
        speed = dict(zip(("preprocess", "inference", "nms"), (t / max(n_img, 1) * 1e3).tolist()))
        return _coco_results(ids, img_index, boxes, scores, classes, cat_ids), speed

    def __call__(self, model) -> dict:
        """Evaluate ``model`` (weights path, Backend or ``nn.Module``); returns the result dict."""
        from repyolo.utils.threads import thread_scope

        backend, restore = _as_backend(model, self.device)
        with thread_scope(self.threads, self.workers, who="val"):
            try:
                dataset = self._dataset_for(backend)
                if len(dataset) == 0:
                    raise DataError("the evaluation split has no usable images")
                names = list(dataset.names)
                if backend.names and len(backend.names) != len(names):
                    raise DataError(f"the model has {len(backend.names)} classes but the data set has {len(names)}")
                dets, speed = self.predict(backend, dataset)
            finally:
                restore()
        if self.save_dir is not None and self.save_json:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            with open(self.save_dir / "predictions.json", "w", encoding="utf-8") as f:
                json.dump(dets, f)
        out = summarize(self.coco_gt(dataset), dets, names=names, conf_thres_pr=self.conf_thres_pr,
                        save_dir=self.save_dir, plots=self.plots)
        out["speed_ms"] = speed
        LOGGER.debug("evaluated %d images: mAP %.4f, mAP50 %.4f", out["n_images"], out["map"], out["map50"])
        return out


def _coco_results(image_ids, img_index, boxes, scores, classes, cat_ids) -> list[dict]:
    """Per-image arrays -> COCO results (bbox xywh rounded to 1e-3 px, score to 1e-5) so that the
    written JSON, read back, scores exactly the same."""
    if not boxes:
        return []
    idx = np.concatenate(img_index)
    b = np.concatenate(boxes).astype(np.float64)
    s = np.round(np.concatenate(scores).astype(np.float64), 5)
    c = cat_ids[np.concatenate(classes)]
    xywh = np.round(np.concatenate((b[:, :2], b[:, 2:] - b[:, :2]), 1), 3)
    ids = [image_ids[i] for i in idx.tolist()]
    return [{"image_id": i, "category_id": int(k), "bbox": bb, "score": float(sc)}
            for i, k, bb, sc in zip(ids, c.tolist(), xywh.tolist(), s.tolist())]


def evaluate(weights, data, **kwargs) -> dict:
    """One-shot evaluation: ``Evaluator(data=data, **kwargs)(weights)``."""
    return Evaluator(data=data, **kwargs)(weights)


__all__ = ["Evaluator", "evaluate", "scores_from_predictions", "summarize", "format_table", "to_json",
           "load_predictions", "EVAL_CONF", "EVAL_IOU", "EVAL_MAX_DET"]
