"""Does self-distillation help a small student? Baseline vs teacher vs distilled student on the synthetic set.

Command (recorded in the report / BENCHMARKS.md):
    python benchmarks/distill_experiment.py --epochs 12 --batch 8 --img 128 --n-train 128 --n-val 48

Three runs through the normal trainer (``repyolo.engine.trainer.Trainer``), same data, same seed:

1. baseline student: yolov6n topology at width ``--student-width`` (0.125), ``--epochs`` epochs;
2. teacher: by default *self*-distillation as in the paper (the teacher is the student's own
   architecture, pre-trained longer): the baseline's weights trained ``--teacher-epochs -
   --epochs`` more epochs (default: as many again, so 2x in total, for the cost of one more run).
   ``--teacher-width W`` trains a separate teacher of width W from scratch for ``--teacher-epochs``
   (e.g. 0.25 = yolov6n width);
3. distilled student: the baseline's architecture and budget (epochs, data, seed), with
   ``teacher=<teacher best.pt>, distill=True`` (the trainer adds the DLD branch, dropped at fuse).

Prints a markdown table of COCO mAP@0.5:0.95 / mAP@0.5 (validation split, final EMA weights'
best checkpoint), wall time and CPU time (this process, all threads; use ``--workers 0`` so data
loading is counted too) of each run, plus the deploy parameter counts. On a shared machine wall
times vary with the load; CPU times are the fairer cost comparison.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
import yaml


def model_yaml(path: Path, width: float, depth: float) -> Path:
    from repyolo.nn.model import load_model_config

    cfg = load_model_config("yolov6n")
    cfg.update(name=f"yolov6n-w{width}", width_multiple=width, depth_multiple=depth)
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(name: str, args, model: Path, data: Path, epochs: int, **extra) -> dict:
    from repyolo.engine.trainer import TrainArgs, Trainer

    targs = TrainArgs(model=str(model), data=str(data), epochs=epochs, img=args.img, batch=args.batch,
                      device="cpu", project=str(args.project), name=name, exist_ok=True, workers=args.workers,
                      seed=args.seed, eval_interval=epochs, hyp={"close_mosaic": max(epochs // 4, 1)}, **extra)
    t0, c0 = time.time(), time.process_time()
    trainer = Trainer(targs)
    summary = trainer.train()
    summary["wall_s"] = time.time() - t0
    summary["cpu_s"] = time.process_time() - c0
    summary["weights"] = str(trainer.wdir / "best.pt")
    print(f"[{name}] mAP {summary.get('map', float('nan')):.4f}  mAP50 {summary.get('map50', float('nan')):.4f}  "
          f"wall {summary['wall_s']:.0f} s  cpu {summary['cpu_s']:.0f} s", file=sys.stderr, flush=True)
    return summary


def deploy_params(weights: str) -> int:
    from repyolo.io.checkpoint import load_model
    from repyolo.utils.flops import count_params

    return count_params(load_model(weights).fuse())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=12, help="student budget (baseline and distilled)")
    ap.add_argument("--teacher-epochs", type=int, default=None, help="default: 2 x --epochs")
    ap.add_argument("--student-width", type=float, default=0.125)
    ap.add_argument("--teacher-width", type=float, default=None,
                    help="default: the student, trained on from the baseline")
    ap.add_argument("--depth", type=float, default=0.33)
    ap.add_argument("--img", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n-train", type=int, default=128)
    ap.add_argument("--n-val", type=int, default=48)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--project", type=Path, default=Path("runs/distill_experiment"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    teacher_epochs = args.teacher_epochs or 2 * args.epochs

    from repyolo.data.synthetic import generate_synthetic

    args.project.mkdir(parents=True, exist_ok=True)
    data = generate_synthetic(args.project / "data", n_train=args.n_train, n_val=args.n_val, img_size=args.img,
                              seed=args.seed)
    student_yaml = model_yaml(args.project / "student.yaml", args.student_width, args.depth)

    results = {}
    results["baseline student"] = run("baseline", args, student_yaml, data, args.epochs)
    if args.teacher_width is None:  # the baseline, trained on: the student pre-trained 2x longer
        results["teacher"] = run("teacher", args, student_yaml, data, teacher_epochs - args.epochs,
                                 weights=results["baseline student"]["weights"])
        for key in ("wall_s", "cpu_s"):
            results["teacher"][key] += results["baseline student"][key]
    else:
        teacher_yaml = model_yaml(args.project / "teacher.yaml", args.teacher_width, args.depth)
        results["teacher"] = run("teacher", args, teacher_yaml, data, teacher_epochs)
    results["distilled student"] = run("distilled", args, student_yaml, data, args.epochs,
                                       teacher=results["teacher"]["weights"], distill=True)
    widths = {"baseline student": args.student_width, "teacher": args.teacher_width or args.student_width,
              "distilled student": args.student_width}
    epochs = {"baseline student": args.epochs, "teacher": teacher_epochs, "distilled student": args.epochs}

    print(f"\ncommand: python {' '.join(shlex.quote(a) for a in sys.argv)}")
    print(f"synthetic set {args.n_train} train / {args.n_val} val images at {args.img} px, batch {args.batch}, "
          f"seed {args.seed}, {args.threads} threads, depth {args.depth}\n")
    print("(teacher times include the baseline run it continues from)\n" if args.teacher_width is None else "")
    print("| run | width | epochs | deploy params | mAP@0.5:0.95 | mAP@0.5 | wall time s | CPU time s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {widths[name]} | {epochs[name]} | {deploy_params(r['weights']):,} | "
              f"{r.get('map', float('nan')):.4f} | {r.get('map50', float('nan')):.4f} | "
              f"{r['wall_s']:.0f} | {r['cpu_s']:.0f} |")
    (args.project / "distill_results.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
