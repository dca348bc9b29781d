"""``YOLO``: one object for a model's whole life cycle (train, val, predict, export, bench, info).

.. code-block:: python

    from repyolo import YOLO

    m = YOLO("yolov6n")                      # a model name or YAML: a new model (random weights)
    m.train(data="data.yaml", epochs=50)     # trains; m now holds best.pt (m.save_dir: the run)
    m.val()                                  # COCO mAP on the training data's val split
    m.predict("bus.jpg", save=True)          # list of Result; annotated copies in runs/predict/exp
    m.export(format="onnx")                  # path of the written file

    YOLO("best.pt")                          # a checkpoint (repyolo or official YOLOv6)
    YOLO("best.onnx")                        # an exported file: predict / val / bench only

Every ``repyolo`` command is a thin shell over these methods. Sizes default to the size the
model was trained at (the checkpoint's ``args.img``; the model config's ``img_size``; an exported
file's fixed input), thresholds to the YOLOv6 values (predict 0.25 / 0.45, val 0.03 / 0.65).
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from repyolo.api.info import model_info
from repyolo.api.outputs import run_folder, write_json
from repyolo.cfg.settings import Hyp, TrainArgs
from repyolo.engine.results import Result
from repyolo.errors import RepyoloError
from repyolo.runtime import Backend
from repyolo.utils.device import select_device
from repyolo.utils.logging import get_logger
from repyolo.utils.paths import check_output_dir, check_output_path

LOGGER = get_logger("repyolo.api")
EXPORTED_SUFFIXES = (".onnx", ".xml", ".torchscript", ".param")


def source_kind(source) -> str:
    """``'backend' | 'module' | 'checkpoint' | 'exported' | 'config'`` for what :class:`YOLO` was given."""
    if isinstance(source, Backend):
        return "backend"
    if isinstance(source, torch.nn.Module):
        return "module"
    path = Path(str(source))
    suffix = path.suffix.lower()
    if suffix in EXPORTED_SUFFIXES or path.is_dir():
        return "exported"
    if suffix in (".yaml", ".yml") or (not path.is_file() and suffix not in (".pt", ".pth")):
        return "config"
    return "checkpoint"


def run_training(args: TrainArgs):
    """Validate, claim the run folder, train; returns the :class:`~repyolo.engine.trainer.Trainer`
    (``trainer.summary``: the final metrics; ``trainer.save_dir``: the run folder)."""
    from repyolo.engine.trainer import Trainer

    trainer = Trainer(args)
    trainer.summary = trainer.train()
    return trainer


class YOLO:
    """A YOLOv6 detector through its life cycle.

    Args:
        source: a model name (``'yolov6n'``) or YAML (a new model); a ``.pt`` checkpoint (repyolo
            or official YOLOv6); an exported file (``.onnx``, OpenVINO folder or ``.xml``,
            ``.torchscript``: predict, val and bench only); an ``nn.Module`` or a runtime Backend.
        nc: classes of a new model from a name / YAML (default 80; training takes the data's).
        device: ``'cpu'``, ``'0'`` or ``'cuda:N'``.

    Attributes: ``model`` (the ``nn.Module``, ``None`` for exported files), ``names``, ``kind``,
    ``source``, ``save_dir`` (the folder the last train / val / predict wrote), ``trainer``.
    """

    def __init__(self, source="yolov6n", nc: int | None = None, device: str = "cpu"):
        self.device = str(device)
        self.save_dir: Path | None = None
        self.trainer = None
        self._load(source, nc)

    def _load(self, source, nc: int | None = None) -> None:
        self.kind = source_kind(source)
        self.source = source if self.kind in ("backend", "module") else str(source)
        self.model, self._backend, self.train_args, self._img = None, None, {}, None
        self._fast = None  # (key, ONNX Runtime backend) of the last predict (see _predict_backend)
        if self.kind == "backend":
            self._backend = source
        elif self.kind == "module":
            self.model = source
        elif self.kind == "exported":
            from repyolo.runtime import load_backend

            self._backend = load_backend(source, self.device)
        elif self.kind == "config":
            from repyolo.nn.model import build_model

            self.model = build_model(str(source), num_classes=80 if nc is None else int(nc)).eval()
        else:
            from repyolo.io.checkpoint import model_from_checkpoint, read_checkpoint, training_img_size

            ckpt = read_checkpoint(source)
            self.model = model_from_checkpoint(ckpt)
            self.train_args = dict(ckpt.get("args") or {})
            self._img = training_img_size(ckpt)

    def __repr__(self) -> str:
        return f"YOLO({self.source!r}, kind={self.kind!r}, classes={len(self.names)})"

    # ------------------------------------------------------------------ properties

    @property
    def names(self) -> list[str]:
        """Class names (index = class id)."""
        if self.model is not None:
            return list(getattr(self.model, "names", None) or [str(i) for i in range(self.model.nc)])
        return list(self._backend.names or [])

    @property
    def backend(self) -> Backend:
        """The runtime that predicts: the exported file's, or a fused copy of ``model`` (rebuilt after
        :meth:`fuse` or :meth:`train`; ``model`` itself stays as it is)."""
        if self._backend is None:
            self._backend = self._torch_backend()
        return self._backend

    def _torch_backend(self, half: bool = False) -> Backend:
        from repyolo.runtime.pytorch import TorchBackend

        return TorchBackend(copy.deepcopy(self.model), select_device(self.device), half=half)

    def default_img(self) -> int:
        """The size the model was trained at, else its config's ``img_size``, an exported file's
        fixed input size, or 640."""
        if self._img:
            return int(self._img)
        if self.model is not None and self.model.cfg.get("img_size"):
            return int(self.model.cfg["img_size"])
        fixed = getattr(self._backend, "img_size", None)
        if fixed is not None:
            return int(fixed[0])
        meta = getattr(self._backend, "metadata", None) or {}
        return int((meta.get("img_size") or [640])[0])

    def _need_model(self, what: str) -> torch.nn.Module:
        if self.model is None:
            raise RepyoloError(f"{self.source}: {what} needs a PyTorch model (a .pt checkpoint or a model name); "
                               "an exported model can predict, val and bench only")
        return self.model

    # ------------------------------------------------------------------ train

    def train(self, data: str | None = None, **kwargs) -> dict:
        """Train on ``data`` (a data YAML); ``kwargs`` are :class:`~repyolo.cfg.settings.TrainArgs`
        fields (``epochs``, ``img``, ``batch``, ``project``, ``name``, ``resume=True`` ...) and any
        :class:`~repyolo.cfg.settings.Hyp` key (``lr0=0.005``, ``mosaic=0.5``, or ``hyp={...}``).

        A name / YAML trains a new model; a checkpoint is fine-tuned (``resume=True`` continues its
        run instead). Afterwards this object holds the run's ``best.pt``. Returns the final metrics.
        """
        if self.kind not in ("config", "checkpoint"):
            raise RepyoloError(f"{self.source}: train needs a model name, a model YAML or a .pt checkpoint")
        targs = self._train_args(data, kwargs)
        trainer = run_training(targs)
        self.trainer, self.save_dir = trainer, trainer.save_dir
        if trainer.main:
            self._load(str(trainer.wdir / "best.pt"))
        return trainer.summary

    def _train_args(self, data, kwargs: dict) -> TrainArgs:
        fields = {f.name for f in dataclasses.fields(TrainArgs)}
        hyp_keys = {f.name for f in dataclasses.fields(Hyp)}
        unknown = sorted(set(kwargs) - fields - hyp_keys)
        if unknown:
            raise RepyoloError(f"train: unknown argument {unknown[0]!r} (TrainArgs fields and hyper-parameters: "
                               "see `repyolo train --help` and `--help-hyp`)")
        args = {k: v for k, v in kwargs.items() if k in fields}
        args["hyp"] = {**dict(args.get("hyp") or {}), **{k: v for k, v in kwargs.items() if k in hyp_keys}}
        args.setdefault("device", self.device)
        if args.get("resume") is True:
            if self.kind != "checkpoint":
                raise RepyoloError("train(resume=True) needs a checkpoint: YOLO('runs/train/exp/weights/last.pt')")
            args["resume"] = self.source
        elif self.kind == "config":
            args.setdefault("model", self.source)
        elif not args.get("resume"):
            args.setdefault("weights", self.source)
        if data is not None:
            args["data"] = str(data)
        if not args.get("data") and not args.get("resume"):
            raise RepyoloError("train needs data= (a data YAML), unless resuming")
        return TrainArgs(**args)

    # ------------------------------------------------------------------ val

    def val(self, data: str | None = None, split: str = "val", img: int | None = None, batch: int = 32,
            conf: float = 0.03, iou: float = 0.65, max_det: int = 300, conf_thres_pr: float = 0.25,
            rect: bool = True, workers: int = 2, plots: bool = True, save: bool = True,
            save_dir: str | Path | None = None, project: str | Path = "runs/val", name: str = "exp",
            exist_ok: bool = False, json_out: str | Path | None = None, threads: int | None = None,
            multi_label: bool = True, reduced_decode: bool = True, uniform_gain: bool = False) -> dict:
        """COCO evaluation on ``split`` of ``data`` (default: the data the checkpoint was trained on)
        with the YOLOv6 protocol (``multi_label=False, reduced_decode=False, uniform_gain=True`` with
        ``rect=False, conf=0.001`` is the protocol of the official deployment demos). Writes
        ``predictions.json`` and the PR curve / confusion matrix to ``save_dir``, or a new
        ``project/name`` (``runs/val/exp``, ``exp2`` ...) unless ``save=False``;
        ``json_out``: also write the metrics there. Returns the result dict of
        :mod:`repyolo.engine.evaluator`."""
        from repyolo.data.config import load_data_config
        from repyolo.engine.evaluator import Evaluator

        _check_thresholds(conf, iou)
        data = self._val_data(data)
        if json_out:
            check_output_path(json_out)
        if save:
            check_output_dir(save_dir if save_dir is not None else project)
        cfg = load_data_config(data)
        evaluator = Evaluator(data=cfg, split=split, img_size=img or self.default_img(), batch_size=batch,
                              workers=workers, rect=rect, conf_thres=conf, iou_thres=iou, max_det=max_det,
                              conf_thres_pr=conf_thres_pr, plots=plots, device=self.device,
                              multi_label=multi_label, reduced_decode=reduced_decode, uniform_gain=uniform_gain,
                              **_threads(threads))
        backend = self.backend
        if not save:
            evaluator.save_dir = None
            results = evaluator(backend)
        else:
            with _output_folder(save_dir, project, name, exist_ok) as folder:
                evaluator.save_dir = folder
                results = evaluator(backend)
            self.save_dir = folder
            LOGGER.info("results saved to %s", folder)
        if json_out:
            write_json(json_out, results)
            LOGGER.info("metrics written to %s", json_out)
        return results

    def _val_data(self, data):
        if data is not None:
            return data
        if self.train_args.get("data"):
            return self.train_args["data"]
        raise RepyoloError("val needs a data YAML (--data, or data= in Python): the model records no training "
                           "data set")

    # ------------------------------------------------------------------ predict

    def predict(self, source, img: int | None = None, conf: float = 0.25, iou: float = 0.45, max_det: int = 300,
                classes=None, agnostic: bool = False, rect: bool = True, batch: int = 1, half: bool = False,
                vid_stride: int = 1, stream: bool = False, save: bool = False, save_txt: bool = False,
                save_json: bool = False, project: str | Path = "runs/predict", name: str = "exp",
                exist_ok: bool = False, line_width: int | None = None, hide_labels: bool = False,
                hide_conf: bool = False, verbose: bool = False, threads: int | None = None,
                runtime: str = "auto"):
        """Detect objects in ``source``: an RGB uint8 array, a path (image, folder, glob, video, list
        file, webcam index, stream URL) or a list of them. Returns one
        :class:`~repyolo.engine.results.Result` per image / frame (a generator with ``stream=True``).

        ``save`` writes annotated images / videos, ``save_txt`` YOLO txt labels, ``save_json``
        ``predictions.json`` into a new ``project/name`` (``runs/predict/exp``, ``exp2`` ...).
        Unreadable files are skipped with a warning; DataError when nothing could be read.

        ``rect`` (default) pads only to the next multiple of the stride; ``runtime`` for a ``.pt``
        checkpoint on the CPU: ``'auto'`` runs a cached, parity-checked ONNX Runtime export of it
        when the source has enough frames to pay for the export (:mod:`repyolo.export.cache`),
        ``'onnx'`` always, ``'torch'`` never.
        """
        from repyolo.engine.predictor import Predictor

        _check_thresholds(conf, iou)
        writing = dict(save_img=save, save_txt=save_txt, save_json=save_json, line_width=line_width,
                       hide_labels=hide_labels, hide_conf=hide_conf)
        if save or save_txt or save_json:
            check_output_dir(project)
        else:
            writing = None
        img = img or self.default_img()
        backend = self._predict_backend(source, img, runtime, half, threads)
        predictor = Predictor(backend, device=self.device, img_size=img, conf_thres=conf,
                              iou_thres=iou, max_det=max_det, classes=classes, agnostic=agnostic, rect=rect,
                              batch_size=batch, half=half, **_threads(threads))
        results = self._predict_stream(predictor, source, vid_stride, writing, project, name, exist_ok, verbose)
        return results if stream else list(results)

    __call__ = predict

    def _predict_backend(self, source, img: int, runtime: str, half: bool, threads: int | None) -> Backend:
        """The backend a prediction runs: PyTorch (``self.backend``), or for a ``.pt`` file on the CPU a
        cached ONNX Runtime export when ``runtime`` allows it (kept for the next call of the same size)."""
        from repyolo.export.cache import RUNTIMES

        if runtime not in RUNTIMES:
            raise RepyoloError(f"runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
        if half and self.model is not None:
            return self._torch_backend(half=True)
        if runtime == "torch" or self.kind != "checkpoint" or select_device(self.device).type != "cpu":
            return self.backend
        from repyolo.data.media import resolve_sources
        from repyolo.export.cache import open_fast_backend
        from repyolo.runtime.pytorch import TorchBackend
        from repyolo.utils.threads import apply_threads

        key = (img, threads)
        if self._fast is not None and self._fast[0] == key:
            return self._fast[1]
        entries = resolve_sources(source, [])
        n_frames = None if any(e.kind in ("video", "stream") for e in entries) else len(entries)
        backend = open_fast_backend(self.source, "cpu", (img, img), runtime,
                                    threads=apply_threads(threads, workers=0, who="predict", log=False),
                                    n_frames=n_frames, torch_backend=self.backend)
        if not isinstance(backend, TorchBackend):
            self._fast = (key, backend)
        return backend

    def _predict_stream(self, predictor, source, vid_stride, writing, project, name, exist_ok,
                        verbose) -> Iterator[Result]:
        from repyolo.engine.results import PredictionWriter

        level = logging.INFO if verbose else logging.DEBUG
        warnings: list[str] = []
        n, totals = 0, {"preprocess": 0.0, "inference": 0.0, "nms": 0.0}
        writer, folder_ctx, folder = None, None, None
        try:
            for frame, result in predictor.stream(source, vid_stride=vid_stride, warn=warnings):
                if writing is not None and writer is None:
                    folder_ctx = _output_folder(None, project, name, exist_ok)
                    folder = folder_ctx.__enter__()
                    writer = PredictionWriter(folder, **writing)
                if writer is not None:
                    writer.add(frame, result)
                n += 1
                for k in totals:
                    totals[k] += result.speed.get(k, 0.0)
                where = frame.path or frame.name
                if frame.kind in ("video", "stream"):
                    where = f"{where} frame {frame.index}"
                h, w = result.orig_shape
                LOGGER.log(level, "%s %dx%d: %s, %.1f ms", where, w, h, result.summary(),
                           result.speed.get("inference", 0.0))
                yield result
        finally:
            if writer is not None:
                writer.close()
                folder_ctx.__exit__(None, None, None)
                self.save_dir = folder
        LOGGER.log(level, "Speed per image: %.1f ms pre-process, %.1f ms inference, %.1f ms NMS",
                   *(totals[k] / max(n, 1) for k in ("preprocess", "inference", "nms")))
        skipped = f", {len(warnings)} skipped" if warnings else ""
        saved = f"; results saved to {folder}" if folder is not None else ""
        LOGGER.log(level, "%d images/frames processed%s%s", n, skipped, saved)

    # ------------------------------------------------------------------ deploy

    def export(self, format: str = "onnx", img: int | tuple[int, int] | None = None, output: str | Path | None = None,
               int8: bool = False, data: str | None = None, calib: int = 100, **kwargs) -> Path:
        """Export the fused model to ``'onnx' | 'openvino' | 'torchscript' | 'ncnn'``; ``img`` defaults to the
        training size; ``kwargs`` go to :func:`repyolo.export.export_model` (``batch``, ``dynamic``,
        ``half``, ``opset``, ``simplify``, ``nms``, ``max_det``, ``conf``, ``iou``, ``multi_label``).
        ``int8=True`` quantizes (post-training, calibrated on ``calib`` train images of ``data``).
        Returns the written path (beside the checkpoint unless ``output``)."""
        from repyolo.export.exporter import FORMATS, default_output, export_model, input_size

        model = self._need_model("export")
        weights = self.source if self.kind == "checkpoint" else model
        img = img or self.default_img()
        fmt = str(format).lower()
        if fmt not in FORMATS:
            raise RepyoloError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
        input_size(img, model.max_stride)  # a wrong size fails before the model is fused
        if int8:
            from repyolo.quant import export_int8
            from repyolo.quant.qdq import default_output as int8_output

            check_output_path(output or int8_output(weights, "_int8"))
            opts = {k: kwargs[k] for k in ("batch", "dynamic", "half", "nms") if k in kwargs}
            return export_int8(weights, fmt, data=data, img_size=img, output=output, calib=calib, **opts)
        check_output_path(output or default_output(weights, model, fmt))
        return export_model(weights, fmt, img_size=img, output=output, **kwargs)

    def bench(self, img: int | tuple[int, int] | None = None, backends=None, batch: int = 1,
              threads: int | None = None, warmup: int = 5, runs: int = 30, fuse: bool = True,
              json_out: str | Path | None = None) -> dict:
        """Latency and throughput per runtime (see :func:`repyolo.export.bench.benchmark`): a
        PyTorch model on ``torch, onnx, openvino`` by default, an exported file on its own runtime."""
        from repyolo.export.bench import benchmark

        if json_out:
            check_output_path(json_out)
        if self.kind == "backend":
            raise RepyoloError("bench needs a file or a model, not a runtime object")
        weights = self.source if self.kind in ("checkpoint", "exported") else self.model
        result = benchmark(weights, img or self.default_img(), backends, batch=batch, threads=threads,
                           warmup=warmup, runs=runs, fuse=fuse)
        if json_out:
            write_json(json_out, result)
        return result

    def info(self, img: int | None = None) -> dict:
        """Parameters and GFLOPs, training and fused form (see :func:`repyolo.api.info.model_info`)."""
        return model_info(self._need_model("info"), img or self.default_img())

    def fuse(self) -> "YOLO":
        """Re-parameterize ``model`` in place for inference (RepVGG branches merged, BN folded)."""
        self._need_model("fuse").eval().fuse()
        if self.kind != "exported":
            self._backend = None
        return self


class Detector(YOLO):
    """A :class:`YOLO` whose inference settings are fixed at construction (the first API):
    ``Detector(weights, img_size=640, conf=0.25)(source)``; ``val(data, img_size, batch_size)``
    writes nothing."""

    def __init__(self, weights, device="cpu", img_size: int = 640, conf: float = 0.25, iou: float = 0.45,
                 max_det: int = 300, classes=None, agnostic: bool = False, batch_size: int = 1, half: bool = False):
        super().__init__(weights, device=device)
        self._settings = dict(img=img_size, conf=conf, iou=iou, max_det=max_det, classes=classes,
                              agnostic=agnostic, batch=batch_size, half=half)

    def predict(self, source, vid_stride: int = 1, **kwargs):
        return super().predict(source, vid_stride=vid_stride, **{**self._settings, **kwargs})

    __call__ = predict

    def val(self, data, split: str = "val", img_size: int | None = None, batch_size: int = 32, **kwargs) -> dict:
        kwargs.setdefault("save", False)
        return super().val(data, split=split, img=img_size or self._settings["img"], batch=batch_size, **kwargs)


def _check_thresholds(conf: float, iou: float) -> None:
    if not 0.0 <= conf <= 1.0:
        raise RepyoloError(f"--conf {conf}: a score threshold between 0 and 1")
    if not 0.0 < iou <= 1.0:
        raise RepyoloError(f"--iou {iou}: an IoU threshold above 0 and at most 1")


def _threads(threads: int | None) -> dict:
    """``threads=`` for the Evaluator / Predictor only when set (their default is the thread policy)."""
    return {} if threads is None else {"threads": int(threads)}


def _output_folder(save_dir, project, name, exist_ok):
    """The run folder context: ``save_dir`` as given (created, reused), else a new ``project/name``."""
    if save_dir is not None:
        return run_folder(Path(save_dir).parent, Path(save_dir).name, exist_ok=True)
    return run_folder(project, name, exist_ok)


def score_predictions(predictions, data: str, split: str = "val", conf_thres_pr: float = 0.25, plots: bool = True,
                      save: bool = True, save_dir: str | Path | None = None, project: str | Path = "runs/val",
                      name: str = "exp", exist_ok: bool = False, json_out: str | Path | None = None) -> dict:
    """Score a COCO results file (or list) against ``split`` of ``data`` without a model
    (``repyolo val --predictions``); plots go to a new ``runs/val/exp`` unless ``save=False``."""
    from repyolo.data.config import load_data_config
    from repyolo.engine.evaluator import scores_from_predictions

    if json_out:
        check_output_path(json_out)
    if save:
        check_output_dir(save_dir if save_dir is not None else project)
    ds = load_data_config(data).dataset(split, augment=False, rect=False)
    if not save:
        results = scores_from_predictions(predictions, ds.coco_gt(), names=list(ds.names),
                                          conf_thres_pr=conf_thres_pr)
    else:
        with _output_folder(save_dir, project, name, exist_ok) as folder:
            results = scores_from_predictions(predictions, ds.coco_gt(), names=list(ds.names),
                                              conf_thres_pr=conf_thres_pr, save_dir=folder, plots=plots)
        LOGGER.info("results saved to %s", folder)
    if json_out:
        write_json(json_out, results)
        LOGGER.info("metrics written to %s", json_out)
    return results


__all__ = ["YOLO", "Detector", "run_training", "score_predictions", "source_kind"]
