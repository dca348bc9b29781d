"""``repyolo quantize``: INT8 models for CPU deployment (QDQ ONNX, runs in onnxruntime and OpenVINO).

    repyolo quantize ptq --weights W --data DATA [--calib N] [--calibrator minmax|percentile|entropy]
                         [--img S] [--output PATH] [--exclude NODES...] [--per-tensor]
                         [--skip-sensitive K | --map-budget 0.01]
    repyolo quantize sensitivity --weights W --data DATA [--calib N] [--eval-images M] [--json OUT]
    repyolo quantize qat --weights W --data DATA --epochs E [--img S] [--batch B]

``ptq`` calibrates on N train images and writes ``W_int8.onnx``; with ``--skip-sensitive`` /
``--map-budget`` the most quantization-sensitive convs stay FP32 (partial quantization).
``sensitivity`` quantizes one conv at a time and ranks them by mAP drop, MSE, SNR and cosine
similarity. ``qat`` fine-tunes the fused model with fake quantization and CWD distillation from
its FP32 self, then writes ``W_qat_int8.onnx``. ``repyolo val --weights W_int8.onnx`` evaluates them.
"""
from __future__ import annotations

import argparse
import json


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="repyolo checkpoint (.pt), or an FP32 repyolo .onnx export")
    p.add_argument("--data", required=True, help="data YAML (calibration images from its train split)")
    p.add_argument("--img", type=int, default=None,
                   help="static input size of the INT8 model (default: the checkpoint's training size, else 640)")
    p.add_argument("--calib", type=int, default=100, help="calibration images (default 100)")
    p.add_argument("--calibrator", default="minmax", choices=("minmax", "percentile", "entropy"),
                   help="activation range estimator (default minmax)")
    p.add_argument("--activations", default="uint8", choices=("uint8", "int8"),
                   help="activation type (default uint8: the fast U8S8 kernels of onnxruntime on x86)")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default per channel)")
    p.add_argument("--keep-preds-fp32", action="store_true",
                   help="keep the head's final 1x1 prediction convs in FP32 (the box decoding always is)")
    p.add_argument("--threads", type=int, default=None,
                   help="onnxruntime threads of the evaluation runs (qat: also torch threads)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image subsets")


def _outputs(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--output", default=None, help=f"INT8 .onnx path (default: {default} beside the weights)")
    p.add_argument("--openvino", action="store_true",
                   help="also write an OpenVINO IR folder of the INT8 model (<output>_openvino_model)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="quant_mode", metavar="MODE", required=True)
    ptq = sub.add_parser("ptq", help="post-training quantization (full or partial)",
                         description="post-training quantization to an INT8 QDQ ONNX model")
    _common(ptq)
    _outputs(ptq, "W_int8.onnx")
    ptq.add_argument("--exclude", nargs="+", default=[], metavar="NODE", help="ONNX node names to keep in FP32")
    part = ptq.add_mutually_exclusive_group()
    part.add_argument("--skip-sensitive", type=int, default=0, metavar="K",
                      help="keep the K most quantization-sensitive convs in FP32")
    part.add_argument("--map-budget", type=float, default=None, metavar="B",
                      help="keep the fewest most-sensitive convs in FP32 so that the mAP@0.5:0.95 drop is <= B "
                           "(a fraction, e.g. 0.01 = 1 point) on --eval-images val images")
    ptq.add_argument("--rank-by", default="mse", choices=("mse", "snr", "cosine", "map"),
                     help="sensitivity metric ordering the convs (default mse)")
    ptq.add_argument("--sensitivity", default=None, metavar="JSON",
                     help="take the ranking from a `repyolo quantize sensitivity --json` report")
    ptq.add_argument("--eval-images", type=int, default=100, help="val images of the --map-budget search")
    ptq.add_argument("--keep-fp32", action="store_true", help="also keep the FP32 ONNX export (*_fp32.onnx)")

    sens = sub.add_parser("sensitivity", help="rank convs by the damage of quantizing each alone",
                          description="per-layer quantization sensitivity (mAP drop, MSE, SNR, cosine)")
    _common(sens)
    sens.add_argument("--eval-images", type=int, default=50, help="val images for the mAP metric (0: skip it)")
    sens.add_argument("--metric-images", type=int, default=32,
                      help="calibration images for the MSE / SNR / cosine metrics (default 32)")
    sens.add_argument("--layers", nargs="+", default=None, metavar="NODE",
                      help="score only these conv nodes (default: every conv)")
    sens.add_argument("--top", type=int, default=None, help="print only the N most sensitive layers")
    sens.add_argument("--json", default=None, help="write the report (scores and rankings) to this JSON file")

    qat = sub.add_parser("qat", help="quantization-aware training with CWD self-distillation",
                         description="quantization-aware fine-tuning of the fused model, exported to INT8 QDQ ONNX")
    _common(qat)
    qat.add_argument("--epochs", type=int, required=True, help="fine-tuning epochs")
    qat.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    qat.add_argument("--lr", type=float, default=1e-4, help="initial learning rate (SGD, cosine decay)")
    qat.add_argument("--cwd-weight", type=float, default=1.0, help="weight of the channel-wise distillation loss")
    qat.add_argument("--cwd-tau", type=float, default=1.0, help="CWD temperature")
    qat.add_argument("--augment", default="light", choices=("light", "none"),
                     help="training augmentation (light: flip + small HSV / scale jitter, no mosaic)")
    qat.add_argument("--train-images", type=int, default=None, help="use only N training images per epoch")
    qat.add_argument("--workers", type=int, default=2, help="data loader workers")
    qat.add_argument("--exclude", nargs="+", default=[], metavar="NODE", help="ONNX conv names to keep in FP32")
    _outputs(qat, "W_qat_int8.onnx")
    qat.add_argument("--save-pt", action="store_true", help="also save the fine-tuned fused FP32 weights")


def run(args: argparse.Namespace) -> int:
    from repyolo.data.config import load_data_config
    from repyolo.quant.qdq import default_img_size, default_output
    from repyolo.utils.paths import check_output_path

    # unwritable outputs fail now, before calibration or training
    if args.quant_mode != "sensitivity":
        check_output_path(args.output or default_output(args.weights, "_int8" if args.quant_mode == "ptq"
                                                        else "_qat_int8"))
    if getattr(args, "json", None):
        check_output_path(args.json)
    load_data_config(args.data)  # a wrong --data fails before the FP32 export and calibration
    if args.img is None:
        args.img = default_img_size(args.weights)
    mode = args.quant_mode
    if mode == "ptq":
        return _run_ptq(args)
    if mode == "sensitivity":
        return _run_sensitivity(args)
    return _run_qat(args)


def _run_ptq(args) -> int:
    from repyolo.quant.ptq import quantize_ptq

    res = quantize_ptq(args.weights, args.data, calib=args.calib, calibrator=args.calibrator, img_size=args.img,
                       output=args.output, exclude=args.exclude, per_channel=not args.per_tensor,
                       activation_type=args.activations, quantize_preds=not args.keep_preds_fp32,
                       skip_sensitive=args.skip_sensitive, map_budget=args.map_budget, rank_by=args.rank_by,
                       sensitivity=args.sensitivity, eval_images=args.eval_images, keep_fp32=args.keep_fp32,
                       openvino=args.openvino, threads=args.threads, seed=args.seed)
    if res.search:
        print(f"{'FP32 convs':>10} {'mAP':>8} {'drop (pts)':>10}")
        for row in res.search:
            k = "FP32" if row["k"] < 0 else str(row["k"])
            print(f"{k:>10} {row['map']:>8.4f} {row['drop'] * 100:>10.2f}")
    if res.fp32_convs:
        print(f"FP32 convs ({len(res.fp32_convs)}): {', '.join(res.fp32_convs)}")
    if res.openvino:
        print(res.openvino)
    print(res.path)
    return 0


def _run_sensitivity(args) -> int:
    from repyolo.quant.sensitivity import sensitivity_analysis

    report = sensitivity_analysis(args.weights, args.data, calib=args.calib, calibrator=args.calibrator,
                                  img_size=args.img, eval_images=args.eval_images, metric_images=args.metric_images,
                                  json_out=args.json, layers=args.layers, activation_type=args.activations,
                                  per_channel=not args.per_tensor, quantize_preds=not args.keep_preds_fp32,
                                  threads=args.threads, seed=args.seed)
    print(report.table(top=args.top))
    for metric in report.metrics():
        print(f"most sensitive by {metric}: {', '.join(report.ranking(metric)[:5])}")
    if args.json:
        print(args.json)
    return 0


def _run_qat(args) -> int:
    import torch

    from repyolo.quant.qat import quantize_qat

    if args.threads:
        torch.set_num_threads(args.threads)
    res = quantize_qat(args.weights, args.data, epochs=args.epochs, img_size=args.img, batch=args.batch, lr=args.lr,
                       cwd_weight=args.cwd_weight, cwd_tau=args.cwd_tau, calib=args.calib, calibrator=args.calibrator,
                       activation_type=args.activations, quantize_preds=not args.keep_preds_fp32,
                       exclude=args.exclude, workers=args.workers, augment=args.augment,
                       train_images=args.train_images, output=args.output, save_pt=args.save_pt,
                       openvino=args.openvino, seed=args.seed)
    for row in res.history:
        print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}))
    if res.checkpoint:
        print(res.checkpoint)
    if res.openvino:
        print(res.openvino)
    print(res.path)
    return 0
