"""INT8 quantization benchmark: FP32 vs full PTQ vs partial PTQ vs QAT, accuracy and CPU latency.

    python benchmarks/quant_bench.py [--weights runs/demo/train/weights/best.pt] [--data DATA] [--img 256]

On a trained model (default: the ``repyolo demo`` run; ``--weights`` / ``--data`` for another one):

1. export the fused FP32 model to static ONNX and score it (COCO mAP on the val split, :class:`Evaluator`);
2. full INT8 PTQ (per-channel INT8 weights, UINT8 activations, MinMax calibration; also Percentile
   and Entropy with ``--all-calibrators``);
3. sensitivity analysis (one conv INT8 at a time, output MSE / SNR / cosine vs FP32), then partial
   PTQ: the fewest most sensitive convs kept FP32 so that the mAP drop on the val images is at
   most ``--map-budget``;
4. QAT: ``--qat-epochs`` of fake-quantized fine-tuning with CWD distillation from the FP32 model;

then onnxruntime CPU latency of every file (``--threads`` threads, batch 1, runs interleaved across
the models, median) and, with ``--openvino``, OpenVINO CPU latency of the same files. Prints a
markdown table with the equivalent ``repyolo`` commands. Numbers are measured, never asserted.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def find_weights() -> Path | None:
    cands = [Path("runs/demo/train/weights/best.pt"), Path("/tmp/demo_for_quant/train/weights/best.pt"),
             *sorted(Path("/tmp/demo_for_quant").glob("train*/weights/best.pt"))]
    return next((c for c in cands if c.is_file()), None)


def data_of(weights: Path) -> str | None:
    """The data YAML a repyolo checkpoint was trained on (from its saved arguments)."""
    from repyolo.io.checkpoint import read_checkpoint

    args = read_checkpoint(weights).get("args") or {}
    return args.get("data")


def evaluate(path, data: str, img: int) -> dict:
    from repyolo.engine.evaluator import Evaluator

    res = Evaluator(data=data, img_size=img, batch_size=1, workers=0, plots=False, save_json=False)(str(path))
    return {"map": float(res["map"]), "map50": float(res["map50"])}


def summary(samples: list[float]) -> dict[str, float]:
    q = np.percentile(samples, [25, 50, 75])
    return {"median": float(q[1]), "p25": float(q[0]), "p75": float(q[2]), "min": float(min(samples))}


def ort_latency(paths: dict[str, Path], img: int, threads: int, runs: int, warmup: int = 5) -> dict[str, dict]:
    """onnxruntime latency (ms: median, quartiles, min) per model; the models take turns run after run."""
    import onnxruntime as ort

    sessions = {}
    for name, path in paths.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        sessions[name] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, img, img), dtype=np.float32)
    times = {name: [] for name in sessions}
    for r in range(warmup + runs):
        for name, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, {"images": x})
            if r >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: summary(t) for name, t in times.items()}


def openvino_latency(paths: dict[str, Path], img: int, threads: int, runs: int, warmup: int = 5) -> dict[str, dict]:
    """OpenVINO CPU latency (ms) per ONNX file (f32 inference precision; INT8 where QDQ says so)."""
    import openvino as ov

    core = ov.Core()
    compiled = {name: core.compile_model(core.read_model(str(p)), "CPU",
                                         {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                          "INFERENCE_PRECISION_HINT": "f32"}) for name, p in paths.items()}
    requests = {name: c.create_infer_request() for name, c in compiled.items()}
    x = np.random.default_rng(0).random((1, 3, img, img), dtype=np.float32)
    times = {name: [] for name in compiled}
    for r in range(warmup + runs):
        for name, req in requests.items():
            t0 = time.perf_counter()
            req.infer({0: x})
            if r >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: summary(t) for name, t in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None, help="trained checkpoint (default: the repyolo demo run)")
    p.add_argument("--data", default=None, help="data YAML (default: the one the checkpoint was trained on)")
    p.add_argument("--img", type=int, default=256)
    p.add_argument("--calib", type=int, default=100)
    p.add_argument("--map-budget", type=float, default=0.001,
                   help="mAP drop budget of the partial model (fraction; default 0.001 = 0.1 point)")
    p.add_argument("--search-images", type=int, default=0, help="val images of the budget search (0 = all)")
    p.add_argument("--qat-epochs", type=int, default=2)
    p.add_argument("--qat-images", type=int, default=None, help="training images per QAT epoch (default all)")
    p.add_argument("--qat-lr", type=float, default=1e-4)
    p.add_argument("--qat-batch", type=int, default=16)
    p.add_argument("--keep-preds-fp32", action="store_true")
    p.add_argument("--all-calibrators", action="store_true", help="also PTQ with Percentile and Entropy")
    p.add_argument("--openvino", action="store_true", help="also measure OpenVINO CPU latency")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads for the latency runs")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads for QAT (1: spinning OpenMP threads crawl on a shared 2-core machine)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per model")
    p.add_argument("--out", default=None, help="folder for the models and results.json (default: a temp folder)")
    args = p.parse_args(argv)

    from repyolo.quant import graph as G
    from repyolo.quant.evaluate import SubsetEvaluator
    from repyolo.quant.partial import search_map_budget
    from repyolo.quant.qat import quantize_qat
    from repyolo.quant.qdq import PTQContext, QuantSettings, prepare
    from repyolo.quant.sensitivity import analyze
    from repyolo.utils.logging import setup_logging

    setup_logging()
    torch.set_num_threads(args.torch_threads)
    weights = Path(args.weights) if args.weights else find_weights()
    if weights is None:
        sys.exit("no trained model: run `repyolo demo` first or pass --weights")
    data = args.data or data_of(weights)
    out = Path(args.out or tempfile.mkdtemp(prefix="quant_bench_"))
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    timings, rows = {}, []
    preds = "--keep-preds-fp32 " if args.keep_preds_fp32 else ""
    base = f"--weights {weights} --data {data} --img {args.img} --calib {args.calib} {preds}".strip()

    # 1. FP32 export + calibration (once, shared by the PTQ variants)
    t0 = time.time()
    settings = QuantSettings(calib=args.calib, quantize_preds=not args.keep_preds_fp32)
    ctx = prepare(weights, data, settings, img_size=args.img, workdir=out)
    timings["export+calibrate"] = time.time() - t0
    fp32 = out / "model_fp32.onnx"
    models = {"FP32": fp32}
    rows.append({"name": "FP32", "path": fp32, "command": f"repyolo export --weights {weights} --img {args.img}",
                 "fp32_convs": len(ctx.fp.convs)})

    # 2. full PTQ
    t0 = time.time()
    proto = ctx.build()
    path = ctx.save(proto, out / "ptq_minmax_int8.onnx")
    models["PTQ minmax"] = path
    rows.append({"name": "PTQ minmax", "path": path, "command": f"repyolo quantize ptq {base}",
                 "fp32_convs": len(G.float_convs(proto))})
    if args.all_calibrators:
        for cal in ("percentile", "entropy"):
            c2 = PTQContext(ctx.fp, ctx.images, QuantSettings(calibrator=cal, calib=args.calib,
                                                              quantize_preds=not args.keep_preds_fp32))
            path = c2.save(c2.build(), out / f"ptq_{cal}_int8.onnx")
            models[f"PTQ {cal}"] = path
            rows.append({"name": f"PTQ {cal}", "path": path, "fp32_convs": 0,
                         "command": f"repyolo quantize ptq {base} --calibrator {cal}"})
    timings["ptq"] = time.time() - t0

    # 3. partial PTQ within the mAP budget (MSE ranking of single-layer quantization)
    t0 = time.time()
    report = analyze(ctx, None, metric_images=32, threads=args.threads, include_full=True)
    timings["sensitivity"] = time.time() - t0
    t0 = time.time()
    evaluator = SubsetEvaluator(data, args.img, n_images=args.search_images)
    ranking = report.ranking("mse")
    k, search = search_map_budget(ctx, ranking, evaluator, args.map_budget, threads=args.threads)
    skipped = ranking[:k]
    proto = ctx.build(exclude=skipped)
    path = ctx.save(proto, out / "ptq_partial_int8.onnx", method="partial-ptq", skipped=skipped)
    models["Partial PTQ"] = path
    rows.append({"name": f"Partial PTQ ({len(skipped)} convs FP32)", "path": path, "skipped": skipped,
                 "fp32_convs": len(skipped), "search": search,
                 "command": f"repyolo quantize ptq {base} --map-budget {args.map_budget}"})
    timings["partial"] = time.time() - t0

    # 4. QAT
    t0 = time.time()
    qat = quantize_qat(weights, data, epochs=args.qat_epochs, img_size=args.img, batch=args.qat_batch, lr=args.qat_lr,
                       calib=args.calib, quantize_preds=not args.keep_preds_fp32, workers=1,
                       train_images=args.qat_images, output=out / "qat_int8.onnx")
    models["QAT"] = qat.path
    lim = f" --train-images {args.qat_images}" if args.qat_images else ""
    rows.append({"name": f"QAT ({args.qat_epochs} ep, CWD)", "path": qat.path, "fp32_convs": 0, "history": qat.history,
                 "command": f"repyolo quantize qat {base} --epochs {args.qat_epochs} --batch {args.qat_batch}{lim}"})
    timings["qat"] = time.time() - t0

    # accuracy
    t0 = time.time()
    for row in rows:
        row.update(evaluate(row["path"], data, args.img))
    timings["evaluation"] = time.time() - t0

    # latency
    t0 = time.time()
    lat = ort_latency(models, args.img, args.threads, args.runs)
    keys = list(models)
    for row, key in zip(rows, keys):
        row["ort"], row["ort_ms"] = lat[key], lat[key]["median"]
    if args.openvino:
        ov_lat = openvino_latency(models, args.img, args.threads, args.runs)
        for row, key in zip(rows, keys):
            row["ov"], row["ov_ms"] = ov_lat[key], ov_lat[key]["median"]
    timings["latency"] = time.time() - t0

    fp = rows[0]
    head = "| model | mAP@0.5:0.95 | mAP@0.5 | drop (pts) | ORT ms (IQR) | speed-up |"
    sep = "|---|---|---|---|---|---|"
    if args.openvino:
        head += " OpenVINO ms | speed-up |"
        sep += "---|---|"
    head += " FP32 convs | command |"
    sep += "---|---|"
    print(f"\nmodel {weights} ({ctx.fp.metadata.get('model', '?')}), {args.img}x{args.img}, data {data}; "
          f"CPU {platform.processor() or platform.machine()}, onnxruntime {args.threads} threads, batch 1, "
          f"median of {args.runs} interleaved runs\n")
    print(head)
    print(sep)
    for row in rows:
        line = (f"| {row['name']} | {row['map']:.4f} | {row['map50']:.4f} | {(fp['map'] - row['map']) * 100:+.2f} | "
                f"{row['ort_ms']:.1f} ({row['ort']['p25']:.0f}-{row['ort']['p75']:.0f}) | "
                f"{fp['ort_ms'] / row['ort_ms']:.2f}x |")
        if args.openvino:
            line += f" {row['ov_ms']:.1f} | {fp['ov_ms'] / row['ov_ms']:.2f}x |"
        line += f" {row['fp32_convs'] if row['name'] != 'FP32' else 'all'} | `{row['command']}` |"
        print(line)
    print()
    print("most sensitive convs (one conv INT8, output MSE vs FP32):")
    by_node = {r.node: r for r in report.layers}
    for node in ranking[:5]:
        r = by_node[node]
        print(f"  {node}: MSE {r.mse:.3e}, SNR {r.snr:.1f} dB, cosine {r.cosine:.6f}")
    print(f"  (least sensitive: {ranking[-1]}: MSE {by_node[ranking[-1]].mse:.3e}; all convs INT8: "
          f"MSE {report.full_int8['mse']:.3e}, SNR {report.full_int8['snr']:.1f} dB)")
    if search:
        print("mAP-budget search (convs kept FP32 -> mAP): " +
              ", ".join(f"{'FP32' if s['k'] < 0 else s['k']}: {s['map']:.4f}" for s in search))
    if skipped:
        print("FP32 convs of the partial model: " + ", ".join(skipped))
    print("time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) +
          f", total {time.time() - t_start:.0f}")
    report.save(out / "sensitivity.json")
    (out / "results.json").write_text(json.dumps({"weights": str(weights), "data": data, "img": args.img,
                                                  "rows": rows, "timings": timings}, indent=2, default=str))
    print(f"models and results.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
