"""``repyolo predict``: detect objects in images, folders, globs, list files, videos or streams.

    repyolo predict --weights W|MODEL.onnx|MODEL_openvino_dir --source PATHS [--img S] [--conf C]
                    [--iou 0.45] [--save-txt] [--save-json] [--project DIR --name RUN] [--max-det 300]
                    [--classes 0 2] [--agnostic-nms] [--device cpu]

Writes into ``PROJECT/NAME`` (``runs/predict/exp``, ``exp2``, ...): annotated images (and
``.mp4`` videos), ``labels/*.txt`` (``class cx cy w h conf``, normalised) with ``--save-txt``,
``predictions.json`` (COCO-style results plus ``file_name``) with ``--save-json``.
A file that cannot be read is skipped with a warning; the exit code is non-zero only when
nothing could be processed. Calls :meth:`repyolo.api.YOLO.predict`.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint (.pt), ONNX model or OpenVINO folder")
    p.add_argument("--source", required=True, nargs="+",
                   help="image, folder, glob, video, .txt list, webcam index (0) or stream URL; several allowed")
    p.add_argument("--img", type=int, default=None,
                   help="inference size, long side (default: the checkpoint's training size, else 640)")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=300, help="detections kept per image")
    p.add_argument("--classes", type=int, nargs="+", default=None, help="keep only these class ids")
    p.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    p.add_argument("--rect", action=argparse.BooleanOptionalAction, default=True,
                   help="minimal padding to a multiple of the stride (default: True; "
                        "--no-rect: a square img x img letterbox)")
    p.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                   help="runtime for .pt weights: auto = a cached ONNX Runtime export when it pays (CPU), "
                        "torch = PyTorch, onnx = always the ONNX Runtime export")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass")
    p.add_argument("--vid-stride", type=int, default=1, help="use every n-th video frame")
    p.add_argument("--device", default="cpu", help="cpu, 0 (CUDA device) or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the thread policy)")
    p.add_argument("--half", action="store_true", help="FP16 inference (CUDA only)")
    p.add_argument("--save-txt", action="store_true", help="write YOLO txt results to labels/")
    p.add_argument("--save-json", action="store_true", help="write predictions.json (COCO-style)")
    p.add_argument("--nosave", action="store_true", help="do not write annotated images / videos")
    p.add_argument("--project", default="runs/predict", help="output root folder")
    p.add_argument("--name", default="exp", help="run name (a new exp2, exp3... when it exists)")
    p.add_argument("--exist-ok", action="store_true", help="write into an existing PROJECT/NAME")
    p.add_argument("--line-width", type=int, default=None, help="box line width in pixels (default: from the size)")
    p.add_argument("--hide-labels", action="store_true", help="draw boxes only")
    p.add_argument("--hide-conf", action="store_true", help="draw labels without scores")


def run(args: argparse.Namespace) -> int:
    from repyolo.api import YOLO
    from repyolo.data.media import resolve_sources
    from repyolo.utils.paths import check_output_dir

    source = args.source if len(args.source) > 1 else args.source[0]
    resolve_sources(source, [])  # a typo in --source fails before the model is loaded
    if not args.nosave or args.save_txt or args.save_json:
        check_output_dir(args.project)  # so does an unwritable output folder
    model = YOLO(args.weights, device=args.device)
    results = model.predict(source, img=args.img, conf=args.conf, iou=args.iou, max_det=args.max_det,
                            classes=args.classes, agnostic=args.agnostic_nms, rect=args.rect, batch=args.batch,
                            half=args.half, vid_stride=args.vid_stride, stream=True, save=not args.nosave,
                            save_txt=args.save_txt, save_json=args.save_json, project=args.project,
                            name=args.name, exist_ok=args.exist_ok, line_width=args.line_width,
                            hide_labels=args.hide_labels, hide_conf=args.hide_conf, verbose=True,
                            threads=args.threads, runtime=args.runtime)
    for _ in results:  # results are logged and written as they come
        pass
    return 0
