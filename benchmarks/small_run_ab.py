"""Whole small-data training runs, old tree vs new tree, interleaved (issue 17, target 6).

Command (BENCHMARKS.md; ~2-3 h on a quiet 2-core machine with the defaults):
    python benchmarks/small_run_ab.py --old ../base41 --seeds 0 1

Each run is the full command with each tree's defaults (yolov6n, recipe auto, evaluation
schedule and precise BN of that tree)::

    repyolo train --data DATA --img 320 --batch 16 --epochs 80 --seed S --project TMP --exist-ok

on ``--data`` (default: a synthetic set of 160 train / 40 val images at 320 px made once).
Runs go old, new for seed 0, then new, old for seed 1 (A B B A ...), so drift in the machine's
speed hits both sides alike. Reported per run: wall time, best-epoch mAP@0.5 and mAP@0.5:0.95
(``metrics.json``) and, for the new tree, the mean seconds per epoch of training, precise BN and
validation (``results.csv`` columns ``time/*``). Target: new wall <= 0.6x old at the same final
mAP (within the seed-to-seed spread shown).
"""
from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from abtest import REPO, default_old_tree, load_average, run_repyolo, tree_env  # noqa: E402


def run(tree: Path, data: str, project: Path, name: str, seed: int, args) -> dict:
    cmd = [sys.executable, "-m", "repyolo.cli", "train", "--data", data, "--img", str(args.img), "--batch",
           str(args.batch), "--epochs", str(args.epochs), "--seed", str(seed), "--project", str(project), "--name",
           name, "--exist-ok", *shlex.split(args.extra)]
    env = tree_env(tree)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("REPYOLO_THREADS", None)
    t0 = time.perf_counter()
    proc = run_repyolo(tree, cmd[3:], env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: train failed:\n{proc.stderr[-3000:]}")
    run_dir = project / name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = list(csv.DictReader((run_dir / "results.csv").open()))
    split = {}
    for key in ("time/train_s", "time/precise_bn_s", "time/val_s"):
        vals = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
        if vals:
            split[key.split("/")[1][:-2]] = sum(vals) / len(rows)
    return {"wall": wall, "map50": metrics.get("map50"), "map": metrics.get("map"),
            "best_epoch": metrics.get("best_epoch"), "split": split, "evals": sum(1 for r in rows if r.get("val/map"))}


def side_seed(text: str) -> tuple[str, int]:
    """``old:0`` -> ``("old", 0)`` (an argparse type)."""
    side, _, seed = text.partition(":")
    if side not in ("old", "new") or not seed.isdigit():
        raise argparse.ArgumentTypeError(f"expected old:SEED or new:SEED, got {text!r}")
    return side, int(seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, default=default_old_tree())
    ap.add_argument("--new", type=Path, default=REPO)
    ap.add_argument("--data", default=None, help="data YAML (default: synthetic 160 train / 40 val)")
    ap.add_argument("--n-train", type=int, default=160)
    ap.add_argument("--n-val", type=int, default=40)
    ap.add_argument("--img", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--extra", default="", help="more train options for both trees (one string)")
    ap.add_argument("--project", default=None, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--skip", nargs="+", type=side_seed, default=[], metavar="SIDE:SEED",
                    help="runs not to repeat, e.g. old:0 (one already measured on the same machine; say so)")
    args = ap.parse_args()
    skip = set(args.skip)
    args.old, args.new = args.old.resolve(), args.new.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(args.project).resolve() if args.project else Path(tmp)
        data = str(Path(args.data).resolve()) if args.data else None
        if data is None:
            from repyolo.data.synthetic import generate_synthetic

            data = str(generate_synthetic(project / "data", n_train=args.n_train, n_val=args.n_val,
                                          img_size=args.img, seed=0))
        print(f"old {args.old} vs new {args.new}: {data}, {args.epochs} epochs at {args.img} px, batch "
              f"{args.batch}, seeds {args.seeds}; load average before: {load_average()}")
        results = {}
        for k, seed in enumerate(args.seeds):
            for side in (("old", "new") if k % 2 == 0 else ("new", "old")):
                if (side, seed) in skip:
                    continue
                tree = args.old if side == "old" else args.new
                results[(side, seed)] = r = run(tree, data, project, f"{side}_s{seed}", seed, args)
                print(f"  {side} seed {seed}: {r['wall']:.0f} s, mAP@0.5 {r['map50']:.4f}", file=sys.stderr)
        print("| tree | seed | wall s | s/epoch | train / precise-BN / val s per epoch | evaluations | best epoch | "
              "mAP@0.5 | mAP@0.5:0.95 |")
        print("|---|---|---|---|---|---|---|---|---|")
        for (side, seed), r in results.items():
            split = " / ".join(f"{r['split'][k]:.1f}" for k in ("train", "precise_bn", "val")) if r["split"] else "-"
            print(f"| {side} | {seed} | {r['wall']:.0f} | {r['wall'] / args.epochs:.1f} | {split} | {r['evals']} | "
                  f"{r['best_epoch']} | {r['map50']:.4f} | {r['map']:.4f} |")
        paired = [seed for seed in args.seeds if ("old", seed) in results and ("new", seed) in results]
        for seed in paired:
            print(f"seed {seed}: wall new / old {results[('new', seed)]['wall'] / results[('old', seed)]['wall']:.2f}")
        if paired:
            walls = {s: statistics.mean(results[(s, seed)]["wall"] for seed in paired) for s in ("old", "new")}
            maps = {s: [results[(s, seed)]["map"] for seed in paired] for s in ("old", "new")}
            print(f"mean wall new / old over seeds {paired}: {walls['new'] / walls['old']:.2f}; mAP@0.5:0.95 old "
                  f"{maps['old']} new {maps['new']}")
        print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
