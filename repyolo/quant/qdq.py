"""QDQ building blocks of INT8 quantization: the FP32 ONNX model, calibration ranges, QDQ insertion.

Pipeline (:func:`repyolo.quant.ptq.quantize_ptq`): export the fused FP32 model to a static-shape
ONNX file -> calibrate the activation ranges once on letterboxed images
(:mod:`repyolo.quant.calibrate`) -> insert QuantizeLinear / DequantizeLinear pairs with onnxruntime's
QDQ quantizer: INT8 weights (per output channel, symmetric), per-tensor activations (UINT8
asymmetric by default: the U8S8 kernels are the fast path of onnxruntime on x86; INT8 activations
ran ~3x slower on the AVX512-VNNI machine of the benchmark, per-tensor weights lost 1.2 mAP points).

The box-decoding tail of the head (level concat, score sigmoid, distance -> box) always stays
FP32: boxes in pixels and scores in 0..1 share one output tensor, and a single 8-bit scale
for both would wipe out the scores. The head's 1x1 prediction convs can be kept FP32 too
(``quantize_preds=False``). Sensitivity analysis, partial quantization, PTQ and QAT all build on
:class:`PTQContext`.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from repyolo.errors import CheckpointError, RepyoloError
from repyolo.quant import graph as G
from repyolo.quant.calibrate import CalibrationImages, calibration_method, collect_ranges
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

ACTIVATION_TYPES = ("uint8", "int8")


@dataclass
class QuantSettings:
    """How to quantize.

    Attributes:
        calibrator: ``'minmax' | 'percentile' | 'entropy'``.
        calib: number of calibration images; calib_split: data set split they come from.
        activation_type: ``'uint8'`` (asymmetric, fastest on x86 onnxruntime) or ``'int8'``.
        per_channel: per-output-channel weight scales (``False``: one scale per tensor).
        op_types: op types to quantize (``None``: all onnxruntime supports in QDQ form).
        quantize_preds: quantize the head's final 1x1 prediction convs (the decoding tail never is).
            On by default: keeping them FP32 was slower and no more accurate on the demo model
            (mAP drop 0.36 vs 0.11 points; onnxruntime then leaves DQ -> FP32 conv in the head).
        percentile: percentile of the ``'percentile'`` calibrator.
    """

    calibrator: str = "minmax"
    calib: int = 100
    calib_split: str = "train"
    activation_type: str = "uint8"
    per_channel: bool = True
    op_types: tuple[str, ...] | None = None
    quantize_preds: bool = True
    percentile: float = 99.999

    def __post_init__(self):
        calibration_method(self.calibrator)  # validates the name
        if self.activation_type not in ACTIVATION_TYPES:
            raise RepyoloError(f"activation type {self.activation_type!r}: choose one of {', '.join(ACTIVATION_TYPES)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["op_types"] = list(self.op_types) if self.op_types else None
        return d


@contextlib.contextmanager
def quiet_onnxruntime():
    """Silence onnxruntime.quantization's root-logger chatter (pre-processing hints, per-node info)."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(previous)


# ---------------------------------------------------------------------------------------------- FP32 model


def export_fp32(weights_or_model, img_size: int, output: str | Path) -> Path:
    """Export the fused FP32 model to a static ``1 x 3 x S x S`` ONNX file (simplified)."""
    from repyolo.export import export_model

    return Path(export_model(weights_or_model, "onnx", img_size=int(img_size), batch=1, dynamic=False,
                             simplify=True, output=output))


@dataclass
class FloatModel:
    """A prepared FP32 ONNX model: one weight/bias initializer per conv, shapes inferred.

    Attributes:
        path: the ONNX file (the calibrator and the quantizer read it).
        proto: shape-inferred ``onnx.ModelProto`` (copied for each quantized variant).
        input_name, img_size ``(H, W)``; convs: conv node names in graph order;
        preds: the head's prediction convs; tail: the box-decoding nodes after them;
        metadata: the file's ``metadata_props`` string map.
    """

    path: Path
    proto: object
    input_name: str
    img_size: tuple[int, int]
    convs: list[str]
    preds: list[str]
    tail: list[str]
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, workdir: str | Path | None = None) -> "FloatModel":
        """Read a repyolo FP32 ONNX export. The prepared graph (one initializer per conv) is written to
        ``workdir`` when given, else beside the file as ``*_prepared.onnx`` if it differs from it."""
        import onnx
        from onnx import shape_inference

        path = Path(path)
        try:
            proto = onnx.load(str(path))
        except Exception as exc:  # protobuf decode errors
            raise CheckpointError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
        if G.qdq_counts(proto)["QuantizeLinear"] or G.qdq_counts(proto)["DequantizeLinear"]:
            raise RepyoloError(f"{path}: already quantized (QDQ nodes present); give the FP32 model")
        inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
        if len(inputs) != 1:
            raise CheckpointError(f"{path}: expected one image input, found {len(inputs)}")
        dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) != 4 or not all(dims):
            raise RepyoloError(f"{path}: quantization needs a static (1, 3, H, W) input; got {dims} "
                               "(export without --dynamic)")
        if dims[0] != 1:
            raise RepyoloError(f"{path}: quantization expects batch 1 (got {dims[0]})")
        from repyolo.runtime.metadata import from_strings

        meta = from_strings(G.read_metadata(proto), path)  # a repyolo export: names, stride, layout
        if meta.get("output_layout") == "end2end":
            raise RepyoloError(f"{path}: an end-to-end (--nms) export; quantize the raw-output export "
                               "(or the checkpoint)")
        copies = G.unshare_initializers(proto)
        proto = shape_inference.infer_shapes(proto)
        if workdir is not None or copies:  # the calibrator reads a file: write the prepared graph
            out = Path(workdir) / path.name if workdir is not None else path.with_name(path.stem + "_prepared.onnx")
            onnx.save(proto, str(out))
            path = out
        preds, tail = G.decode_tail(proto)
        return cls(path=path, proto=proto, input_name=inputs[0].name, img_size=(dims[2], dims[3]),
                   convs=G.conv_nodes(proto), preds=preds, tail=tail, metadata=G.read_metadata(proto))


# ---------------------------------------------------------------------------------------------- quantizer


def _quant_types(settings: QuantSettings):
    from onnxruntime.quantization import QuantType

    act = QuantType.QUInt8 if settings.activation_type == "uint8" else QuantType.QInt8
    return act, QuantType.QInt8


def _extra_options() -> dict:
    return {"ActivationSymmetric": False, "WeightSymmetric": True}


def build_qdq(fp: FloatModel, ranges, settings: QuantSettings, exclude=(), only=None):
    """An INT8 QDQ ``onnx.ModelProto`` of ``fp`` from calibrated ``ranges`` (nothing is re-calibrated).

    Args:
        ranges: onnxruntime ``TensorsData`` from :func:`~repyolo.quant.calibrate.collect_ranges`.
        exclude: node names kept in FP32 (the decoding tail, and the prediction convs when
            ``settings.quantize_preds`` is off, are always added).
        only: quantize these nodes only (``nodes_to_quantize``); ``None`` = every eligible node.
    """
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    act, weight = _quant_types(settings)
    excluded = sorted(set(exclude) | set(default_exclusions(fp, settings)))
    nodes = list(only) if only else []
    op_types = list(settings.op_types) if settings.op_types else _default_op_types()
    with quiet_onnxruntime():
        # a private onnxruntime class (pyproject bounds onnxruntime to the versions this was checked on);
        # keywords, so a reordered signature fails loudly instead of silently mixing arguments
        quantizer = QDQQuantizer(model=copy.deepcopy(fp.proto), per_channel=settings.per_channel,
                                 reduce_range=False, weight_qType=weight, activation_qType=act,
                                 tensors_range=ranges, nodes_to_quantize=nodes, nodes_to_exclude=excluded,
                                 op_types_to_quantize=op_types, extra_options=_extra_options())
        quantizer.quantize_model()
    return quantizer.model.model


def _default_op_types() -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def default_exclusions(fp: FloatModel, settings: QuantSettings) -> list[str]:
    """Nodes that stay FP32 by default: the decoding tail (+ prediction convs unless ``quantize_preds``)."""
    return list(fp.tail) + ([] if settings.quantize_preds else list(fp.preds))


def save_quantized(proto, path: str | Path, fp: FloatModel, quant_meta: dict) -> Path:
    """Write a quantized model with the FP32 export's metadata plus ``quantization`` (``quant_meta``
    and the list of convs left in FP32)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**quant_meta, "fp32_convs": G.float_convs(proto), "int8_convs": len(G.quantized_convs(proto))}
    G.write_metadata(proto, fp.metadata, {"quantization": meta})
    proto.producer_name = "repyolo"
    onnx.save(proto, str(path))
    return path


class PTQContext:
    """An FP32 model, its calibration images and ranges (calibrated once), ready to build variants.

    Args:
        fp: the prepared :class:`FloatModel`.
        images: uint8 ``(N, 3, H, W)`` calibration images (letterboxed like evaluation).
        settings: :class:`QuantSettings`.
        ranges: precomputed ``TensorsData`` (skip calibration).
    """

    def __init__(self, fp: FloatModel, images: np.ndarray, settings: QuantSettings, ranges=None):
        self.fp, self.images, self.settings = fp, images, settings
        if images.shape[2:] != tuple(fp.img_size):
            raise RepyoloError(f"calibration images are {images.shape[2]}x{images.shape[3]}, the model takes "
                               f"{fp.img_size[0]}x{fp.img_size[1]}")
        if ranges is None:
            op_types = list(settings.op_types) if settings.op_types else None
            with quiet_onnxruntime():
                ranges = collect_ranges(fp.path, images, settings.calibrator, op_types=op_types,
                                        percentile=settings.percentile, input_name=fp.input_name)
        self.ranges = ranges

    def build(self, exclude=(), only=None):
        """A QDQ ``ModelProto`` (see :func:`build_qdq`)."""
        return build_qdq(self.fp, self.ranges, self.settings, exclude=exclude, only=only)

    def metadata(self, method: str = "ptq", **extra) -> dict:
        return {"method": method, "format": "QDQ", "weights": "int8 symmetric " +
                ("per-channel" if self.settings.per_channel else "per-tensor"),
                "activations": f"{self.settings.activation_type} per-tensor" +
                (" asymmetric" if self.settings.activation_type == "uint8" else ""),
                "calibrator": self.settings.calibrator, "calib_images": int(len(self.images)),
                "calib_split": self.settings.calib_split, **extra}

    def save(self, proto, path, method: str = "ptq", **extra) -> Path:
        return save_quantized(proto, path, self.fp, self.metadata(method, **extra))


def to_openvino(onnx_path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Convert a quantized (QDQ) ONNX file to an OpenVINO IR folder readable by ``repyolo val`` /
    ``load_backend`` (OpenVINO turns the QDQ pairs into FakeQuantize and runs INT8 kernels).

    The metadata goes to the IR's ``rt_info`` and ``metadata.yaml``, as for ``repyolo export``.
    Returns the folder (default ``<stem>_openvino_model`` beside the ONNX file).
    """
    import json

    import yaml

    try:
        import openvino as ov
    except ImportError:
        raise RepyoloError("OpenVINO conversion needs the openvino package (pip install openvino)") from None
    import onnx

    from repyolo.runtime.metadata import OPENVINO_METADATA_FILE as METADATA_FILE
    from repyolo.runtime.metadata import OPENVINO_RT_SECTION as RT_SECTION

    onnx_path = Path(onnx_path)
    out_dir = Path(out_dir) if out_dir else onnx_path.with_name(onnx_path.stem + "_openvino_model")
    out_dir.mkdir(parents=True, exist_ok=True)
    props = G.read_metadata(onnx.load(str(onnx_path), load_external_data=False))
    ov_model = ov.convert_model(str(onnx_path))
    for key, value in props.items():
        ov_model.set_rt_info(value, [RT_SECTION, key])
    xml = out_dir / f"{onnx_path.stem}.xml"
    ov.save_model(ov_model, str(xml), compress_to_fp16=False)
    meta = {}
    for key, value in props.items():
        try:
            meta[key] = json.loads(value)
        except ValueError:
            meta[key] = value
    (out_dir / METADATA_FILE).write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    LOGGER.info("OpenVINO INT8 IR: %s", xml)
    return out_dir


def default_img_size(weights, fallback: int = 640) -> int:
    """The input size to quantize at when none is given: the training size saved in a repyolo
    checkpoint (``args.img``), else ``fallback`` (an ONNX file keeps its own static size anyway)."""
    if isinstance(weights, (str, Path)) and Path(weights).suffix.lower() == ".pt" and Path(weights).is_file():
        try:
            from repyolo.io.checkpoint import read_checkpoint, training_img_size

            img = training_img_size(read_checkpoint(weights))
            if img:
                LOGGER.info("input size %d (the size %s was trained at; --img to change)", int(img), weights)
                return int(img)
        except Exception:  # an unreadable checkpoint is reported by the export step itself
            pass
    return int(fallback)


def default_output(weights, suffix: str = "_int8") -> Path:
    if isinstance(weights, (str, Path)):
        w = Path(weights)
        return w.with_name(w.stem + suffix + ".onnx")
    return Path.cwd() / f"model{suffix}.onnx"


def prepare(weights, data, settings: QuantSettings, img_size: int = 640, workdir: str | Path | None = None,
            seed: int = 0) -> PTQContext:
    """Export (or read) the FP32 ONNX model, load calibration images, calibrate: a :class:`PTQContext`.

    ``weights``: a repyolo checkpoint / model (exported here) or an FP32 repyolo ``.onnx`` export.
    ``workdir``: where the FP32 model is written (a temporary folder the caller owns).
    """
    workdir = Path(workdir or tempfile.mkdtemp(prefix="repyolo_quant_"))
    if isinstance(weights, (str, Path)) and Path(weights).suffix.lower() == ".onnx":
        fp = FloatModel.load(weights, workdir=workdir)
    else:
        fp = FloatModel.load(export_fp32(weights, img_size, workdir / "model_fp32.onnx"))
    stride = int(fp.metadata.get("stride", 32))
    calib = CalibrationImages(data, n=settings.calib, img_size=fp.img_size[0], split=settings.calib_split,
                              stride=stride, seed=seed)
    if fp.img_size[0] != fp.img_size[1]:
        raise RepyoloError(f"{fp.path}: quantization needs a square input, got {fp.img_size}")
    return PTQContext(fp, calib.images(), settings)
