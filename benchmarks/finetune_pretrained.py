"""Fine-tuning YOLOv6-Lite-S from the released COCO weights vs training it from scratch (issue 14).

The released NCNN Lite-S (``../shared/weights/yolov6-lite``) is imported with
``repyolo import-weights`` (folded convolutions -> conv + identity BatchNorm); every run is a plain
``repyolo train`` on one data set with the same epochs, images, batch, image size and seeds:

- ``scratch``: ``--model yolov6lite-s`` with the model's published hyper-parameters (lr0 0.4, the
  official Lite recipe for training from scratch);
- ``pretrained``: ``--weights lite_s.pt`` (COCO weights; for BCCD the 80-class prediction conv is
  left at its initialisation, everything else transfers), ``lr0 0.01``: fine-tuning at the
  from-scratch LR wipes the pretrained function in the first epoch (measured: coco128 val mAP 0.306
  -> 0.001 after one epoch at lr0 0.4);
- two controls with one seed each: ``pretrained, identity BNs`` (``unfold_bn_images=0``: the
  imported identity BatchNorms are not given statistics first, so training-mode BN starts from a
  different function) and ``scratch, lr0 0.01`` (is the lower LR alone the difference?).

Data: BCCD (VOC -> YOLO, train 205 -> val 87 images, 3 classes) and coco128 (train 128 images ->
the real 128-image val2017 split, 80 classes). mAP is the trainer's final evaluation (EMA weights,
precise BN, YOLOv6 protocol: rect batches, conf 0.03, multi-label NMS 0.65). The imported model
before any training is evaluated too (coco128 only: BCCD's classes are new).

Runs go to ``--project`` (``DATASET_ROW_sSEED``); ``--jobs N`` trains N of them side by side, each
single-threaded (``--reuse`` reads finished runs back). Prints a markdown table and writes it to
``--out``. Wall times are indicative only: the machine is shared.

    python benchmarks/finetune_pretrained.py --epochs 8 --jobs 2 --project /tmp/finetune_runs
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATASETS = Path(os.environ.get("REPYOLO_SHARED_DATASETS", SHARED / "datasets"))
WEIGHTS = Path(os.environ.get("REPYOLO_SHARED_WEIGHTS", SHARED / "weights")) / "yolov6-lite" / "yolov6-lite-s.param"


@dataclass(frozen=True)
class Row:
    """One way of training: a label, whether it starts from the COCO weights, hyper-parameter overrides."""

    key: str
    label: str
    pretrained: bool
    hyp: dict = field(default_factory=dict)
    control: bool = False  # trained with the first seed only


ROWS = (
    Row("scratch", "scratch (lr0 0.4, the Lite recipe)", False),
    Row("pretrained", "COCO-pretrained (lr0 0.01)", True, {"lr0": 0.01}),
    Row("pretrained_idbn", "COCO-pretrained, identity BNs kept (lr0 0.01)", True,
        {"lr0": 0.01, "unfold_bn_images": 0}, control=True),
    Row("scratch_lr001", "scratch (lr0 0.01)", False, {"lr0": 0.01}, control=True),
)


def prepare(work: Path) -> dict[str, Path]:
    """The imported weights and the two data YAMLs, in ``work``."""
    from repyolo.data.coco import COCO_NAMES
    from repyolo.data.convert import voc_to_yolo

    if not WEIGHTS.is_file():
        sys.exit(f"finetune_pretrained: {WEIGHTS} not found (set REPYOLO_SHARED_WEIGHTS)")
    weights = work / "lite_s.pt"
    if not weights.is_file():
        subprocess.run([sys.executable, "-m", "repyolo.cli", "import-weights", str(WEIGHTS), "-o", str(weights)],
                       check=True, stdout=subprocess.DEVNULL)
    coco = work / "coco128.yaml"
    names = ", ".join(json.dumps(n) for n in COCO_NAMES)
    coco.write_text(f"path: {DATASETS / 'coco128'}\ntrain: images/train\nval: images/val\nnames: [{names}]\n")
    bccd = voc_to_yolo(DATASETS / "bccd", work / "bccd_yolo", splits=["train", "val"])
    return {"weights": weights, "bccd": bccd, "coco128": coco}


def train_command(row: Row, data: Path, seed: int, args, paths: dict) -> list[str]:
    cmd = [sys.executable, "-m", "repyolo.cli", "train", "--model", "yolov6lite-s", "--data", str(data),
           "--epochs", str(args.epochs), "--img", str(args.img), "--batch", str(args.batch), "--seed", str(seed),
           "--workers", str(args.workers), "--threads", "1", "--eval-interval", str(args.epochs),
           "--project", str(args.project), "--name", run_name(row, data, seed), "--exist-ok"]
    if row.pretrained:
        cmd += ["--weights", str(paths["weights"])]
    if row.hyp:
        cmd += ["--set", *[f"{k}={v}" for k, v in row.hyp.items()]]
    return cmd


def run_name(row: Row, data: Path, seed: int) -> str:
    return f"{'coco128' if 'coco' in data.name else 'bccd'}_{row.key}_s{seed}"


def run(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` single-threaded with its output in ``log``; returns the wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
    return time.time() - t0


def evaluate_imported(paths: dict, args) -> dict:
    """coco128 val mAP of the imported weights before any training (YOLOv6 protocol)."""
    out = Path(args.project) / "coco128_imported.json"
    if not (args.reuse and out.is_file()):
        run([sys.executable, "-m", "repyolo.cli", "val", "--weights", str(paths["weights"]), "--data",
             str(paths["coco128"]), "--img", str(args.img), "--batch", str(args.batch), "--workers", "1",
             "--json", str(out)], Path(args.project) / "coco128_imported.log")
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--img", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--datasets", nargs="+", default=["bccd", "coco128"], choices=["bccd", "coco128"])
    ap.add_argument("--rows", nargs="+", default=[r.key for r in ROWS], choices=[r.key for r in ROWS])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side, one thread each")
    ap.add_argument("--project", default=str(Path(tempfile.gettempdir()) / "finetune_runs"))
    ap.add_argument("--reuse", action="store_true", help="read finished runs instead of training them again")
    ap.add_argument("--out", default=None, help="also write the markdown here")
    args = ap.parse_args()
    project = Path(args.project)
    project.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    paths = prepare(project)
    plan = [(row, paths[ds], seed) for ds in args.datasets for row in ROWS if row.key in args.rows
            for seed in (args.seeds[:1] if row.control else args.seeds)]

    def one(item) -> dict:
        row, data, seed = item
        name = run_name(row, data, seed)
        metrics = project / name / "metrics.json"
        wall = None
        if not (args.reuse and metrics.is_file()):
            print(f"start {name}", flush=True)
            wall = run(train_command(row, data, seed, args, paths), project / f"{name}.log")
            print(f"done {name} in {wall / 60:.1f} min", flush=True)
        m = json.loads(metrics.read_text())
        return {"dataset": name.split("_")[0], "row": row.key, "seed": seed, "map": m["map"], "map50": m["map50"],
                "train_s": m.get("train_time_s"), "wall_s": wall}

    with ThreadPoolExecutor(max(args.jobs, 1)) as pool:
        imported = pool.submit(evaluate_imported, paths, args) if "coco128" in args.datasets else None
        results = list(pool.map(one, plan))
    text = report(results, imported.result() if imported else None, args, time.time() - t_start)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


def _mean(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.1f}"


def report(results: list[dict], imported: dict | None, args, wall: float) -> str:
    seeds = ", ".join(map(str, args.seeds))
    lines = [f"Lite-S, {args.epochs} epochs, {args.img} px, batch {args.batch}, seeds {seeds} (controls: seed "
             f"{args.seeds[0]}); mAP of the final EMA weights on the val split, YOLOv6 protocol; train minutes per "
             f"run from the trainer ({args.jobs} single-threaded runs side by side on a shared 2-core CPU: "
             f"indicative only).", "",
             "| data | start | mAP@0.5:0.95 (%) | mAP@0.5 (%) | per seed mAP | train min / run |",
             "|---|---|---:|---:|---|---:|"]
    for ds in args.datasets:
        if ds == "coco128" and imported is not None:
            lines.append(f"| coco128 | imported COCO weights, no training | {100 * imported['map']:.1f} | "
                         f"{100 * imported['map50']:.1f} | | 0 |")
        for row in ROWS:
            rs = [r for r in results if r["dataset"] == ds and r["row"] == row.key]
            if not rs:
                continue
            per_seed = ", ".join(f"{100 * r['map']:.1f}" for r in rs)
            minutes = statistics.mean((r["train_s"] or 0) / 60 for r in rs)
            lines.append(f"| {ds} | {row.label} | {_mean([r['map'] for r in rs])} | {_mean([r['map50'] for r in rs])}"
                         f" | {per_seed} | {minutes:.1f} |")
    lines += ["", f"Wall time of the whole benchmark: {wall / 60:.1f} min.", "", "Command:", "",
              f"    python benchmarks/finetune_pretrained.py --epochs {args.epochs} --img {args.img} --batch "
              f"{args.batch} --seeds {' '.join(map(str, args.seeds))} --jobs {args.jobs} --project {args.project}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
