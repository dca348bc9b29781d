"""End-to-end ``repyolo predict``, old tree vs new tree, interleaved in one run (issue 17, target 2).

Command (BENCHMARKS.md):
    python benchmarks/predict_ab.py --old ../base41 --source ../shared/datasets/coco128/images/val --img 640 --rounds 5

Each round runs the whole command line once per tree (order alternating), drawing and saving on:
``python -m repyolo.cli predict --weights W --source S --img 640 --project TMP --exist-ok`` with
``PYTHONPATH`` set to that tree, and records its wall time and CPU time (user + system of the
child). The first round of the new tree exports the cached ONNX Runtime file (its cache is a
temporary folder, shown separately as "first run"); later rounds reuse it, as a user's second
run does. Reported: medians, the ratio new / old of medians, the median of per-round ratios.

Weights: ``--weights`` (a ``.pt`` both trees can read), default a freshly initialised yolov6n
(80 classes) written by the script: it detects little, so drawing costs little; pass a trained
checkpoint for realistic drawing costs.

Equivalence (``--check``, default on): the new tree's default (rect letterbox, cached ONNX
Runtime) against its square-letterbox PyTorch path (``--no-rect --runtime torch``, the old
behaviour), both with ``--save-json``, on ``--check-weights`` (default: the COCO-pretrained
YOLOv6-Lite-S converted from ../shared/weights/yolov6-lite when present, else ``--weights``):
detections are matched per image and class (IoU > 0.5, greedy by score) and the largest box
(px) and score differences are printed with the count of unmatched detections.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from abtest import REPO, default_old_tree, load_average, run_repyolo, tree_env  # noqa: E402

SHARED = Path(os.environ.get("REPYOLO_SHARED_DATASETS", REPO.parent / "shared" / "datasets")).parent


def run_cli(tree: Path, args: list[str], env_extra: dict | None = None) -> tuple[float, float]:
    """Run ``repyolo <args>`` importing from ``tree``; returns (wall s, CPU s of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = run_repyolo(tree, args, tree_env(tree, extra=env_extra))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: repyolo {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def make_weights(path: Path) -> Path:
    import torch

    from repyolo import build_model
    from repyolo.io.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model("yolov6n", num_classes=80)
    save_checkpoint({"model_cfg": model.cfg, "names": [f"class{i}" for i in range(80)], "fused": False,
                     "model": model.state_dict(), "ema": None, "epoch": -1}, path)
    return path


def lite_weights(path: Path) -> Path | None:
    """The released YOLOv6-Lite-S (NCNN, ../shared/weights) as a repyolo checkpoint, or None."""
    folder = SHARED / "weights" / "yolov6-lite"
    if not (folder / "yolov6-lite-s.param").is_file():
        return None
    import torch

    from repyolo.io.checkpoint import save_checkpoint
    from repyolo.io.ncnn import read_ncnn
    from repyolo.io.ncnn_lite import lite_state_dict_from_ncnn
    from repyolo.io.official import COCO_NAMES
    from repyolo.io.official_arch import config_for, to_repyolo_keys
    from repyolo.nn.model import build_model

    net = read_ncnn(folder / "yolov6-lite-s.param", folder / "yolov6-lite-s.bin")
    state = to_repyolo_keys({k: torch.as_tensor(v) for k, v in lite_state_dict_from_ncnn(net.graph,
                                                                                          net.weights).items()})
    cfg, nc = config_for("yolov6lite-s", state)
    model = build_model(cfg, nc)
    model.load_state_dict(state)
    save_checkpoint({"model_cfg": model.cfg, "names": list(COCO_NAMES), "fused": False,
                     "model": model.state_dict(), "ema": None, "epoch": -1}, path)
    return path


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare_detections(ref_json: Path, new_json: Path) -> dict:
    """Greedy matching per (image, class): largest box / score difference and unmatched counts."""
    def load(p):
        out = {}
        for d in json.loads(p.read_text()):
            x, y, w, h = d["bbox"]
            out.setdefault((d["file_name"], d["category_id"]), []).append((d["score"], [x, y, x + w, y + h]))
        return out

    ref, new = load(ref_json), load(new_json)
    box_err = score_err = 0.0
    unmatched, n_ref, n_new = 0, sum(len(v) for v in ref.values()), sum(len(v) for v in new.values())
    for key in set(ref) | set(new):
        a = sorted(ref.get(key, []), reverse=True)
        b = sorted(new.get(key, []), reverse=True)
        used = set()
        for s, box in a:
            best, j_best = 0.5, None
            for j, (_, box2) in enumerate(b):
                if j not in used and _iou(box, box2) > best:
                    best, j_best = _iou(box, box2), j
            if j_best is None:
                unmatched += 1
                continue
            used.add(j_best)
            box_err = max(box_err, max(abs(u - v) for u, v in zip(box, b[j_best][1])))
            score_err = max(score_err, abs(s - b[j_best][0]))
        unmatched += len(b) - len(used)
    return {"reference": n_ref, "new": n_new, "unmatched": unmatched, "max_box_px": box_err,
            "max_score": score_err}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, default=default_old_tree())
    ap.add_argument("--new", type=Path, default=REPO)
    ap.add_argument("--source", default=str(SHARED / "datasets" / "coco128" / "images" / "val"))
    ap.add_argument("--img", type=int, default=640)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--weights", default=None, help="checkpoint both trees can read (default: yolov6n, fresh)")
    ap.add_argument("--check-weights", default=None, help="checkpoint of the equivalence check")
    ap.add_argument("--no-check", dest="check", action="store_false")
    ap.add_argument("--extra", default="", help="more options for both command lines (one string)")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS for both sides (default: unset, each tree's own choice)")
    args = ap.parse_args()
    args.source = str(Path(args.source).resolve())
    args.old, args.new = args.old.resolve(), args.new.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = Path(args.weights).resolve() if args.weights else make_weights(tmp / "yolov6n.pt")
        cache = {"REPYOLO_CACHE_DIR": str(tmp / "cache")}
        threads = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}
        cache.update(threads)
        base = ["predict", "--weights", str(weights), "--source", args.source, "--img", str(args.img),
                "--exist-ok", *shlex.split(args.extra)]
        print(f"old {args.old} vs new {args.new}: {args.source} at {args.img}, {args.rounds} rounds interleaved; "
              f"load average before: {load_average()}")
        first_new = run_cli(args.new, base + ["--project", str(tmp / "new"), "--name", "first"], cache)
        res = {"old": ([], []), "new": ([], [])}
        for r in range(args.rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for side in order:
                tree = args.old if side == "old" else args.new
                wall, cpu = run_cli(tree, base + ["--project", str(tmp / side), "--name", "r"],
                                    cache if side == "new" else threads)
                res[side][0].append(wall)
                res[side][1].append(cpu)
        ow, oc = res["old"]
        nw, nc = res["new"]
        pair = statistics.median(n / o for n, o in zip(nw, ow))
        print("| run | wall s (median) | CPU s (median) |")
        print("|---|---|---|")
        print(f"| old | {statistics.median(ow):.2f} | {statistics.median(oc):.2f} |")
        print(f"| new | {statistics.median(nw):.2f} | {statistics.median(nc):.2f} |")
        print(f"| new, first run (exports the ONNX Runtime file) | {first_new[0]:.2f} | {first_new[1]:.2f} |")
        print(f"new / old wall: {statistics.median(nw) / statistics.median(ow):.2f} (median of per-round ratios "
              f"{pair:.2f}); CPU: {statistics.median(nc) / statistics.median(oc):.2f}")
        if args.check:
            cw = Path(args.check_weights) if args.check_weights else (lite_weights(tmp / "lite_s.pt") or weights)
            common = ["predict", "--weights", str(cw), "--source", args.source, "--img", str(args.img), "--exist-ok",
                      "--save-json", "--nosave"]
            run_cli(args.new, common + ["--project", str(tmp / "chk"), "--name", "ref", "--no-rect", "--runtime",
                                        "torch"], cache)
            run_cli(args.new, common + ["--project", str(tmp / "chk"), "--name", "new"], cache)
            cmp = compare_detections(tmp / "chk" / "ref" / "predictions.json", tmp / "chk" / "new" / "predictions.json")
            print(f"equivalence on {cw.name}: square+PyTorch {cmp['reference']} detections, rect+default runtime "
                  f"{cmp['new']}; unmatched {cmp['unmatched']}; largest box difference {cmp['max_box_px']:.3f} px, "
                  f"score {cmp['max_score']:.5f}")
        print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
