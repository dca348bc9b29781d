"""``repyolo demo``: the main job end to end on the bundled synthetic data set.

Generates the synthetic shapes set, trains a small YOLOv6 on the CPU, evaluates it with COCO
mAP, draws its predictions on validation images, exports ONNX, then prints where everything
is (and writes it to ``PROJECT/demo.json``). Runs on :class:`repyolo.api.YOLO`.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", default="runs/demo", help="output folder")
    p.add_argument("--data-dir", default=None, help="where to write the synthetic set (default: PROJECT/data)")
    p.add_argument("--model", default="yolov6-tiny", help="model to train (yolov6-tiny: yolov6n topology at 1/8 width)")
    p.add_argument("--epochs", type=int, default=45, help="training epochs")
    p.add_argument("--img", type=int, default=192, help="image size of the synthetic set and of training")
    p.add_argument("--batch", type=int, default=16, help="batch size")
    p.add_argument("--n-train", type=int, default=400, help="synthetic training images")
    p.add_argument("--n-val", type=int, default=100, help="synthetic validation images")
    p.add_argument("--optimizer", default="AdamW", choices=("SGD", "AdamW"),
                   help="optimizer (AdamW learns the synthetic set ~2x faster than SGD)")
    p.add_argument("--lr0", type=float, default=0.012,
                   help="initial learning rate at batch 32 (the training recipe scales it to the batch)")
    p.add_argument("--workers", type=int, default=2, help="data loader workers")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the thread policy)")
    p.add_argument("--device", default="cpu", help="cpu, 0 (CUDA device) or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic set and of training")
    p.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    p.add_argument("--fp32", action="store_true",
                   help="train in float32 (default: mixed precision, i.e. bfloat16 autocast where the CPU has "
                        "it natively, ~1.8x faster)")


def run(args: argparse.Namespace) -> int:
    from repyolo.api import YOLO
    from repyolo.data.config import load_data_config
    from repyolo.data.io import is_image_file
    from repyolo.data.synthetic import generate_synthetic
    from repyolo.utils.paths import check_output_dir

    t0 = time.time()
    project = Path(args.project)
    data_dir = Path(args.data_dir) if args.data_dir else project / "data"
    check_output_dir(project)
    check_output_dir(data_dir)
    LOGGER.info("1/4 synthetic data set -> %s", data_dir)
    data_yaml = generate_synthetic(data_dir, n_train=args.n_train, n_val=args.n_val, img_size=args.img,
                                   seed=args.seed)
    LOGGER.info("2/4 training %s for %d epochs at %d px", args.model, args.epochs, args.img)
    model = YOLO(args.model, device=args.device)
    # measured (BENCHMARKS.md): without mosaic the tiny model learns the set ~2x faster, and AdamW
    # at lr0 0.012 reaches in 40 epochs what SGD (lr0 0.04) reached in 90
    summary = model.train(data=str(data_yaml), epochs=args.epochs, img=args.img, batch=args.batch,
                          optimizer=args.optimizer, lr0=args.lr0,
                          project=str(project), name="train", exist_ok=True, workers=args.workers,
                          threads=args.threads, seed=args.seed, mosaic=0.0, amp=not args.fp32,
                          # two evaluations (half-way, to show progress, and the end): model selection
                          # needs no more on this set, whose mAP rises to the last epoch
                          eval_interval=max(args.epochs // 2, 1))
    train_dir = model.save_dir

    LOGGER.info("3/4 predictions on validation images")
    val_images = sorted(p for src in load_data_config(data_yaml).val for p in Path(src).rglob("*")
                        if is_image_file(p))[:6]
    model.predict([str(p) for p in val_images], save=True, project=project, name="predict", exist_ok=True)
    pred_dir = model.save_dir
    onnx_path = None
    if not args.no_export:
        LOGGER.info("4/4 ONNX export")
        onnx_path = model.export("onnx", output=project / "model.onnx")
    report = {"data": str(data_yaml), "weights": str(model.source), "train_dir": str(train_dir),
              "predictions": str(pred_dir), "onnx": str(onnx_path) if onnx_path else None,
              "map50": summary.get("map50"), "map": summary.get("map"), "wall_time_s": round(time.time() - t0, 1)}
    (project / "demo.json").write_text(json.dumps(report, indent=2))
    print(f"demo finished in {report['wall_time_s']:.0f} s")
    print(f"  synthetic val mAP@0.5 {report['map50']:.3f}  mAP@0.5:0.95 {report['map']:.3f}")
    for key in ("data", "weights", "train_dir", "predictions", "onnx"):
        print(f"  {key:12s} {report[key]}")
    return 0
