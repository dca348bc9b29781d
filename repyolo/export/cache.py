"""The fastest installed runtime for a ``.pt`` checkpoint: a cached ONNX Runtime export.

On a CPU, ONNX Runtime runs a fused YOLOv6 1.4-1.7x faster than eager PyTorch (BENCHMARKS.md,
"Export and runtimes"). :func:`open_fast_backend` exports the checkpoint once to a
dynamic-shape ONNX file in a cache folder and reuses it afterwards; the file is keyed by
:func:`cache_key`: the checkpoint's bytes (SHA-256), the input size, the export settings and the
versions of repyolo, torch, onnx and onnxruntime, so a changed checkpoint or an upgraded package
makes a new entry and never reuses a stale one.

Safety: a new export is run once beside the PyTorch model on the same input before it is used;
if boxes differ by more than ``PARITY_PX`` pixels or scores by more than ``PARITY_SCORE``, the
entry is marked rejected (``.rejected`` beside it, never retried for that key) and PyTorch runs.
Any failure (no onnxruntime, an export error, a non-CPU device, ``half``) falls back to PyTorch
with one log line. Exporting costs seconds, so it is done only when the run has at least
``min_frames`` frames to process (a cache hit is always used).

Cache folder: ``$REPYOLO_CACHE_DIR/runtime``, else ``$XDG_CACHE_HOME/repyolo/runtime``, else
``~/.cache/repyolo/runtime``.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from importlib import metadata
from pathlib import Path

import torch

from repyolo.errors import one_line
from repyolo.runtime import Backend, load_backend
from repyolo.utils.logging import get_logger
from repyolo.version import __version__

LOGGER = get_logger(__name__)

PARITY_PX = 0.5        # largest box difference (input pixels) accepted between ONNX Runtime and PyTorch
PARITY_SCORE = 1e-4    # largest score difference accepted
EXPORT_OPSET = 17
RUNTIMES = ("auto", "torch", "onnx")


def cache_dir() -> Path:
    """The folder of cached runtime files (see the module docstring)."""
    if os.environ.get("REPYOLO_CACHE_DIR"):
        return Path(os.environ["REPYOLO_CACHE_DIR"]) / "runtime"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "repyolo" / "runtime"


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "none"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_key(weights_sha256: str, img_size: tuple[int, int], versions: dict[str, str] | None = None,
              opset: int = EXPORT_OPSET) -> tuple[str, dict]:
    """``(key, fields)``: the hex key of a cache entry and what it was made from. Pure function of
    the checkpoint hash, the input size, the export settings and the package ``versions``
    (default: the installed ones)."""
    if versions is None:
        versions = {"repyolo": __version__, "torch": torch.__version__, "onnx": _version("onnx"),
                    "onnxruntime": _version("onnxruntime")}
    fields = {"weights_sha256": weights_sha256, "img_size": [int(v) for v in img_size], "format": "onnx",
              "dynamic": True, "opset": int(opset), "versions": dict(sorted(versions.items()))}
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]
    return key, fields


def entry_paths(weights: Path, key: str, folder: Path | None = None) -> tuple[Path, Path, Path]:
    """``(model.onnx, fields.json, .rejected marker)`` of a cache entry."""
    folder = folder or cache_dir()
    stem = f"{weights.stem}-{key}"
    return folder / f"{stem}.onnx", folder / f"{stem}.json", folder / f"{stem}.rejected"


def _parity(torch_backend: Backend, onnx_backend: Backend, img_size: tuple[int, int]) -> tuple[float, float]:
    """Largest box and score differences of the two backends on one reproducible input."""
    g = torch.Generator().manual_seed(0)
    h, w = img_size
    x = torch.rand(1, 3, h, max(w - 2 * torch_backend.stride, torch_backend.stride), generator=g)  # a rect shape
    a, b = torch_backend(x).float(), onnx_backend(x).float()
    return float((a[..., :4] - b[..., :4]).abs().max()), float((a[..., 4:] - b[..., 4:]).abs().max())


def _export(weights: Path, model_backend: Backend, onnx_path: Path, json_path: Path, fields: dict,
            img_size: tuple[int, int]) -> Path | None:
    """Export, check parity, publish atomically. Returns the ONNX path, or ``None`` when rejected."""
    from repyolo.export import export_model

    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_name(f".{onnx_path.stem}.{os.getpid()}.onnx")
    t0 = time.perf_counter()
    try:
        export_model(model_backend.model, "onnx", img_size=img_size, dynamic=True, opset=EXPORT_OPSET, output=tmp)
        candidate = load_backend(tmp, "cpu", threads=1)
        box_err, score_err = _parity(model_backend, candidate, img_size)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fields = {**fields, "parity": {"box_px": box_err, "score": score_err}, "source": str(weights),
              "export_s": round(time.perf_counter() - t0, 2)}
    if box_err > PARITY_PX or score_err > PARITY_SCORE:
        tmp.unlink(missing_ok=True)
        onnx_path.with_suffix(".rejected").write_text(json.dumps(fields, indent=2))
        LOGGER.warning("ONNX Runtime export of %s differs from PyTorch (boxes %.3g px, scores %.3g): "
                       "using PyTorch", weights, box_err, score_err)
        return None
    os.replace(tmp, onnx_path)
    json_path.write_text(json.dumps(fields, indent=2))
    LOGGER.info("exported %s for ONNX Runtime in %.1f s (cached as %s)", weights.name, fields["export_s"], onnx_path)
    return onnx_path


def open_fast_backend(weights, device="cpu", img_size: tuple[int, int] = (640, 640), runtime: str = "auto",
                      threads: int | None = None, min_frames: int = 16, n_frames: int | None = None,
                      half: bool = False, folder: Path | None = None, torch_backend: Backend | None = None) -> Backend:
    """The backend ``predict`` should run ``weights`` with.

    ``runtime``: ``'torch'`` forces PyTorch; ``'onnx'`` uses (and if needed makes) the cached ONNX
    Runtime file whatever the frame count; ``'auto'`` uses a cached file, or makes one when
    ``n_frames`` (``None`` = unknown, e.g. a video) is at least ``min_frames``. Files that are not
    ``.pt`` checkpoints, CUDA devices and ``half`` always open as they are (:func:`load_backend`).
    ``torch_backend``: the PyTorch backend of ``weights`` when the caller has it already (used for the
    parity check and whenever PyTorch runs, instead of loading the file again).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    kwargs = {"threads": threads} if threads else {}
    if half:
        kwargs["half"] = True

    def torch_runtime() -> Backend:
        return torch_backend if torch_backend is not None else load_backend(weights, dev, **kwargs)

    path = Path(weights) if isinstance(weights, (str, Path)) else None
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if (runtime == "torch" or path is None or not path.is_file() or path.suffix.lower() != ".pt"
            or dev.type != "cpu" or half):
        return torch_runtime()
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        LOGGER.info("onnxruntime not installed: running PyTorch")
        return torch_runtime()
    key, fields = cache_key(file_sha256(path), img_size)
    onnx_path, json_path, rejected = entry_paths(path, key, folder)
    if rejected.exists():
        return torch_runtime()
    if not onnx_path.exists():
        worth = runtime == "onnx" or n_frames is None or n_frames >= min_frames
        if not worth:
            LOGGER.info("%d frame(s): PyTorch (an ONNX Runtime export pays from %d frames; --runtime onnx forces it)",
                        n_frames, min_frames)
            return torch_runtime()
        model_backend = torch_runtime()
        try:
            if _export(path, model_backend, onnx_path, json_path, fields, img_size) is None:
                return model_backend
        except Exception as exc:  # noqa: BLE001 - any export problem: PyTorch runs
            LOGGER.warning("ONNX Runtime export of %s failed (%s): using PyTorch", path, one_line(exc))
            return model_backend
    try:
        backend = load_backend(onnx_path, dev, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a damaged cache entry is removed and PyTorch runs
        LOGGER.warning("cached ONNX file %s unusable (%s): removed; using PyTorch", onnx_path, one_line(exc))
        onnx_path.unlink(missing_ok=True)
        return torch_runtime()
    LOGGER.info("runtime: ONNX Runtime (cached export of %s; --runtime torch forces PyTorch)", path.name)
    backend.source = str(path)
    return backend


__all__ = ["PARITY_PX", "PARITY_SCORE", "RUNTIMES", "cache_dir", "cache_key", "entry_paths", "file_sha256",
           "open_fast_backend"]
