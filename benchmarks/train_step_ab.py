"""Training step, old tree vs new tree, interleaved in one run (issue 17, target 1).

Command (BENCHMARKS.md):
    python benchmarks/train_step_ab.py --old ../base41 --configs 320x8 640x4 --steps 8 --rounds 6 --threads 2

Both sides build their own ``Trainer`` (yolov6n, recipe and loss of that tree) on the same
synthetic data, then repeatedly run ``Trainer._train_epoch`` over one fixed batch (saved once and
loaded by both, so data loading is out of the measurement): forward, TAL assignment,
VFL/SIoU/DFL loss, backward, gradient clipping, SGD, EMA, exactly as each tree's training loop
does it. A round = ``--steps`` steps on A, then on B (the order alternates each round); the first
round is a warm-up and is dropped. Reported: ms per step (wall and process CPU), medians, the
ratio old / new of medians and the median of per-round ratios.

``--check-loss N`` also runs N single steps from the same seed on both sides and prints the two
loss curves (cls / iou / dfl) and their largest relative difference: the speed levers must not
change the numerics beyond float rounding.

``--new-args`` passes training settings to the new side only (e.g. ``compile=true``), to measure
one lever at a time; ``--old-env`` / ``--new-env`` add environment variables to one side (e.g.
``{"OMP_WAIT_POLICY": "PASSIVE"}``, with ``--old`` and ``--new`` the same tree); ``--load N`` runs
``N`` competing CPU-bound processes during the measurement (a busy machine).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from abtest import REPO, Worker, default_old_tree, load_average, serve, start_load, stop_load, summary  # noqa: E402

# ----------------------------------------------------------------------------------------------- worker side


class _FixedLoader:
    """Stands in for the DataLoader: the same batch ``n`` times (no sampler, no data set)."""

    sampler = None
    dataset = None

    def __init__(self, batch, n: int):
        self.batch, self.n = batch, n

    def __iter__(self):
        return iter([self.batch] * self.n)

    def __len__(self) -> int:
        return self.n


def worker(opts: argparse.Namespace) -> None:
    import dataclasses

    import torch

    from repyolo.engine.trainer import TrainArgs, Trainer

    torch.set_num_threads(opts.threads)
    batch = torch.load(opts.batch_file, weights_only=False)
    names = {f.name for f in dataclasses.fields(TrainArgs)}
    kw = dict(model=opts.model, data=opts.data, epochs=1000, img=opts.img, batch=batch[0].shape[0], workers=0,
              project=opts.project, name=opts.name, exist_ok=True, no_val=True, seed=0)
    if "threads" in names:
        kw["threads"] = opts.threads
    extra = json.loads(opts.extra or "{}")
    kw.update({k: v for k, v in extra.items() if k in names})
    hyp = {k: v for k, v in extra.items() if k not in names}
    if hyp:
        kw["hyp"] = hyp
    trainer = Trainer(TrainArgs(**kw))
    if not hasattr(trainer, "model"):  # the old tree builds inside train()
        trainer._build()
    epoch = [1]

    def handle(cmd: dict) -> dict:
        n = int(cmd["steps"])
        trainer.train_loader = _FixedLoader(batch, n)
        trainer.nb = n
        t0, c0 = time.perf_counter(), time.process_time()
        losses = trainer._train_epoch(epoch[0])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        epoch[0] += 1
        return {"wall_ms": wall * 1e3 / n, "cpu_ms": cpu * 1e3 / n, "loss": [float(v) for v in losses]}

    serve(handle)


# ----------------------------------------------------------------------------------------------- parent side


def make_batch(tmp: Path, img: int, bs: int) -> tuple[str, str]:
    """A synthetic data YAML and one fixed, collated batch of ``bs`` images at ``img`` px."""
    import torch

    from repyolo.data.dataset import DetectionDataset
    from repyolo.data.loader import collate_fn
    from repyolo.data.synthetic import generate_synthetic

    data = generate_synthetic(tmp / f"syn{img}", n_train=max(bs, 8), n_val=2, img_size=img, seed=0)
    ds = DetectionDataset(str(tmp / f"syn{img}" / "images" / "train"), img_size=img, augment=False,
                          label_cache=False)
    batch = collate_fn([ds[i] for i in range(bs)])
    path = tmp / f"batch{img}x{bs}.pt"
    torch.save(batch, path)
    return str(data), str(path)


def run_config(args, img: int, bs: int, tmp: Path) -> dict:
    data, batch_file = make_batch(tmp, img, bs)
    script = str(Path(__file__).resolve())
    common = ["--worker", "--img", str(img), "--data", data, "--batch-file", batch_file, "--model", args.model,
              "--threads", str(args.threads), "--project", str(tmp)]
    old = Worker("old", args.old, [script, *common, "--name", f"old{img}"], args.threads, cwd=str(tmp),
                 log=str(tmp / f"old{img}.log"), env=json.loads(args.old_env or "{}"))
    new = Worker("new", args.new, [script, *common, "--name", f"new{img}", "--extra", args.new_args or "{}"],
                 args.threads, cwd=str(tmp), log=str(tmp / f"new{img}.log"), env=json.loads(args.new_env or "{}"))
    load = start_load(args.load)
    try:
        res = {"old": {"wall": [], "cpu": []}, "new": {"wall": [], "cpu": []}}
        for r in range(args.rounds + 1):
            order = (("old", old), ("new", new)) if r % 2 == 0 else (("new", new), ("old", old))
            for name, w in order:
                out = w.ask({"steps": args.steps})
                if r:  # round 0 warms up allocators and caches (and pays a compile when asked for)
                    res[name]["wall"].append(out["wall_ms"])
                    res[name]["cpu"].append(out["cpu_ms"])
            if args.verbose and r:
                old_ms, new_ms = res["old"]["wall"][-1], res["new"]["wall"][-1]
                print(f"  {img}x{bs} round {r}: old {old_ms:.0f} ms, new {new_ms:.0f} ms", file=sys.stderr)
        curves = None
        if args.check_loss:
            # fresh workers: both start from the same seed, one step per call
            old.close()
            new.close()
            old = Worker("old", args.old, [script, *common, "--name", f"oldl{img}"], args.threads, cwd=str(tmp))
            new = Worker("new", args.new, [script, *common, "--name", f"newl{img}", "--extra",
                                           args.new_args or "{}"], args.threads, cwd=str(tmp))
            curves = {"old": [old.ask({"steps": 1})["loss"] for _ in range(args.check_loss)],
                      "new": [new.ask({"steps": 1})["loss"] for _ in range(args.check_loss)]}
        return {"img": img, "batch": bs, "wall": summary(res["old"]["wall"], res["new"]["wall"]),
                "cpu": summary(res["old"]["cpu"], res["new"]["cpu"]), "curves": curves}
    finally:
        stop_load(load)
        old.close()
        new.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--batch-file", help=argparse.SUPPRESS)
    ap.add_argument("--img", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--project", help=argparse.SUPPRESS)
    ap.add_argument("--name", help=argparse.SUPPRESS)
    ap.add_argument("--extra", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--old", type=Path, default=default_old_tree(), help="baseline tree (default ../base41)")
    ap.add_argument("--new", type=Path, default=REPO, help="tree under test (default: this one)")
    ap.add_argument("--model", default="yolov6n")
    ap.add_argument("--configs", nargs="+", default=["320x8", "640x4"], help="IMGxBATCH")
    ap.add_argument("--steps", type=int, default=6, help="steps per round and side")
    ap.add_argument("--rounds", type=int, default=6, help="timed rounds (after one warm-up round)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check-loss", type=int, default=0, metavar="N", help="also compare N-step loss curves")
    ap.add_argument("--new-args", default="", help="JSON of TrainArgs / hyp settings for the new side only")
    ap.add_argument("--old-env", default="", help="JSON of environment variables for the old side")
    ap.add_argument("--new-env", default="", help="JSON of environment variables for the new side")
    ap.add_argument("--load", type=int, default=0, help="competing CPU-bound processes during the timing")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"old {args.old} {args.old_env} vs new {args.new} {args.new_env} {args.new_args}; {args.model}, "
          f"{args.threads} threads, {args.steps} steps x {args.rounds} rounds interleaved, {args.load} competing "
          f"processes; load average before: {load_average()}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in args.configs:
            img, bs = (int(v) for v in cfg.lower().split("x"))
            results.append(run_config(args, img, bs, Path(tmp)))
    print("| img | batch | old ms/step (wall) | new ms/step (wall) | speed-up (median of round ratios) | "
          "old CPU ms | new CPU ms | CPU speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        w, c = r["wall"], r["cpu"]
        print(f"| {r['img']} | {r['batch']} | {w['a']:.0f} | {w['b']:.0f} | {w['median_pair_ratio']:.2f}x "
              f"({w['ratio_of_medians']:.2f}x of medians) | {c['a']:.0f} | {c['b']:.0f} | "
              f"{c['median_pair_ratio']:.2f}x |")
    for r in results:
        if r["curves"]:
            old, new = r["curves"]["old"], r["curves"]["new"]
            rel = max(abs(a - b) / max(abs(a), 1e-9) for x, y in zip(old, new) for a, b in zip(x, y))
            print(f"loss curve {r['img']}x{r['batch']} ({len(old)} steps, cls/iou/dfl), largest relative "
                  f"difference {rel:.2e}")
            for i, (x, y) in enumerate(zip(old, new)):
                print(f"  step {i + 1}: old {' '.join(f'{v:.5f}' for v in x)} | new {' '.join(f'{v:.5f}' for v in y)}")
    print(f"load average after: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
