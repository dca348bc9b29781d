"""A small ``repyolo train`` on a quiet and on a busy CPU, old tree vs new tree (issue 17, target 3).

Command (BENCHMARKS.md):
    python benchmarks/busy_train_ab.py --old ../base41 --rounds 2

For each load level (0, 1 and 2 competing CPU-bound processes, ``python -c "while True: pass"``,
started and stopped by this script) it runs the same small training command once per tree
(order alternating per round)::

    repyolo train --model yolov6n --data SYN --epochs 3 --img 160 --batch 8 --project TMP --exist-ok

on a synthetic set made once (128 train / 32 val images at 160 px), with each tree's own defaults
(loader workers 2; thread count: old = torch's default, new = the thread policy of
``repyolo.utils.threads``). Reported per tree: the median wall time at each load and its ratio to
the quiet time (targets: <= 2x with one competitor, <= 3x with two; old: 2.7x / 7.3x), and the
quiet new / old ratio (target: unchanged or faster).
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from abtest import REPO, default_old_tree, load_average, run_repyolo, start_load, stop_load, tree_env  # noqa: E402


def train_once(tree: Path, data: str, project: Path, name: str, args) -> float:
    cmd = [sys.executable, "-m", "repyolo.cli", "train", "--model", args.model, "--data", data, "--epochs",
           str(args.epochs), "--img", str(args.img), "--batch", str(args.batch), "--project", str(project),
           "--name", name, "--exist-ok", *shlex.split(args.extra)]
    env = tree_env(tree)
    env.pop("OMP_NUM_THREADS", None)  # each tree's own thread choice
    env.pop("REPYOLO_THREADS", None)
    t0 = time.perf_counter()
    proc = run_repyolo(tree, cmd[3:], env)
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: train failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, default=default_old_tree())
    ap.add_argument("--new", type=Path, default=REPO)
    ap.add_argument("--model", default="yolov6n")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--img", type=int, default=160)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n-train", type=int, default=128)
    ap.add_argument("--n-val", type=int, default=32)
    ap.add_argument("--loads", type=int, nargs="+", default=[0, 1, 2], help="competing processes per level")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--extra", default="", help="more train options for both trees (one string)")
    args = ap.parse_args()
    args.old, args.new = args.old.resolve(), args.new.resolve()
    from repyolo.data.synthetic import generate_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = str(generate_synthetic(tmp / "syn", n_train=args.n_train, n_val=args.n_val, img_size=args.img,
                                      seed=0))
        print(f"old {args.old} vs new {args.new}: {args.model}, {args.epochs} epochs, {args.n_train} images at "
              f"{args.img} px, batch {args.batch}; load average before: {load_average()}")
        times = {(side, n): [] for side in ("old", "new") for n in args.loads}
        for r in range(args.rounds):
            for n in args.loads:
                procs = start_load(n)
                try:
                    time.sleep(1.0)
                    for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
                        tree = args.old if side == "old" else args.new
                        t = train_once(tree, data, tmp / "runs", f"{side}{n}r{r}", args)
                        times[(side, n)].append(t)
                        print(f"  round {r}, {n} competing: {side} {t:.1f} s", file=sys.stderr)
                finally:
                    stop_load(procs)
        med = {k: statistics.median(v) for k, v in times.items()}
        quiet = args.loads[0]
        print("| tree | " + " | ".join(f"{n} competing: s (x quiet)" for n in args.loads) + " |")
        print("|---|" + "---|" * len(args.loads))
        for side in ("old", "new"):
            cells = [f"{med[(side, n)]:.1f} ({med[(side, n)] / med[(side, quiet)]:.2f}x)" for n in args.loads]
            print(f"| {side} | " + " | ".join(cells) + " |")
        print(f"quiet new / old: {med[('new', quiet)] / med[('old', quiet)]:.2f}; load average after: "
              f"{load_average()}")


if __name__ == "__main__":
    main()
