"""Deployment latency of yolov6n / yolov6s on this CPU: PyTorch (fused, unfused), ONNX Runtime, OpenVINO.

Usage::

    python benchmarks/export_bench.py [--models yolov6n,yolov6s] [--imgs 640,320] [--threads 2]
                                      [--runs 30] [--warmup 5] [--json OUT]

Weights are random (latency does not depend on them). For every (model, size) all backends
are timed round-robin (``repyolo.export.bench``), batch 1. Prints a markdown table, the
compute bound of yolov6n at 640 (GFLOPs / peak FLOP/s of the cores used) and an ONNX Runtime
per-operator profile of that model that says where the time beyond the bound goes.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np


def cpu_facts() -> dict:
    """Model name, mean current MHz, physical cores seen, SIMD flags from /proc/cpuinfo."""
    text = Path("/proc/cpuinfo").read_text()
    mhz = [float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    flags = next((line.split(":")[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    family = next((int(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu family")), None)
    name = next((line.split(":")[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    return {"name": name, "family": family, "mhz": float(np.mean(mhz)) if mhz else None, "logical_cpus": len(mhz),
            "avx2": "avx2" in flags, "fma": "fma" in flags, "avx512f": "avx512f" in flags}


def compute_bound(gflops: float, cores: int, mhz: float, flop_per_cycle: int = 32) -> dict:
    """Peak = cores x clock x FLOP/cycle; the bound is the time the FLOPs take at that peak."""
    peak = cores * mhz * 1e6 * flop_per_cycle / 1e9  # GFLOP/s
    return {"peak_gflops": peak, "bound_ms": gflops / peak * 1e3}


def gemm_peak(threads: int, n: int = 2048, reps: int = 10) -> dict:
    """Measured fp32 GEMM GFLOP/s (``n^3`` matmul, best of ``reps``) on ``threads`` threads, through
    onnxruntime (MLAS: AVX-512 where the CPU has it) and torch (MKL/oneDNN matmul): the practical
    peak of these cores, whatever their vector width and turbo clock."""
    import time

    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "gemm",
                              [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])],
                              [numpy_helper.from_array(rng.random((n, n), dtype=np.float32), "B")])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
                                .SerializeToString(), opts, providers=["CPUExecutionProvider"])
    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.rand(n, n)

    def best_of(fn) -> float:
        for _ in range(2):
            fn()
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return 2.0 * n ** 3 / best / 1e9

    return {"onnxruntime": best_of(lambda: sess.run(None, {"A": a})), "torch": best_of(lambda: ta @ tb)}


def _node_flops(args: dict) -> float:
    """FLOPs (2 x MACs) of a Conv / ConvTranspose node from its profiled shapes (0 for other ops)."""
    op = args.get("op_name", "")
    shapes = [next(iter(s.values())) for s in args.get("input_type_shape", [])]
    outs = [next(iter(s.values())) for s in args.get("output_type_shape", [])]
    if op in ("Conv", "FusedConv") and len(shapes) >= 2 and outs and len(shapes[1]) == 4:
        n, c_out, h, w = outs[0][:4]
        _, c_in_g, kh, kw = shapes[1]
        return 2.0 * n * c_out * h * w * c_in_g * kh * kw
    if op == "ConvTranspose" and len(shapes) >= 2 and len(shapes[1]) == 4:
        n, c_in, h, w = shapes[0][:4]
        _, c_out_g, kh, kw = shapes[1]
        return 2.0 * n * c_in * h * w * c_out_g * kh * kw
    return 0.0


def profile_onnx(onnx_path: Path, threads: int, runs: int = 10) -> dict:
    """ONNX Runtime node profile: time per operator type, and per conv size class (ms per run, GFLOP/s)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.enable_profiling = True
    opts.profile_file_prefix = str(onnx_path.parent / "ortprofile")
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(runs + 2):
        sess.run(None, {sess.get_inputs()[0].name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    model_runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    start = model_runs[2][0]  # skip two warm-up runs
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start]
    total_ms = sum(b - a for a, b in model_runs[2:]) / 1e3 / runs
    by_op = collections.defaultdict(float)
    classes = collections.defaultdict(lambda: [0.0, 0.0])  # name -> [ms, flops]
    for e in nodes:
        op = e["args"].get("op_name", "?")
        ms = e["dur"] / 1e3 / runs
        by_op[op] += ms
        flops = _node_flops(e["args"]) / runs
        if flops:
            w = next(iter(e["args"]["input_type_shape"][1].values()))
            c_in = w[1] if op != "ConvTranspose" else w[0]
            k = f"{w[2]}x{w[3]}"
            label = f"{op} {k}, C_in {'<= 32' if c_in <= 32 else '<= 64' if c_in <= 64 else '> 64'}"
            classes[label][0] += ms
            classes[label][1] += flops
    by_op = dict(sorted(by_op.items(), key=lambda kv: -kv[1]))
    return {"run_ms": total_ms, "nodes_ms": sum(by_op.values()), "by_op": by_op,
            "conv_classes": {k: {"ms": v[0], "gflop": v[1] / 1e9, "gflops_per_s": v[1] / 1e9 / (v[0] / 1e3)}
                             for k, v in sorted(classes.items(), key=lambda kv: -kv[1][0])}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="yolov6n,yolov6s")
    p.add_argument("--imgs", default="640,320")
    p.add_argument("--backends", default="torch,torch-unfused,onnx,openvino,openvino-bf16")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import torch

    from repyolo.export.bench import benchmark, format_table
    from repyolo.export.exporter import export_model
    from repyolo.nn.model import build_model

    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    cpu = cpu_facts()
    load0 = os.getloadavg()
    print(f"command: `{command}`")
    print(f"CPU: {cpu['name']} (family {cpu['family']}), {cpu['logical_cpus']} logical CPUs, "
          f"{cpu['mhz']:.0f} MHz (/proc/cpuinfo), AVX2 {cpu['avx2']}, FMA {cpu['fma']}, AVX-512 {cpu['avx512f']}; "
          f"load average at start {load0[0]:.1f}\n")
    results = []
    for name in args.models.split(","):
        for img in (int(s) for s in args.imgs.split(",")):
            r = benchmark(name, img, args.backends, batch=args.batch, threads=args.threads,
                          warmup=args.warmup, runs=args.runs)
            results.append(r)
            print(format_table(r), "\n", flush=True)
    load1 = os.getloadavg()

    print("| model | img | GFLOPs | " + " | ".join(f"{b} ms (p90)" for b in results[0]["results"]) + " |")
    print("|---|---:|---:|" + "---:|" * len(results[0]["results"]))
    for r in results:
        cells = " | ".join(f"{v['median_ms']:.1f} ({v['p90_ms']:.1f})" for v in r["results"].values())
        print(f"| {r['model']} | {r['img'][0]} | {r['gflops']:.2f} | {cells} |")
    print(f"\nbatch {args.batch}, {args.threads} threads, median of {args.runs} interleaved runs after {args.warmup} "
          f"warm-up calls; load average {load0[0]:.1f} -> {load1[0]:.1f} (1 min)\n")

    analysis = {}
    ref = next((r for r in results if r["model"] == "yolov6n" and r["img"] == [640, 640]), None)
    if ref is not None:
        fp32 = {k: v for k, v in ref["results"].items() if not k.endswith("bf16")}
        best_name, best = min(fp32.items(), key=lambda kv: kv[1]["median_ms"])
        bound = compute_bound(ref["gflops"], args.threads, cpu["mhz"], 32)
        bound512 = compute_bound(ref["gflops"], args.threads, cpu["mhz"], 64)
        ratio = best["median_ms"] / bound["bound_ms"]
        print("## yolov6n at 640 against the compute bound\n")
        print(f"- work: {ref['gflops']:.2f} GFLOPs per image (fused deploy model, 2 x multiply-adds, "
              "repyolo.utils.flops.count_gflops)")
        print(f"- assumed peak: {args.threads} cores x {cpu['mhz'] / 1e3:.3f} GHz x 32 FLOP/cycle (fp32 AVX2: "
              f"8 lanes x 2 for FMA x 2 FMA units) = {bound['peak_gflops']:.0f} GFLOP/s "
              f"-> bound {bound['bound_ms']:.1f} ms")
        print(f"- best fp32 backend: {best_name} {best['median_ms']:.1f} ms (min {best['min_ms']:.1f}) = "
              f"{ratio:.2f} x the bound ({ref['gflops'] / best['median_ms'] * 1e3:.0f} GFLOP/s achieved, "
              f"{100 / ratio:.0f}% of the AVX2 peak)")
        print(f"- with AVX-512 at full width (64 FLOP/cycle, e.g. Zen 5 / server Intel) the bound would be "
              f"{bound512['bound_ms']:.1f} ms ({best['median_ms'] / bound512['bound_ms']:.2f} x)")
        gemms = gemm_peak(args.threads)
        gemm = max(gemms.values())
        print(f"- measured fp32 GEMM peak (2048^3 matmul, {args.threads} threads): onnxruntime "
              f"{gemms['onnxruntime']:.0f} GFLOP/s, torch {gemms['torch']:.0f} GFLOP/s; the best is "
              f"{gemm / bound['peak_gflops']:.2f} x the assumed AVX2 peak (implies "
              f"{gemm / (args.threads * 64):.2f} GHz at 64 FLOP/cycle: AVX-512 FMA at a turbo clock above the "
              f"{cpu['mhz']:.0f} MHz /proc/cpuinfo shows)")
        print(f"- against the measured peak the bound is {ref['gflops'] / gemm * 1e3:.1f} ms; best fp32 backend "
              f"{best_name} {best['median_ms']:.1f} ms = {best['median_ms'] / (ref['gflops'] / gemm * 1e3):.2f} x "
              f"(min {best['min_ms'] / (ref['gflops'] / gemm * 1e3):.2f} x)")
        if "openvino-bf16" in ref["results"]:
            bf16 = ref["results"]["openvino-bf16"]["median_ms"]
            print(f"- openvino bf16 (AVX512-BF16 dot products, not fp32): {bf16:.1f} ms")
        with tempfile.TemporaryDirectory() as tmp:
            model = build_model("yolov6n")
            onnx_path = export_model(model, "onnx", img_size=640, output=Path(tmp) / "yolov6n.onnx")
            prof = profile_onnx(onnx_path, args.threads, runs=min(args.runs, 10))
        print(f"\nONNX Runtime profile of the same graph ({args.threads} threads, {min(args.runs, 10)} runs): "
              f"{prof['run_ms']:.1f} ms per run, {prof['nodes_ms']:.1f} ms inside operators\n")
        print("| operator | ms per run | share |\n|---|---:|---:|")
        for op, ms in prof["by_op"].items():
            if ms >= 0.05:
                print(f"| {op} | {ms:.2f} | {100 * ms / prof['nodes_ms']:.1f}% |")
        print("\n| conv class (as executed) | ms per run | GFLOP | GFLOP/s | % of measured GEMM peak |\n"
              "|---|---:|---:|---:|---:|")
        for label, c in prof["conv_classes"].items():
            print(f"| {label} | {c['ms']:.2f} | {c['gflop']:.2f} | {c['gflops_per_s']:.0f} | "
                  f"{100 * c['gflops_per_s'] / gemm:.0f}% |")
        conv_ms = sum(c["ms"] for c in prof["conv_classes"].values())
        conv_gflop = sum(c["gflop"] for c in prof["conv_classes"].values())
        print(f"\nwhere the time goes (ORT, {prof['run_ms']:.1f} ms per run): convolutions {conv_ms:.1f} ms at "
              f"{conv_gflop / conv_ms * 1e3:.0f} GFLOP/s ({conv_gflop / conv_ms * 1e3 / gemm * 100:.0f}% of the GEMM "
              f"peak); other operators {prof['nodes_ms'] - conv_ms:.1f} ms; executor overhead "
              f"{prof['run_ms'] - prof['nodes_ms']:.1f} ms (profiling itself slows the run: the unprofiled "
              f"backend call, numpy copies included, took {ref['results']['onnx']['median_ms']:.1f} ms)"
              if "onnx" in ref["results"] else "")
        analysis = {"gflops": ref["gflops"], "cpu": cpu, "assumed_flop_per_cycle": 32, **bound, "gemm_gflops": gemms,
                    "best_backend": best_name, "best_ms": best["median_ms"], "ratio": ratio, "ort_profile": prof}
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "results": results, "analysis": analysis,
                                               "load": [load0, load1]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
