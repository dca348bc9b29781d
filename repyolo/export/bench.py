"""Latency / throughput of one model on several backends, measured fairly.

Each backend is built from the same weights (exported on the fly into a temporary folder),
warmed up, then timed **round-robin**: run ``r`` times every backend once, in an order
rotated by ``r``, so a drifting clock (thermal or turbo changes, a neighbour process on a
shared machine) hits every backend alike. Each timing is one call ``backend(x)`` on a fixed
``(batch, 3, H, W)`` input, including the tensor <-> numpy copies a user of that backend pays.

Backends: ``torch`` (fused, or not with ``fuse=False``), ``torch-unfused``, ``torchscript``,
``onnx`` (onnxruntime CPU), ``openvino`` (CPU, fp32), ``openvino-bf16`` (CPU, bf16 inference
precision, where the CPU has AVX512-BF16/AMX), ``ncnn`` (the ``ncnn`` package, fp32, one image per
call; decoding in Python, as for every NCNN user).

``weights`` may also be an exported file (an NCNN ``.param`` or folder, ``.onnx``, OpenVINO folder,
``.torchscript``): then that file alone is timed, as its own backend.
"""
from __future__ import annotations

import copy
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from repyolo.errors import RepyoloError
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)
BACKENDS = ("torch", "torch-unfused", "torchscript", "onnx", "openvino", "openvino-bf16", "ncnn")


def _load_source(weights) -> tuple[torch.nn.Module, str]:
    """A checkpoint path, a model name / YAML (random weights: latency does not depend on them) or a model."""
    if isinstance(weights, torch.nn.Module):
        return weights.eval(), str(weights.cfg.get("name", "model"))
    path = Path(str(weights))
    if path.suffix.lower() in (".pt", ".pth") or (path.is_file() and path.suffix.lower() not in (".yaml", ".yml")):
        from repyolo.io.checkpoint import load_model

        return load_model(path), str(path)
    from repyolo.nn.model import build_model

    model = build_model(str(weights))
    LOGGER.info("%s: model config with random weights (latency does not depend on the weights)", weights)
    return model.eval(), str(weights)


def cpu_name() -> str:
    """CPU model string from /proc/cpuinfo (falls back to ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_backends(model: torch.nn.Module, names: list[str], img_size: tuple[int, int], batch: int,
                   threads: int | None, fuse: bool, workdir: Path) -> dict:
    """``{name: backend}`` for the requested backend names, exporting into ``workdir`` as needed."""
    from repyolo.export.exporter import export_model
    from repyolo.runtime import load_backend
    from repyolo.runtime.pytorch import TorchBackend

    backends, exported = {}, {}

    def exported_file(fmt: str) -> Path:
        if fmt not in exported:
            suffix = {"onnx": ".onnx", "openvino": "_openvino_model", "torchscript": ".torchscript",
                      "ncnn": "_ncnn_model"}[fmt]
            exported[fmt] = export_model(model, fmt, img_size=img_size, batch=batch,
                                         output=workdir / f"model{suffix}")
        return exported[fmt]

    for name in names:
        if name in ("torch", "torch-unfused"):
            backends[name] = TorchBackend(copy.deepcopy(model), fuse=fuse and name == "torch", threads=threads)
        elif name == "torchscript":
            backends[name] = load_backend(exported_file("torchscript"), threads=threads)
        elif name == "onnx":
            backends[name] = load_backend(exported_file("onnx"), threads=threads)
        elif name == "ncnn":
            backends[name] = load_backend(exported_file("ncnn"), threads=threads)
        elif name in ("openvino", "openvino-bf16"):
            backends[name] = load_backend(exported_file("openvino"), threads=threads,
                                          precision="bf16" if name.endswith("bf16") else "f32")
        else:
            raise RepyoloError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return backends


def time_round_robin(backends: dict, x: torch.Tensor, warmup: int = 5, runs: int = 30,
                     pause_ms: float = 20.0) -> dict[str, list[float]]:
    """Milliseconds per call of every backend, ``runs`` rounds, order rotated each round.

    Each timed call is preceded by a ``pause_ms`` sleep: the thread pools of onnxruntime, OpenVINO
    and OpenMP keep spinning for a while after a call, and without the pause they would steal
    the cores from the next backend in the round.
    """
    names = list(backends)
    for name in names:
        for _ in range(warmup):
            backends[name](x)
    times = {name: [] for name in names}
    for r in range(runs):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            time.sleep(pause_ms / 1e3)
            t0 = time.perf_counter()
            backends[name](x)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def summarize(ms: list[float], batch: int) -> dict:
    a = np.asarray(ms)
    median = float(np.median(a))
    return {"median_ms": round(median, 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "mean_ms": round(float(a.mean()), 3), "min_ms": round(float(a.min()), 3),
            "std_ms": round(float(a.std()), 3), "throughput_ips": round(batch * 1e3 / median, 2), "runs": len(ms)}


def exported_kind(weights) -> str | None:
    """``'onnx' | 'openvino' | 'torchscript' | 'ncnn'`` for an exported model file (or an OpenVINO /
    NCNN folder), else ``None``."""
    if isinstance(weights, torch.nn.Module):
        return None
    path = Path(str(weights))
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".torchscript":
        return "torchscript"
    if suffix == ".param" or (path.is_dir() and any(path.glob("*.param"))):
        return "ncnn"
    if suffix == ".xml" or path.is_dir():
        return "openvino"
    return None


def _backend_names(backends, kind: str | None, weights) -> list[str]:
    """The backends to time: the given ones (checked), or the default for the weights' kind."""
    if backends is None:
        return [kind] if kind else ["torch", "onnx", "openvino"]
    names = [b.strip() for b in (backends.split(",") if isinstance(backends, str) else backends) if b.strip()]
    bad = [b for b in names if b not in BACKENDS]
    if bad or not names:
        raise RepyoloError(f"unknown backend(s) {bad}; choose from {', '.join(BACKENDS)}")
    allowed = {"onnx": ("onnx",), "torchscript": ("torchscript",), "openvino": ("openvino", "openvino-bf16"),
               "ncnn": ("ncnn",)}
    if kind and any(b not in allowed[kind] for b in names):
        raise RepyoloError(f"{weights}: an exported {kind} model runs on the {' / '.join(allowed[kind])} backend "
                           f"only (asked: {', '.join(names)}); to compare runtimes, bench the .pt checkpoint")
    return names


def _exported_backends(weights, kind: str, names: list[str], img_size, batch: int, threads):
    """``(backends, (h, w), batch)`` for an exported file: its own fixed input size and batch win."""
    from repyolo.runtime import load_backend

    built = {n: load_backend(weights, threads=threads, **({"precision": "bf16"} if n.endswith("bf16") else {}))
             for n in names}
    first = next(iter(built.values()))
    h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if first.img_size is not None and tuple(first.img_size) != (h, w):
        LOGGER.info("%s takes a fixed %dx%d input: timing at that size", weights, *first.img_size)
        h, w = (int(v) for v in first.img_size)
    elif h % first.stride or w % first.stride:
        raise RepyoloError(f"--img {h}x{w}: must be a multiple of the stride {first.stride}")
    if first.batch and first.batch != batch:
        LOGGER.info("%s has a fixed batch of %d: timing that batch", weights, first.batch)
        batch = int(first.batch)
    return built, (h, w), batch


def benchmark(weights, img_size: int | tuple[int, int] = 640, backends=None,
              batch: int = 1, threads: int | None = None, warmup: int = 5, runs: int = 30, fuse: bool = True,
              workdir: str | Path | None = None, seed: int = 0) -> dict:
    """Measure ``weights`` on ``backends``: a checkpoint, a model name/YAML or a model (exported on
    the fly for each runtime; default torch, onnx, openvino), or an exported file (``.onnx``,
    OpenVINO folder, ``.torchscript``, NCNN ``.param`` / folder: timed on its own runtime, at its own
    fixed size and batch).

    Returns ``{"model", "img", "batch", "threads", "warmup", "runs", "fused", "gflops", "cpu",
    "versions", "results": {backend: {"median_ms", "p90_ms", "mean_ms", "min_ms", "std_ms",
    "throughput_ips", "runs"}}}`` (throughput in images/s from the median latency; ``gflops`` is
    ``None`` for an exported file).
    """
    from repyolo.utils.flops import count_gflops

    kind = exported_kind(weights)
    names = _backend_names(backends, kind, weights)
    if runs < 1 or warmup < 0 or batch < 1:
        raise RepyoloError("bench needs --runs >= 1, --warmup >= 0, --batch >= 1")
    if threads:
        torch.set_num_threads(int(threads))
    if kind:
        if not Path(str(weights)).exists():
            raise RepyoloError(f"{weights}: model file not found")
        built, (h, w), batch = _exported_backends(weights, kind, names, img_size, batch, threads)
        source, gflops, fuse = str(weights), None, True
        x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))
        times = time_round_robin(built, x, warmup, runs)
    else:
        model, source = _load_source(weights)
        h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if h % model.max_stride or w % model.max_stride:
            raise RepyoloError(f"--img {h}x{w}: must be a multiple of the stride {model.max_stride}")
        gflops = count_gflops(copy.deepcopy(model).fuse(), (h, w), batch)  # the deploy model's work, for every backend
        x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))
        with tempfile.TemporaryDirectory(prefix="repyolo_bench_", dir=workdir) as tmp:
            built = build_backends(model, names, (h, w), batch, threads, fuse, Path(tmp))
            times = time_round_robin(built, x, warmup, runs)
    versions = {"torch": torch.__version__}
    for mod in ("onnxruntime", "openvino", "ncnn"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return {"model": source, "img": [h, w], "batch": batch, "threads": threads or torch.get_num_threads(),
            "warmup": warmup, "runs": runs, "fused": fuse, "gflops": None if gflops is None else round(gflops, 3),
            "cpu": cpu_name(),
            "versions": versions, "results": {name: summarize(ms, batch) for name, ms in times.items()}}


def format_table(result: dict) -> str:
    """Markdown table of a :func:`benchmark` result."""
    h, w = result["img"]
    gflops = result.get("gflops")
    work = f"{gflops:.2f} GFLOPs" if gflops is not None else "GFLOPs unknown (exported file)"
    lines = [f"{result['model']}  {h}x{w}  batch {result['batch']}  threads {result['threads']}  "
             f"{work}  ({result['runs']} interleaved runs, {result['cpu']})",
             "", "| backend | median ms | p90 ms | min ms | img/s | GFLOP/s |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in result["results"].items():
        achieved = f"{gflops / (r['median_ms'] / 1e3):.1f}" if gflops is not None else "-"
        lines.append(f"| {name} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['min_ms']:.2f} | "
                     f"{r['throughput_ips']:.1f} | {achieved} |")
    return "\n".join(lines)
