"""``repyolo export``: a checkpoint to ONNX / OpenVINO / TorchScript / NCNN (fused, self-describing);
calls :meth:`repyolo.api.YOLO.export`."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="repyolo checkpoint (.pt) or an official YOLOv6 checkpoint")
    p.add_argument("--format", default="onnx", choices=["onnx", "openvino", "torchscript", "ncnn"],
                   help="onnx, openvino, torchscript, or ncnn (a folder: .param, .bin, metadata.json; any input size)")
    p.add_argument("--img", type=int, nargs="+", default=None, metavar="S",
                   help="input size: S or H W, multiples of the stride (default: the size the checkpoint was "
                        "trained at, else the model's: 640, P6 1280, Lite 320)")
    p.add_argument("--batch", type=int, default=1, help="fixed batch size (default 1)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width (onnx, openvino)")
    p.add_argument("--half", action="store_true",
                   help="fp16 (onnx: for GPU providers; openvino: fp16 weights; torchscript: CUDA only; "
                        "ncnn: fp16 weight storage)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset, 13..20 (default 13)")
    p.add_argument("--simplify", action=argparse.BooleanOptionalAction, default=True,
                   help="simplify the ONNX graph with onnxslim")
    p.add_argument("--nms", action="store_true",
                   help="end-to-end graph with class-aware NMS: outputs num_dets, det_boxes, det_scores, det_classes")
    p.add_argument("--max-det", type=int, default=100, help="--nms: detections per image (default 100)")
    p.add_argument("--conf", type=float, default=0.25, help="--nms: score threshold (default 0.25)")
    p.add_argument("--iou", type=float, default=0.45, help="--nms: IoU threshold (default 0.45)")
    p.add_argument("--multi-label", action="store_true",
                   help="--nms: keep every class above --conf per anchor (default: the best class only)")
    p.add_argument("--int8", action="store_true",
                   help="INT8 post-training quantization (onnx, openvino; see `repyolo quantize` for more control)")
    p.add_argument("--data", default=None, help="--int8: data YAML whose train images calibrate the ranges")
    p.add_argument("--calib", type=int, default=100, help="--int8: calibration images (default 100)")
    p.add_argument("--output", default=None,
                   help="output file (onnx, torchscript) or folder (openvino, ncnn); default beside the weights")


def run(args: argparse.Namespace) -> int:
    from repyolo.api import YOLO
    from repyolo.errors import RepyoloError
    from repyolo.export.onnx import DEFAULT_OPSET

    if args.img is not None and len(args.img) not in (1, 2):
        raise RepyoloError(f"--img takes one size or H W, got {args.img}")
    img = None if args.img is None else args.img[0] if len(args.img) == 1 else tuple(args.img)
    model = YOLO(args.weights)
    if args.int8:
        path = model.export(args.format, img=img, output=args.output, int8=True, data=args.data, calib=args.calib,
                            batch=args.batch, dynamic=args.dynamic, half=args.half, nms=args.nms)
    else:
        path = model.export(args.format, img=img, output=args.output, batch=args.batch, dynamic=args.dynamic,
                            half=args.half, opset=args.opset or DEFAULT_OPSET, simplify=args.simplify,
                            nms=args.nms, max_det=args.max_det, conf=args.conf, iou=args.iou,
                            multi_label=args.multi_label)
    print(path)
    return 0
