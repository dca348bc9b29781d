"""``repyolo val``: COCO mAP of a model on a data set split, or of a COCO results file.

    repyolo val --weights W --data DATA --img S [--batch B] [--conf 0.03] [--iou 0.65] [--json OUT]
    repyolo val --predictions P.json --data DATA [--split val] [--json OUT]

``W`` may be a checkpoint, an ONNX / OpenVINO / NCNN export or a released YOLOv6-Lite ``.param``.
The default protocol is YOLOv6's (rectangular batches, conf 0.03, multi-label NMS). The one of the
official NCNN / deployment demos (what the YOLOv6-Lite release reports) is
``--square --single-label --conf 0.001 --full-decode --uniform-gain``.

Prints the per-class table (name, images, instances, P, R, AP50, AP50-95) and writes the result
dict (see :mod:`repyolo.engine.evaluator`) to ``--json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="checkpoint (.pt), ONNX model, OpenVINO folder, or NCNN .param / folder")
    src.add_argument("--predictions", help="COCO results JSON to score without a model")
    p.add_argument("--data", required=True, help="data YAML (or data set folder)")
    p.add_argument("--split", default="val", choices=("val", "train", "test"), help="split to evaluate")
    p.add_argument("--img", type=int, default=640, help="input size (long side)")
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
    p.add_argument("--save-dir", default=None, help="write predictions.json, pr_curve.png, confusion_matrix.png here")
    p.add_argument("--no-plots", action="store_true", help="do not draw the PR curve / confusion matrix")
    p.add_argument("--json", default=None, help="write the metrics as JSON to this file")


def _write_json(path: str, results: dict) -> None:
    from repyolo.engine.evaluator import to_json

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(to_json(results), indent=2), encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    from repyolo.data.config import load_data_config
    from repyolo.engine.evaluator import Evaluator, format_table, scores_from_predictions
    from repyolo.utils.device import select_device
    from repyolo.utils.logging import get_logger

    log = get_logger("repyolo.val")
    cfg = load_data_config(args.data)
    if args.predictions:
        ds = cfg.dataset(args.split, img_size=args.img, augment=False, rect=False)
        results = scores_from_predictions(args.predictions, ds.coco_gt(), names=list(ds.names),
                                          conf_thres_pr=args.conf_thres_pr, save_dir=args.save_dir,
                                          plots=not args.no_plots and args.save_dir is not None)
    else:
        evaluator = Evaluator(data=cfg, split=args.split, img_size=args.img, batch_size=args.batch,
                              workers=args.workers, rect=not args.no_rect, conf_thres=args.conf,
                              iou_thres=args.iou, max_det=args.max_det, conf_thres_pr=args.conf_thres_pr,
                              save_dir=args.save_dir, plots=not args.no_plots, device=select_device(args.device),
                              multi_label=not args.single_label, reduced_decode=not args.full_decode,
                              uniform_gain=args.uniform_gain)
        results = evaluator(args.weights)
    print(format_table(results))
    print(f"mAP@0.5:0.95 {results['map']:.4f}  mAP@0.5 {results['map50']:.4f}  mAP@0.75 {results['map75']:.4f}")
    if args.json:
        _write_json(args.json, results)
        log.info("metrics written to %s", args.json)
    if args.save_dir:
        log.info("results saved to %s", args.save_dir)
    return 0
