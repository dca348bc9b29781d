"""``repyolo predict``: detect objects in images, folders, globs, list files, videos or streams.

    repyolo predict --weights W|MODEL.onnx|MODEL_openvino_dir --source PATHS --img S --conf C
                    [--iou 0.45] [--save-txt] [--save-json] [--project DIR --name RUN] [--max-det 300]
                    [--classes 0 2] [--agnostic-nms] [--device cpu]

Writes into ``PROJECT/NAME`` (``runs/predict/exp``, ``exp2``, ...): annotated images (and
``.mp4`` videos), ``labels/*.txt`` (``class cx cy w h conf``, normalised) with ``--save-txt``,
``predictions.json`` (COCO-style results plus ``file_name``) with ``--save-json``.
A file that cannot be read is skipped with a warning; the exit code is non-zero only when
nothing could be processed.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint (.pt), ONNX model or OpenVINO folder")
    p.add_argument("--source", required=True, nargs="+",
                   help="image, folder, glob, video, .txt list, webcam index (0) or stream URL; several allowed")
    p.add_argument("--img", type=int, default=640, help="inference size (long side)")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=300, help="detections kept per image")
    p.add_argument("--classes", type=int, nargs="+", default=None, help="keep only these class ids")
    p.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    p.add_argument("--rect", action=argparse.BooleanOptionalAction, default=True,
                   help="minimal padding to a multiple of the stride (default; --no-rect: square img x img)")
    p.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                   help="runtime for .pt weights: auto = a cached ONNX Runtime export when it pays (CPU), "
                        "torch = PyTorch, onnx = always the ONNX Runtime export")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass")
    p.add_argument("--vid-stride", type=int, default=1, help="use every n-th video frame")
    p.add_argument("--device", default="cpu", help="cpu, 0 (CUDA device) or cuda:N")
    p.add_argument("--half", action="store_true", help="FP16 inference (CUDA only)")
    p.add_argument("--save-txt", action="store_true", help="write YOLO txt results to labels/")
    p.add_argument("--save-json", action="store_true", help="write predictions.json (COCO-style)")
    p.add_argument("--nosave", action="store_true", help="do not write annotated images / videos")
    p.add_argument("--project", default="runs/predict", help="output root folder")
    p.add_argument("--name", default="exp", help="run name (a new exp2, exp3... when it exists)")
    p.add_argument("--exist-ok", action="store_true", help="write into an existing PROJECT/NAME")
    p.add_argument("--line-width", type=int, default=None, help="box line width (pixels)")
    p.add_argument("--hide-labels", action="store_true", help="draw boxes only")
    p.add_argument("--hide-conf", action="store_true", help="draw labels without scores")


def run(args: argparse.Namespace) -> int:
    from repyolo.data.media import resolve_sources
    from repyolo.engine.predictor import Predictor
    from repyolo.engine.results import PredictionWriter
    from repyolo.export.cache import open_fast_backend
    from repyolo.utils.device import select_device
    from repyolo.utils.logging import get_logger
    from repyolo.utils.paths import increment_path
    from repyolo.utils.threads import apply_threads

    log = get_logger("repyolo.predict")
    warnings: list[str] = []
    # sources first: a typo in --source fails before the model is loaded
    entries = resolve_sources(args.source if len(args.source) > 1 else args.source[0], warnings)
    # the thread policy's count, for the runtime the backend opens (the Predictor logs the choice)
    threads = apply_threads(getattr(args, "threads", None), workers=0, who="predict", log=False)
    n_frames = None if any(e.kind in ("video", "stream") for e in entries) else len(entries)
    backend = open_fast_backend(args.weights, select_device(args.device), (args.img, args.img), args.runtime,
                                threads=threads, n_frames=n_frames, half=args.half)
    predictor = Predictor(backend, device=args.device, img_size=args.img, conf_thres=args.conf,
                          iou_thres=args.iou, max_det=args.max_det, classes=args.classes,
                          agnostic=args.agnostic_nms, rect=args.rect, batch_size=args.batch, half=args.half,
                          threads=getattr(args, "threads", None))
    save_dir = increment_path(Path(args.project) / args.name, exist_ok=args.exist_ok)
    outputs = None
    n, totals = 0, {"preprocess": 0.0, "inference": 0.0, "nms": 0.0}
    try:
        for frame, result in predictor.stream(entries, vid_stride=args.vid_stride, warn=warnings):
            if outputs is None:
                save_dir.mkdir(parents=True, exist_ok=True)
                outputs = PredictionWriter(save_dir, save_img=not args.nosave, save_txt=args.save_txt,
                                           save_json=args.save_json, line_width=args.line_width,
                                           hide_labels=args.hide_labels, hide_conf=args.hide_conf,
                                           background=True)
            outputs.add(frame, result)
            n += 1
            for k in totals:
                totals[k] += result.speed.get(k, 0.0)
            where = frame.path or frame.name
            if frame.kind in ("video", "stream"):
                where = f"{where} frame {frame.index}"
            h, w = result.orig_shape
            log.info("%s %dx%d: %s, %.1f ms", where, w, h, result.summary(), result.speed.get("inference", 0.0))
    finally:
        if outputs is not None:
            outputs.close()
    log.info("Speed per image: %.1f ms pre-process, %.1f ms inference, %.1f ms NMS",
             *(totals[k] / max(n, 1) for k in ("preprocess", "inference", "nms")))
    skipped = f", {len(warnings)} skipped" if warnings else ""
    log.info("%d images/frames processed%s; results saved to %s", n, skipped, save_dir)
    return 0
