"""``repyolo val``: COCO mAP of a model on a data set split, or of a COCO results file.

    repyolo val --weights W --data DATA [--img S] [--batch B] [--conf 0.03] [--iou 0.65] [--json OUT]
    repyolo val --predictions P.json --data DATA [--split val] [--json OUT]

``W`` may be a checkpoint, an ONNX / OpenVINO / NCNN export or a released YOLOv6-Lite ``.param``.
The default protocol is YOLOv6's (rectangular batches, conf 0.03, multi-label NMS). The one of the
official NCNN / deployment demos (what the YOLOv6-Lite release reports) is
``--square --single-label --conf 0.001 --full-decode --uniform-gain``.

Prints the per-class table (name, images, instances, P, R, AP50, AP50-95), writes
``predictions.json``, the PR curve and the confusion matrix to a new ``runs/val/exp`` (``exp2``
...; ``--project`` / ``--name`` / ``--save-dir`` to choose, ``--no-save`` for none) and the
result dict (see :mod:`repyolo.engine.evaluator`) to ``--json``. Calls :meth:`repyolo.api.YOLO.val`
(or :func:`repyolo.api.score_predictions`).
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="checkpoint (.pt), ONNX model, OpenVINO folder, or NCNN .param / folder")
    src.add_argument("--predictions", help="COCO results JSON to score without a model")
    p.add_argument("--data", default=None,
                   help="data YAML (or data set folder); default: the data the checkpoint was trained on")
    p.add_argument("--split", default="val", choices=("val", "train", "test"), help="split to evaluate")
    p.add_argument("--img", type=int, default=None,
                   help="input size, long side (default: the checkpoint's training size, else 640)")
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--conf", type=float, default=0.03, help="confidence threshold (YOLOv6 eval: 0.03)")
    p.add_argument("--iou", type=float, default=0.65, help="NMS IoU threshold (YOLOv6 eval: 0.65)")
    p.add_argument("--max-det", type=int, default=300, help="detections kept per image")
    p.add_argument("--conf-thres-pr", type=float, default=0.25,
                   help="score threshold of the reported precision / recall / F1")
    p.add_argument("--square", "--no-rect", dest="no_rect", action="store_true",
                   help="square letterbox (img x img) instead of rectangular batches")
    p.add_argument("--single-label", action="store_true",
                   help="NMS keeps each box's best class only (default: every class above --conf)")
    p.add_argument("--full-decode", action="store_true",
                   help="decode JPEGs at full size and resize with INTER_AREA (default: the faster reduced-size "
                        "JPEG decode of large photos)")
    p.add_argument("--uniform-gain", action="store_true",
                   help="map boxes back with the long side's letterbox gain for both axes (the official demos' "
                        "convention) instead of the exact per-axis gains")
    p.add_argument("--device", default="cpu", help="cpu, 0 (CUDA device) or cuda:N")
    p.add_argument("--workers", type=int, default=2, help="data loader workers")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the thread policy)")
    p.add_argument("--project", default="runs/val", help="folder of the evaluation runs")
    p.add_argument("--name", default="exp", help="run name (a new exp2, exp3 ... when it exists)")
    p.add_argument("--exist-ok", action="store_true", help="write into an existing PROJECT/NAME")
    p.add_argument("--save-dir", default=None, help="write predictions.json and the plots here instead")
    p.add_argument("--no-save", action="store_true", help="write no run folder (only --json, when given)")
    p.add_argument("--no-plots", action="store_true", help="do not draw the PR curve / confusion matrix")
    p.add_argument("--json", default=None, help="write the metrics as JSON to this file")


def run(args: argparse.Namespace) -> int:
    from repyolo.api import YOLO, score_predictions
    from repyolo.engine.evaluator import format_table
    from repyolo.errors import RepyoloError

    out = dict(plots=not args.no_plots, save=not args.no_save, save_dir=args.save_dir, project=args.project,
               name=args.name, exist_ok=args.exist_ok, json_out=args.json, conf_thres_pr=args.conf_thres_pr)
    if args.predictions:
        if not args.data:
            raise RepyoloError("--predictions needs --data (the data set the predictions are for)")
        results = score_predictions(args.predictions, args.data, split=args.split, **out)
    else:
        model = YOLO(args.weights, device=args.device)
        results = model.val(args.data, split=args.split, img=args.img, batch=args.batch, conf=args.conf,
                            iou=args.iou, max_det=args.max_det, rect=not args.no_rect, workers=args.workers,
                            threads=args.threads, multi_label=not args.single_label,
                            reduced_decode=not args.full_decode, uniform_gain=args.uniform_gain, **out)
    print(format_table(results))
    print(f"mAP@0.5:0.95 {results['map']:.4f}  mAP@0.5 {results['map50']:.4f}  mAP@0.75 {results['map75']:.4f}")
    return 0
