"""Per-layer quantization sensitivity: quantize ONE conv at a time, everything else FP32.

RepVGG-style re-parameterized convs can have wide, uneven weight and activation
distributions, so a few layers cause most of the INT8 error. For every conv node this module
builds the model where only that conv (its input, weights, bias and output) is INT8 and scores
it four ways, as the YOLOv6 quantization write-up suggests:

* ``map_drop``: COCO mAP@0.5:0.95 lost on a fixed subset of validation images;
* ``mse``: mean squared error of the raw outputs against FP32 (boxes divided by the input size);
* ``snr``: signal-to-noise ratio of those outputs, in dB (lower = more sensitive);
* ``cosine``: cosine similarity of those outputs per image (lower = more sensitive).

It is fast because the activation ranges are calibrated once for the whole model and every
single-layer variant is built from them; one onnxruntime session per variant serves both the
output metrics and the mAP run, and images are decoded once.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from repyolo.errors import RepyoloError
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

METRICS = ("map", "mse", "snr", "cosine")
# sort key per metric: larger = more sensitive
_SEVERITY = {"map": lambda r: r.map_drop, "mse": lambda r: r.mse, "snr": lambda r: -r.snr,
             "cosine": lambda r: -r.cosine}


@dataclass
class LayerSensitivity:
    """Scores of the model where only ``node`` is INT8."""

    node: str
    mse: float
    snr: float
    cosine: float
    map: float | None = None
    map_drop: float | None = None


@dataclass
class SensitivityReport:
    """Per-layer scores and rankings (most sensitive first).

    Attributes: ``layers`` (one :class:`LayerSensitivity` per conv, graph order), ``fp32_map``,
    ``full_int8`` (the scores of the fully quantized model, same metrics), plus the settings.
    """

    model: str
    img_size: int
    calibrator: str
    calib_images: int
    metric_images: int
    eval_images: int
    fp32_map: float | None
    layers: list[LayerSensitivity]
    full_int8: dict = field(default_factory=dict)
    time_s: float = 0.0

    def metrics(self) -> list[str]:
        return [m for m in METRICS if m != "map" or all(r.map_drop is not None for r in self.layers)]

    def ranking(self, metric: str = "mse") -> list[str]:
        """Conv node names, most sensitive first, by ``metric`` (``'map' | 'mse' | 'snr' | 'cosine'``)."""
        if metric not in METRICS:
            raise RepyoloError(f"unknown sensitivity metric {metric!r}; choose one of {', '.join(METRICS)}")
        if metric == "map" and any(r.map_drop is None for r in self.layers):
            raise RepyoloError("this sensitivity report has no mAP scores (run it with --eval-images > 0)")
        key = _SEVERITY[metric]
        order = sorted(range(len(self.layers)), key=lambda i: (-key(self.layers[i]), i))
        return [self.layers[i].node for i in order]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rankings"] = {m: self.ranking(m) for m in self.metrics()}
        return _finite(d)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SensitivityReport":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            layers = [LayerSensitivity(**{k: (v if v is not None else (math.inf if k == "snr" else None))
                                          for k, v in r.items()}) for r in d["layers"]]
            keys = ("model", "img_size", "calibrator", "calib_images", "metric_images", "eval_images", "fp32_map")
            return cls(**{k: d[k] for k in keys}, layers=layers, full_int8=d.get("full_int8", {}),
                       time_s=d.get("time_s", 0.0))
        except FileNotFoundError:
            raise RepyoloError(f"{path}: sensitivity report not found") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise RepyoloError(f"{path}: not a repyolo sensitivity report ({type(exc).__name__}: {exc})") from None

    def table(self, top: int | None = None) -> str:
        """Per-layer table (graph order) with each metric's rank (1 = most sensitive); the mAP drop is
        in points (x100), the cosine similarity is shown as ``1 - cosine``."""
        metrics = self.metrics()
        ranks = {m: {n: i + 1 for i, n in enumerate(self.ranking(m))} for m in metrics}
        rows = self.layers
        if top:
            first = metrics[0] if "map" not in metrics else "map"
            keep = set(self.ranking(first)[:top])
            rows = [r for r in rows if r.node in keep]
        width = max(12, min(60, max(len(r.node) for r in rows)))
        head = f"{'layer':<{width}} {'mAP drop':>9} {'#':>3} {'MSE':>10} {'#':>3} {'SNR dB':>8} {'#':>3} " \
               f"{'1-cosine':>10} {'#':>3}"
        lines = [head]
        for r in rows:
            name = r.node if len(r.node) <= width else "..." + r.node[-(width - 3):]
            md = f"{r.map_drop * 100:>9.2f}" if r.map_drop is not None else f"{'-':>9}"
            rk = {m: ranks[m].get(r.node, "-") if m in ranks else "-" for m in METRICS}
            lines.append(f"{name:<{width}} {md} {rk['map']!s:>3} {r.mse:>10.3e} {rk['mse']!s:>3} {r.snr:>8.2f} "
                         f"{rk['snr']!s:>3} {1.0 - r.cosine:>10.3e} {rk['cosine']!s:>3}")
        if self.fp32_map is not None:
            lines.append(f"FP32 mAP@0.5:0.95 {self.fp32_map:.4f} on {self.eval_images} val images; "
                         f"mAP drop in points (x100)")
        if self.full_int8:
            f = self.full_int8
            md = f", mAP drop {f['map_drop'] * 100:.2f}" if f.get("map_drop") is not None else ""
            lines.append(f"all layers INT8: MSE {f['mse']:.3e}, SNR {f['snr']:.2f} dB, "
                         f"1-cosine {1 - f['cosine']:.3e}{md}")
        return "\n".join(lines)


def _finite(obj):
    """JSON-safe: inf/nan floats -> None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def candidate_layers(ctx) -> list[str]:
    """The convs sensitivity analysis scores: every conv the quantizer may touch."""
    from repyolo.quant.qdq import default_exclusions

    excluded = set(default_exclusions(ctx.fp, ctx.settings))
    return [n for n in ctx.fp.convs if n not in excluded]


def analyze(ctx, evaluator=None, metric_images: int = 32, layers: list[str] | None = None,
            threads: int | None = None, include_full: bool = True) -> SensitivityReport:
    """Score every conv of a :class:`~repyolo.quant.qdq.PTQContext` quantized alone.

    Args:
        ctx: the calibrated context (ranges computed once).
        evaluator: a :class:`~repyolo.quant.evaluate.SubsetEvaluator` for the mAP metric, or ``None``.
        metric_images: calibration images used for MSE / SNR / cosine (the first ``metric_images``).
        layers: conv names to score (default: :func:`candidate_layers`).
        include_full: also score the fully quantized model (reported as ``full_int8``).
    """
    from repyolo.quant.evaluate import normalized, output_errors, raw_outputs, session_backend

    t0 = time.time()
    layers = list(layers) if layers else candidate_layers(ctx)
    unknown = [n for n in layers if n not in ctx.fp.convs]
    if unknown:
        raise RepyoloError(f"not conv nodes of the model: {', '.join(unknown[:5])}")
    images = ctx.images[:max(1, int(metric_images))]
    size = ctx.fp.img_size
    with tempfile.TemporaryDirectory(prefix="repyolo_sens_") as tmp:
        fp32 = session_backend(ctx.fp.path, threads=threads)
        ref = normalized(raw_outputs(fp32, images), size)
        fp32_map = evaluator(fp32)["map"] if evaluator is not None else None
        del fp32

        def score(proto) -> dict:
            backend = session_backend(proto, threads=threads, workdir=tmp)
            s = output_errors(ref, normalized(raw_outputs(backend, images), size))
            if evaluator is not None:
                s["map"] = float(evaluator(backend)["map"])
                s["map_drop"] = float(fp32_map - s["map"])
            return s

        results = []
        for k, node in enumerate(layers):
            s = score(ctx.build(only=[node]))
            results.append(LayerSensitivity(node=node, **s))
            LOGGER.info("sensitivity %d/%d %s: mse %.3e snr %.2f dB cos %.6f%s", k + 1, len(layers), node, s["mse"],
                        s["snr"], s["cosine"], f" mAP drop {s['map_drop'] * 100:.2f}" if "map_drop" in s else "")
        full = score(ctx.build()) if include_full else {}
    model = ctx.fp.metadata.get("model", ctx.fp.path.stem)
    return SensitivityReport(model=str(model), img_size=int(size[0]), calibrator=ctx.settings.calibrator,
                             calib_images=int(len(ctx.images)), metric_images=int(len(images)),
                             eval_images=len(evaluator) if evaluator is not None else 0,
                             fp32_map=None if fp32_map is None else float(fp32_map), layers=results,
                             full_int8=full, time_s=round(time.time() - t0, 1))


def sensitivity_analysis(weights, data, *, calib: int = 100, calibrator: str = "minmax", img_size: int = 640,
                         eval_images: int = 50, metric_images: int = 32, json_out: str | Path | None = None,
                         layers: list[str] | None = None, activation_type: str = "uint8", per_channel: bool = True,
                         quantize_preds: bool = True, threads: int | None = None, seed: int = 0,
                         ctx=None) -> SensitivityReport:
    """Calibrate once, then score every conv quantized alone (see module docstring).

    Args:
        weights: checkpoint / model / FP32 repyolo ``.onnx``; data: data YAML.
        calib: calibration images (train split); eval_images: val images for the mAP metric
            (``0``: skip the mAP metric); metric_images: calibration images for MSE / SNR / cosine.
        json_out: write the report there.
        ctx: an existing :class:`~repyolo.quant.qdq.PTQContext` (skips export and calibration).
    """
    from repyolo.quant.evaluate import SubsetEvaluator
    from repyolo.quant.qdq import QuantSettings, prepare

    with tempfile.TemporaryDirectory(prefix="repyolo_sens_") as tmp:
        if ctx is None:
            settings = QuantSettings(calibrator=calibrator, calib=calib, activation_type=activation_type,
                                     per_channel=per_channel, quantize_preds=quantize_preds)
            ctx = prepare(weights, data, settings, img_size=img_size, workdir=tmp, seed=seed)
        evaluator = None
        if eval_images:
            evaluator = SubsetEvaluator(data, ctx.fp.img_size[0], n_images=eval_images,
                                        stride=int(ctx.fp.metadata.get("stride", 32)), seed=seed)
        report = analyze(ctx, evaluator, metric_images=metric_images, layers=layers, threads=threads)
    if json_out:
        report.save(json_out)
        LOGGER.info("sensitivity report: %s", json_out)
    return report


__all__ = ["METRICS", "LayerSensitivity", "SensitivityReport", "analyze", "candidate_layers",
           "sensitivity_analysis"]
