"""QARepVGG's point, measured: the PTQ INT8 mAP drop of ``yolov6n-qa`` vs the plain RepVGG ``yolov6n``.

The QARepVGG work (YOLOv6 v3 "qa" configs) reports that RepVGG networks lose 2-3 mAP points under
TensorRT post-training quantization (YOLOv6-N/S/M INT8 34.3 / 41.3 / 48.1 COCO mAP) while the same
networks trained with QARepVGG blocks lose ~0.7 (float 37.1 / 44.7 / 49.7, INT8 36.4 / 44.0 / 49.4). This
script trains both block types the same way with the normal trainer (same data, epochs, image size,
batch, seeds, hyper-parameters; only the config's ``block:`` differs) and quantizes each trained
model with the repository's PTQ (:mod:`repyolo.quant`, the path of ``repyolo quantize ptq``):

* FP32: the fused model exported to a static ONNX file, scored with onnxruntime;
* PTQ: INT8 weights per output channel (symmetric), UINT8 activations per tensor, MinMax
  calibration on ``--calib`` training images (the repository's default PTQ);
* PTQ per-tensor: the same, one weight scale per tensor (the setting where RepVGG's wide fused
  weight ranges hurt most).

Every model is scored on the val split at a fixed ``--img`` square (COCO mAP@0.5:0.95 and @0.5);
the drop is FP32 minus INT8 of the same trained model. Nothing is timed.

Command (BENCHMARKS.md "QARepVGG vs RepVGG under PTQ"; ~6 CPU-minutes per run):
    python benchmarks/qa_ptq.py --epochs 20 --img 320 --batch 8 --width 0.125 --seeds 0 1 --project /tmp/qa_ptq_runs

It also prints how well each fused model's conv weights survive INT8 rounding by themselves (SQNR per
tensor and per output channel), the mechanism the QARepVGG paper points at.

Data: BCCD (``--data-root``, Pascal VOC, 3 classes) converted to YOLO txt, train split 205
images, val split 87; ``--data`` takes a ready data YAML instead, ``--smoke`` a 16-image synthetic
set for one epoch. Finished runs stay in ``--project``; ``--reuse`` reads them instead of training
again, so several invocations (e.g. one per seed, side by side) can fill one table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = Path(os.environ.get("REPYOLO_SHARED_DATASETS", REPO.parent / "shared" / "datasets")) / "bccd"
VARIANTS = {"PTQ": {}, "PTQ per-tensor": {"per_channel": False}}


def model_yaml(name: str, folder: Path, width: float | None, depth: float | None) -> Path:
    """The bundled config ``name`` (optionally at another width / depth multiple) as a YAML file."""
    from repyolo.nn.model import load_model_config

    cfg = load_model_config(name)
    if width is not None:
        cfg["width_multiple"] = width
    if depth is not None:
        cfg["depth_multiple"] = depth
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def train_one(model_path: Path, seed: int, data: Path, args) -> Path:
    """Train (or, with ``--reuse``, find) one run; returns its ``best.pt``."""
    name = f"{model_path.stem}_s{seed}"
    weights = Path(args.project) / name / "weights" / "best.pt"
    if args.reuse and (weights.parent.parent / "metrics.json").is_file():
        return weights
    from repyolo.engine.trainer import TrainArgs, Trainer

    targs = TrainArgs(model=str(model_path), data=str(data), epochs=args.epochs, img=args.img, batch=args.batch,
                      device="cpu", project=str(args.project), name=name, exist_ok=True, workers=args.workers,
                      threads=args.threads, seed=seed, eval_interval=args.epochs,
                      hyp={"recipe": args.recipe})
    Trainer(targs).train()
    return weights


def evaluate(path: Path, data: Path, img: int) -> dict:
    """COCO mAP of an ONNX file on the val split at a fixed ``img`` square (onnxruntime)."""
    from repyolo.engine.evaluator import Evaluator

    res = Evaluator(data=str(data), img_size=img, batch_size=1, workers=0, plots=False, save_json=False)(str(path))
    return {"map": float(res["map"]), "map50": float(res["map50"])}


def quantize_one(weights: Path, data: Path, args) -> dict:
    """FP32 and INT8 scores of one trained model (cached in ``ptq.json`` beside the run)."""
    from repyolo.quant.qdq import PTQContext, QuantSettings, prepare

    cache = weights.parent.parent / f"ptq_{args.img}_{args.calib}.json"
    if args.reuse and cache.is_file():
        return json.loads(cache.read_text())
    out = weights.parent.parent / "ptq"
    out.mkdir(exist_ok=True)
    ctx = prepare(weights, str(data), QuantSettings(calib=args.calib), img_size=args.img, workdir=out)
    scores = {"FP32": evaluate(ctx.fp.path, data, args.img)}
    for label, change in VARIANTS.items():
        settings = QuantSettings(calib=args.calib, **change)
        variant = PTQContext(ctx.fp, ctx.images, settings, ranges=ctx.ranges)  # same calibration ranges
        path = variant.save(variant.build(), out / f"{label.replace(' ', '_').lower()}_int8.onnx")
        scores[label] = evaluate(path, data, args.img)
    cache.write_text(json.dumps(scores, indent=2))
    return scores


def weight_sqnr(weights: Path) -> dict:
    """How well the fused model's conv weights survive symmetric INT8 rounding: the median over its
    convs of the signal-to-quantization-noise ratio (dB) with one scale per tensor and one per output
    channel (the weights alone; activations are what the mAP columns add)."""
    import torch

    from repyolo.io.checkpoint import load_model

    def sqnr(w: torch.Tensor, dims) -> float:
        scale = w.abs().amax(dim=dims, keepdim=True).clamp(min=1e-12) / 127
        noise = w - (w / scale).round().clamp(-127, 127) * scale
        return float(10 * torch.log10(w.pow(2).sum() / noise.pow(2).sum().clamp(min=1e-20)))

    model = load_model(weights).fuse()
    convs = [m.weight.detach().double() for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return {"per_tensor_db": statistics.median(sqnr(w, (0, 1, 2, 3)) for w in convs),
            "per_channel_db": statistics.median(sqnr(w, (1, 2, 3)) for w in convs)}


def table(results: list[dict], models: list[str]) -> str:
    """Markdown: per model, FP32 mAP and each INT8 variant's mAP and drop (mean over seeds, then per seed)."""
    head = "| model | seeds | FP32 mAP@0.5:0.95 | " + " | ".join(f"{v} mAP / drop (pt)" for v in VARIANTS) + \
        " | FP32 mAP@0.5 | " + " | ".join(f"{v} mAP@0.5 drop (pt)" for v in VARIANTS) + " |"
    lines = [head, "|---" * (3 + 2 * len(VARIANTS) + 1) + "|"]
    for model in models:
        rows = [r for r in results if r["model"] == model]
        if not rows:
            continue
        seeds = ",".join(str(r["seed"]) for r in rows)

        def mean(key, sub="map", rows=rows):
            return statistics.mean(r["scores"][key][sub] for r in rows) * 100

        def drops(key, sub="map", rows=rows):
            """Mean FP32 - INT8 drop in points, then the per-seed drops."""
            d = [(r["scores"]["FP32"][sub] - r["scores"][key][sub]) * 100 for r in rows]
            return f"{statistics.mean(d):+.2f} ({', '.join(f'{x:+.2f}' for x in d)})"

        cells = [f"{mean(v):.1f} / {drops(v)}" for v in VARIANTS]
        cells50 = [drops(v, "map50") for v in VARIANTS]
        per_seed = ", ".join(f"{r['scores']['FP32']['map'] * 100:.1f}" for r in rows)
        fp = f"{mean('FP32'):.1f} ({per_seed})"
        lines.append(f"| {model} | {seeds} | {fp} | " + " | ".join(cells) + f" | {mean('FP32', 'map50'):.1f} | "
                     + " | ".join(cells50) + " |")
    lines += ["", "| model | fused conv weights, INT8 SQNR per tensor (dB, median over convs; per seed) | "
              "per output channel (dB) |", "|---|---|---|"]
    for model in models:
        rows = [r for r in results if r["model"] == model]
        if rows:
            lines.append(f"| {model} | " + ", ".join(f"{r['sqnr']['per_tensor_db']:.1f}" for r in rows) + " | "
                         + ", ".join(f"{r['sqnr']['per_channel_db']:.1f}" for r in rows) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["yolov6n", "yolov6n-qa"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--width", type=float, default=None, help="width multiple (default: the config's; "
                   "BENCHMARKS.md used 0.125)")
    p.add_argument("--depth", type=float, default=None, help="depth multiple (default: the config's)")
    p.add_argument("--recipe", default="auto")
    p.add_argument("--calib", type=int, default=100, help="calibration images (training split)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None, help="a data YAML (default: BCCD from --data-root)")
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    p.add_argument("--smoke", action="store_true", help="16 synthetic images, 1 epoch: checks the machinery")
    p.add_argument("--project", default=None, help="folder of the runs (default: a temp folder)")
    p.add_argument("--reuse", action="store_true", help="read finished runs / PTQ scores instead of redoing them")
    p.add_argument("--no-train", action="store_true", help="only report runs that exist (implies --reuse)")
    args = p.parse_args(argv)
    if args.smoke:
        args.epochs, args.img, args.calib = 1, 64, 8
    args.reuse = args.reuse or args.no_train

    import torch

    from repyolo.utils.logging import setup_logging

    setup_logging()
    torch.set_num_threads(args.threads)
    from ablation import prepare_data  # BCCD -> YOLO txt (or --data / --smoke), as the ablation does

    tmp = Path(tempfile.mkdtemp(prefix="qa_ptq_"))
    args.project = args.project or str(tmp / "runs")
    data = prepare_data(args, tmp)
    t0 = time.time()
    results = []
    for seed in args.seeds:
        for name in args.models:
            path = model_yaml(name, tmp, args.width, args.depth)
            weights = Path(args.project) / f"{name}_s{seed}" / "weights" / "best.pt"
            if args.no_train and not weights.is_file():
                continue
            t1 = time.time()
            weights = train_one(path, seed, data, args)
            scores = quantize_one(weights, data, args)
            results.append({"model": name, "seed": seed, "scores": scores, "sqnr": weight_sqnr(weights)})
            print(f"[{time.time() - t0:6.0f}s] {name} seed {seed}: " + ", ".join(
                f"{k} {v['map']:.4f}" for k, v in scores.items()) + f" ({time.time() - t1:.0f} s)", flush=True)
    size = "" if args.width is None else f", width {args.width}"
    size += "" if args.depth is None else f", depth {args.depth}"
    print(f"\n{args.epochs} epochs, {args.img} px, batch {args.batch}{size}, recipe {args.recipe}; "
          f"PTQ MinMax on {args.calib} training images; mAP on the val split at {args.img}x{args.img} (onnxruntime)\n")
    print(table(results, args.models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
