"""Label-assignment and classification-loss ablation (the YOLOv6 paper's comparison, small scale).

The YOLOv6 report compares label assigners (SimOTA, TAL, ATSS, ATSS warm-up then TAL) and
classification losses (VariFocal, Focal, Quality Focal, Poly) on YOLOv6-N before settling on
TAL + VFL. This script repeats that comparison on a real, small data set with the normal trainer
(``repyolo.engine.trainer.Trainer``): the same model (yolov6n topology at ``--width``), data,
seed, epochs, image size and batch for every row; only ``hyp['assigner']``,
``hyp['atss_warmup_epochs']`` or ``hyp['cls_loss']`` change. The default setting (TAL + VFL)
is trained with several seeds (``--seeds``) so the table shows how far two identical runs
land apart; a difference to the default smaller than that spread is reported as noise.

Command (the budget recorded in benchmarks/results/ablation.md; ~45 min on a loaded 2-core CPU):
    python benchmarks/ablation.py --epochs 20 --img 160 --batch 8 --width 0.125 --seeds 0 1 2 \
        --threads 1 --workers 1 --jobs 3 --atss-warmup 3 --project /tmp/ablation_runs

``--jobs N`` trains N runs side by side in child processes (single-threaded runs waste less time
than one multi-threaded run when the cores are shared); the scheduling changes timings, not what
is trained (same seeds, data order and hyper-parameters).

Data: BCCD (``--data-root``, Pascal VOC, 3 classes) converted to YOLO txt in a temp folder with
``repyolo.data.convert.voc_to_yolo``; trained on its train split (205 images), evaluated once at
the end on its val split (87 images), COCO mAP of the EMA weights. ``--data`` uses a ready data
YAML instead. ``--smoke`` runs the machinery on a 16-image synthetic set for one epoch.

Writes ``--out`` (markdown: table, command, reading) and prints it. Finished runs are kept in
``--project``; ``--reuse`` reads their ``metrics.json`` instead of training again (so an
interrupted ablation can be completed, or rows added, without redoing the others).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = Path(os.environ.get("REPYOLO_SHARED_DATASETS", REPO.parent / "shared" / "datasets")) / "bccd"


@dataclass(frozen=True)
class Config:
    """One row of the ablation: a name, its group and the hyper-parameters it overrides."""

    name: str
    group: str          # "assigner" or "cls loss"
    label: str          # what the table shows
    hyp: dict = field(default_factory=dict)


def ablation_configs(atss_warmup: int) -> list[Config]:
    """The rows, default first. Every row besides the default changes one thing."""
    return [
        Config("tal_vfl", "default", "TAL + VFL (default)", {"assigner": "tal", "cls_loss": "vfl",
                                                             "atss_warmup_epochs": 0}),
        Config("atss", "assigner", "ATSS only", {"assigner": "atss", "cls_loss": "vfl", "atss_warmup_epochs": 0}),
        Config("simota", "assigner", "SimOTA", {"assigner": "simota", "cls_loss": "vfl", "atss_warmup_epochs": 0}),
        Config("atss_tal", "assigner", f"ATSS warm-up ({atss_warmup} ep) -> TAL",
               {"assigner": "tal", "cls_loss": "vfl", "atss_warmup_epochs": atss_warmup}),
        Config("focal", "cls loss", "Focal (TAL)", {"assigner": "tal", "cls_loss": "focal", "atss_warmup_epochs": 0}),
        Config("qfl", "cls loss", "QFL (TAL)", {"assigner": "tal", "cls_loss": "qfl", "atss_warmup_epochs": 0}),
        Config("poly", "cls loss", "Poly-1 (TAL)", {"assigner": "tal", "cls_loss": "poly", "atss_warmup_epochs": 0}),
    ]


def model_yaml(path: Path, width: float, depth: float) -> Path:
    """The yolov6n config at another width / depth multiple, written to ``path``."""
    from repyolo.nn.model import load_model_config

    cfg = load_model_config("yolov6n")
    cfg.update(name=f"yolov6n-w{width:g}-d{depth:g}", width_multiple=width, depth_multiple=depth)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def prepare_data(args, tmp: Path) -> Path:
    """The data YAML to train on: ``--data``, a synthetic set (``--smoke``) or BCCD converted to YOLO."""
    if args.data:
        return Path(args.data)
    if args.smoke:
        from repyolo.data.synthetic import generate_synthetic

        return generate_synthetic(tmp / "synthetic", n_train=16, n_val=8, img_size=args.img, seed=0)
    from repyolo.data.convert import voc_to_yolo

    root = Path(args.data_root)
    if not root.is_dir():
        sys.exit(f"ablation: BCCD not found at {root} (pass --data-root or --data)")
    return voc_to_yolo(root, tmp / "bccd_yolo", splits=["train", "val"])


def epoch_seconds(results_csv: Path) -> float | None:
    """Mean wall seconds of one training epoch from the trainer's ``results.csv`` (``time_s`` is cumulative).

    The last epoch also holds the final evaluation, so it is left out when there are two or more.
    """
    if not results_csv.is_file():
        return None
    rows = list(csv.DictReader(results_csv.open()))
    times = [float(r["time_s"]) for r in rows if r.get("time_s")]
    if not times:
        return None
    if len(times) == 1:
        return times[0]
    return times[-2] / (len(times) - 1)


def run_one(cfg: Config, seed: int, args, model: Path, data: Path, reuse: bool = False) -> dict:
    """Train one configuration (or, with ``reuse``, read its finished run). Returns a result row."""
    name = f"{cfg.name}_s{seed}"
    save_dir = Path(args.project) / name
    metrics_path = save_dir / "metrics.json"
    reused = reuse and metrics_path.is_file()
    wall = None
    if not reused:
        from repyolo.engine.trainer import TrainArgs, Trainer

        hyp = {"recipe": args.recipe, **cfg.hyp}
        targs = TrainArgs(model=str(model), data=str(data), epochs=args.epochs, img=args.img, batch=args.batch,
                          device="cpu", project=str(args.project), name=name, exist_ok=True,
                          workers=args.workers, seed=seed, eval_interval=args.epochs, hyp=hyp,
                          max_batches=args.max_batches, cache=args.cache)
        t0 = time.time()
        Trainer(targs).train()
        wall = time.time() - t0
    summary = json.loads(metrics_path.read_text())
    return {"config": cfg.name, "group": cfg.group, "label": cfg.label, "seed": seed,
            "map": float(summary.get("map", 0.0)), "map50": float(summary.get("map50", 0.0)),
            "per_class": {k: float(v) for k, v in (summary.get("per_class") or {}).items()},
            "epoch_s": epoch_seconds(save_dir / "results.csv"),
            "wall_s": wall if wall is not None else float(summary.get("train_time_s", 0.0)),
            "reused": reused}


def positives_per_gt(weights: str, data: Path, img: int, batch: int, n_batches: int = 4) -> dict[str, dict]:
    """How many anchor points each assigner makes positive per ground truth, given a trained model.

    Runs the checkpoint (train-mode outputs, no gradient) on the first ``n_batches`` val batches
    (letterboxed, no augmentation) and calls every assigner on the same predictions, as the loss does.
    Returns ``{assigner: {class name: mean positives per ground truth}}`` (``'all'`` over every class).
    """
    import torch

    from repyolo.assign import build_assigner
    from repyolo.data.config import load_data_config
    from repyolo.data.loader import collate_fn
    from repyolo.io.checkpoint import load_model
    from repyolo.loss.detection import DetectionLoss, levels_of, pad_targets
    from repyolo.ops.image import to_model_input

    model = load_model(weights)
    cfg = load_data_config(str(data))
    ds = cfg.dataset("val", img_size=img, augment=False, names=list(cfg.names), prefix="val: ")
    decoder = DetectionLoss(model.nc, model.detect.reg_max, model.detect.use_dfl)
    assigners = {"atss": build_assigner("atss", model.nc, topk=9), "tal": build_assigner("tal", model.nc, topk=13),
                 "simota": build_assigner("simota", model.nc)}
    counts = {k: torch.zeros(model.nc) for k in assigners}
    n_gt = torch.zeros(model.nc)
    model.train()  # the loss's inputs are the train-mode outputs; BatchNorm stays on its running statistics
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        for start in range(0, min(len(ds), batch * n_batches), batch):
            imgs, targets, _, _ = collate_fn([ds[i] for i in range(start, min(start + batch, len(ds)))])
            out = model(to_model_input(imgs))
            b = imgs.shape[0]
            gt_labels, gt_bboxes, mask_gt = pad_targets(targets, b)
            strides = out["strides"].float()
            pred = decoder.decode(out["reg"], out["anchors"] / strides) * strides
            per_level, level_strides = levels_of(strides)
            n_gt += torch.bincount(targets[:, 1].long(), minlength=model.nc).float()
            for name, assigner in assigners.items():
                labels, _, _, fg = assigner(out["cls"].sigmoid(), pred, out["anchors"], gt_labels, gt_bboxes, mask_gt,
                                            per_level, level_strides)
                counts[name] += torch.bincount(labels[fg].long(), minlength=model.nc).float()
    names = list(cfg.names)
    return {k: {"all": float(c.sum() / n_gt.sum().clamp(min=1)),
                **{names[i]: float(c[i] / n_gt[i].clamp(min=1)) for i in range(model.nc)}}
            for k, c in counts.items()}


def parse_row_seeds(items: list[str]) -> dict[str, list[int]]:
    """``['atss_tal=0,1']`` -> ``{'atss_tal': [0, 1]}``."""
    out = {}
    for item in items:
        name, sep, seeds = item.partition("=")
        try:
            out[name] = [int(x) for x in seeds.split(",") if x.strip()]
        except ValueError:
            sep = ""
        if not sep or not out.get(name):
            sys.exit(f"ablation: --row-seeds {item!r}: expected NAME=SEED[,SEED...]")
    return out


def run_parallel(plan: list[tuple[Config, int]], args, model: Path, data: Path, log) -> None:
    """Train the runs of ``plan`` in ``args.jobs`` child processes (``--one NAME SEED``), logs in ``project/``.

    On a loaded machine single-threaded runs side by side waste less time in thread synchronisation
    than one multi-threaded run; results are read back from each run's ``metrics.json``.
    """
    import subprocess

    project = Path(args.project)
    project.mkdir(parents=True, exist_ok=True)
    common = ["--epochs", str(args.epochs), "--img", str(args.img), "--batch", str(args.batch),
              "--atss-warmup", str(args.atss_warmup), "--workers", str(args.workers), "--threads", str(args.threads),
              "--recipe", args.recipe, "--cache", str(args.cache), "--project", str(project), "--data", str(data),
              "--model-yaml", str(model)]
    if args.max_batches is not None:
        common += ["--max-batches", str(args.max_batches)]
    todo = [(c, s) for c, s in plan if not (args.reuse and (project / f"{c.name}_s{s}" / "metrics.json").is_file())]
    running: list[tuple[subprocess.Popen, str]] = []
    while todo or running:
        while todo and len(running) < args.jobs:
            cfg, seed = todo.pop(0)
            name = f"{cfg.name}_s{seed}"
            log_file = open(project / f"{name}.log", "w")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--one", cfg.name, str(seed), *common]
            running.append((subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT), name))
            log_file.close()
            log.info("ablation: started %s (pid %d); log %s", name, running[-1][0].pid, project / f"{name}.log")
        time.sleep(5)
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                level = log.info if proc.returncode == 0 else log.error
                level("ablation: %s finished with exit code %d", name, proc.returncode)


def summarize(rows: list[dict], default: str = "tal_vfl") -> tuple[list[dict], dict]:
    """Aggregate result rows per config and compare each with the default setting.

    Returns ``(table, noise)``: ``table`` one dict per config (in first-seen order) with mean
    ``map``, ``map50``, ``epoch_s``, seeds, and ``delta`` / ``delta50`` (percentage points against
    the default's mean) plus a ``verdict``; ``noise`` the default's seed spread (max - min, in points)
    for both metrics (``None`` with a single seed).
    """
    by_cfg: dict[str, list[dict]] = {}
    for r in rows:
        by_cfg.setdefault(r["config"], []).append(r)
    base = by_cfg.get(default, [])

    def spread(key):
        vals = [r[key] for r in base]
        return 100 * (max(vals) - min(vals)) if len(vals) > 1 else None

    noise = {"map": spread("map"), "map50": spread("map50"), "seeds": [r["seed"] for r in base]}
    base_map = statistics.mean(r["map"] for r in base) if base else None
    base_map50 = statistics.mean(r["map50"] for r in base) if base else None
    table = []
    for name, rs in by_cfg.items():
        times = [r["epoch_s"] for r in rs if r["epoch_s"] is not None]
        row = {"config": name, "label": rs[0]["label"], "group": rs[0]["group"], "seeds": [r["seed"] for r in rs],
               "map": statistics.mean(r["map"] for r in rs), "map50": statistics.mean(r["map50"] for r in rs),
               "maps": [r["map"] for r in rs], "map50s": [r["map50"] for r in rs],
               "per_class": {c: statistics.mean(r.get("per_class", {}).get(c, 0.0) for r in rs)
                             for c in rs[0].get("per_class", {})},
               "epoch_s": statistics.mean(times) if times else None, "delta": None, "delta50": None, "verdict": ""}
        if name == default:
            row["verdict"] = "reference"
        elif base_map is not None:
            row["delta"] = 100 * (row["map"] - base_map)
            row["delta50"] = 100 * (row["map50"] - base_map50)
            own = {"map": 100 * (max(row["maps"]) - min(row["maps"])) if len(rs) > 1 else None,
                   "map50": 100 * (max(row["map50s"]) - min(row["map50s"])) if len(rs) > 1 else None}
            row["verdict"] = verdict(row["delta"], row["delta50"], noise, own)
        table.append(row)
    return table, noise


def verdict(delta: float, delta50: float, noise: dict, own: dict | None = None) -> str:
    """"better" / "worse" when both mAP differences exceed the seed spread in the same direction, else
    "noise" (or "no spread measured" with one seed). The spread is the default's, or the row's own
    when the row has several seeds and spreads wider."""
    if noise["map"] is None or noise["map50"] is None:
        return "no spread measured"
    own = own or {}
    lim = max(noise["map"], own.get("map") or 0.0)
    lim50 = max(noise["map50"], own.get("map50") or 0.0)
    if delta > lim and delta50 > lim50:
        return "better (beyond seed spread)"
    if delta < -lim and delta50 < -lim50:
        return "worse (beyond seed spread)"
    return "within seed spread (noise)"


def _fmt_delta(x: float | None) -> str:
    return "" if x is None else f"{x:+.1f}"


def format_table(table: list[dict]) -> str:
    """Markdown table of the aggregated rows (mAP in %, deltas in points vs the default's mean)."""
    lines = ["| setting | group | seeds | mAP@0.5:0.95 (%) | mAP@0.5 (%) | Δ mAP / Δ mAP@0.5 (pt) | AP per class (%) "
             "| s / epoch | reading |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        if len(r["maps"]) > 1:
            m = f"{100 * r['map']:.1f} ({', '.join(f'{100 * v:.1f}' for v in r['maps'])})"
            m50 = f"{100 * r['map50']:.1f} ({', '.join(f'{100 * v:.1f}' for v in r['map50s'])})"
        else:
            m, m50 = f"{100 * r['map']:.1f}", f"{100 * r['map50']:.1f}"
        d = "" if r["delta"] is None else f"{_fmt_delta(r['delta'])} / {_fmt_delta(r['delta50'])}"
        t = "" if r["epoch_s"] is None else f"{r['epoch_s']:.0f}"
        seeds = ",".join(str(s) for s in r["seeds"])
        per_class = " · ".join(f"{c} {100 * v:.1f}" for c, v in r.get("per_class", {}).items())
        lines.append(f"| {r['label']} | {r['group']} | {seeds} | {m} | {m50} | {d} | {per_class} | {t} "
                     f"| {r['verdict']} |")
    return "\n".join(lines)


def reading(table: list[dict]) -> str:
    """One automatic sentence per verdict class: which rows differ from the default beyond the seed spread."""
    others = [r for r in table if r["verdict"] != "reference"]
    if not others:
        return ""
    better = [r["label"] for r in others if r["verdict"].startswith("better")]
    worse = [r["label"] for r in others if r["verdict"].startswith("worse")]
    noise = [r["label"] for r in others if "noise" in r["verdict"]]
    parts = []
    if better:
        parts.append("better than the default beyond the seed spread: " + ", ".join(better))
    if worse:
        parts.append("worse than the default beyond the seed spread: " + ", ".join(worse))
    if noise:
        parts.append("within the seed spread (not distinguishable from the default at this budget): "
                     + ", ".join(noise))
    if not parts:
        return "No seed spread was measured, so no row is called better or worse."
    return "Automatic reading: " + "; ".join(parts) + "."


def report(table: list[dict], noise: dict, command: str, setup: str, timing: str) -> str:
    """The results markdown: setup, table, the default's seed spread, an automatic reading and the command."""
    spread = ("not measured (one seed)" if noise["map"] is None else
              f"{noise['map']:.1f} pt mAP@0.5:0.95 / {noise['map50']:.1f} pt mAP@0.5 "
              f"(max - min over seeds {', '.join(map(str, noise['seeds']))})")
    return "\n".join([
        "## Label assignment and classification loss ablation",
        "",
        setup,
        "",
        format_table(table),
        "",
        f"Seed spread of the default setting (TAL + VFL): {spread}. A row is called better or worse only "
        "when both mAP differences to the default's mean exceed that spread (or the row's own spread, when "
        "it has several seeds and spreads wider) in the same direction; anything smaller is noise. "
        "s / epoch: mean wall time of a training epoch (final evaluation excluded) on a shared, loaded 2-core CPU: "
        "compare within the table only, and loosely.",
        "",
        reading(table),
        "",
        timing,
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
    ])


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--img", type=int, default=160)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=float, default=0.125,
                    help="width multiple of the yolov6n topology (0.25 = yolov6n)")
    ap.add_argument("--depth", type=float, default=0.33, help="depth multiple (0.33 = yolov6n)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the default setting (TAL + VFL)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the other rows (default: the first of --seeds)")
    ap.add_argument("--row-seeds", nargs="+", default=[], metavar="NAME=S1,S2",
                    help="seeds of one other row, e.g. atss_tal=0,1 (default: --seed)")
    ap.add_argument("--atss-warmup", type=int, default=3, help="ATSS epochs before TAL in the warm-up row")
    ap.add_argument("--configs", nargs="+", default=None,
                    help="rows to run (names: tal_vfl atss simota atss_tal focal qfl poly); default all")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cache", default="ram", help="image cache of the training set: ram | none")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--recipe", default="auto", choices=["auto", "small", "yolov6"])
    ap.add_argument("--max-batches", type=int, default=None, help="cut every epoch after N batches (debugging)")
    ap.add_argument("--data", default=None, help="a data YAML to use instead of BCCD")
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="the BCCD VOC folder")
    ap.add_argument("--project", default=None, help="where runs go (default: a temp folder)")
    ap.add_argument("--reuse", action="store_true", help="read finished runs in --project instead of retraining")
    ap.add_argument("--out", default=None,
                    help="results markdown (default benchmarks/results/ablation.md; with --smoke a temp file)")
    ap.add_argument("--jobs", type=int, default=1, help="runs trained side by side in child processes")
    ap.add_argument("--one", nargs=2, metavar=("CONFIG", "SEED"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-yaml", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--positives", default=None, metavar="WEIGHTS",
                    help="print positives per ground truth of each assigner for this checkpoint on the val split")
    ap.add_argument("--smoke", action="store_true",
                    help="16-image synthetic set, 1 epoch, img 64, two rows: checks the machinery only")
    args = ap.parse_args(argv)
    if args.smoke:
        args.epochs, args.img, args.batch, args.width, args.threads = 1, 64, 8, 0.125, 1
        args.seeds = args.seeds[:2]
        args.configs = args.configs or ["tal_vfl", "simota"]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from repyolo.utils.logging import get_logger, setup_logging

    setup_logging()
    log = get_logger("ablation")
    if args.one:  # a child of run_parallel: train one run and leave
        cfg = {c.name: c for c in ablation_configs(args.atss_warmup)}[args.one[0]]
        run_one(cfg, int(args.one[1]), args, Path(args.model_yaml), Path(args.data))
        return 0
    t_start = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="repyolo_ablation_"))
    args.project = args.project or str(tmp / "runs")
    data = prepare_data(args, tmp)
    if args.positives:
        res = positives_per_gt(args.positives, data, args.img, args.batch)
        classes = list(next(iter(res.values())))
        print("| assigner | " + " | ".join(f"positives / gt: {c}" for c in classes) + " |")
        print("|---|" + "---|" * len(classes))
        for name, per in res.items():
            print(f"| {name} | " + " | ".join(f"{per[c]:.1f}" for c in classes) + " |")
        return 0
    model = model_yaml(tmp / "model.yaml", args.width, args.depth)
    configs = ablation_configs(args.atss_warmup)
    if args.configs:
        known = {c.name for c in configs}
        bad = [c for c in args.configs if c not in known]
        if bad:
            sys.exit(f"ablation: unknown config(s) {bad}; known: {', '.join(sorted(known))}")
        configs = [c for c in configs if c.name in args.configs]
    other_seed = args.seeds[0] if args.seed is None else args.seed
    row_seeds = parse_row_seeds(args.row_seeds)
    plan = [(c, s) for c in configs
            for s in (args.seeds if c.name == "tal_vfl" else row_seeds.get(c.name, [other_seed]))]
    log.info("ablation: %d runs, %d epochs at %d px, batch %d, width %g; runs in %s", len(plan), args.epochs,
             args.img, args.batch, args.width, args.project)

    if args.jobs > 1:
        run_parallel(plan, args, model, data, log)
    results_json = Path(args.project) / "ablation_rows.json"
    rows = []
    for i, (cfg, seed) in enumerate(plan, 1):
        if args.jobs <= 1:
            log.info("ablation run %d/%d: %s seed %d %s", i, len(plan), cfg.name, seed, cfg.hyp)
        try:
            row = run_one(cfg, seed, args, model, data, reuse=args.reuse or args.jobs > 1)
        except Exception as exc:  # one failing row must not lose the others
            log.error("ablation: %s seed %d failed: %s: %s", cfg.name, seed, type(exc).__name__, exc)
            continue
        rows.append(row)
        log.info("ablation: %s seed %d: mAP %.4f mAP50 %.4f (%.0f s / epoch, %.1f min)", cfg.name, seed,
                 row["map"], row["map50"], row["epoch_s"] or 0, row["wall_s"] / 60)
        Path(args.project).mkdir(parents=True, exist_ok=True)
        results_json.write_text(json.dumps(rows, indent=1))

    table, noise = summarize(rows)
    argv_used = sys.argv[1:] if argv is None else list(argv)
    command = "python benchmarks/ablation.py " + " ".join(shlex.quote(a) for a in argv_used)
    data_desc = ("synthetic shapes (16 train / 8 val images; --smoke)" if args.smoke else
                 f"{args.data}" if args.data else "BCCD (VOC -> YOLO; train 205 images, val 87 images, 3 classes)")
    setup = (f"Data: {data_desc}. Model: yolov6n topology at width {args.width:g}, depth {args.depth:g}, from "
             f"scratch. Budget per run: {args.epochs} epochs, {args.img} px, batch {args.batch}, recipe "
             f"{args.recipe}, evaluation once at the end (COCO mAP of the EMA weights on the val split, conf "
             f"0.03, NMS IoU 0.65). Seeds: default setting {', '.join(map(str, args.seeds))}, other rows "
             f"{other_seed}. CPU, {args.threads} thread(s) and {args.workers} loader worker(s) per run, "
             f"{max(args.jobs, 1)} run(s) side by side.")
    train_min = sum(r["wall_s"] for r in rows) / 60
    timing = (f"Training time summed over the {len(rows)} runs: {train_min:.1f} min; wall time of this invocation: "
              f"{(time.time() - t_start) / 60:.1f} min" + (" (finished runs re-read with --reuse)." if args.reuse
                                                           else "."))
    text = report(table, noise, command, setup, timing)
    out = Path(args.out or (tmp / "ablation_smoke.md" if args.smoke else REPO / "benchmarks/results/ablation.md"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0 if rows and len(rows) == len(plan) else 1


if __name__ == "__main__":
    sys.exit(main())
