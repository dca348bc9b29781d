"""Quantization-aware training (QAT) of the fused model, distilled from its FP32 self.

Why the fused model: a RepVGG block can only be merged after training, and merging changes
the weights that INT8 rounding sees, so QAT must run on the deploy form (one conv per block,
the form RepOptimizer trains directly). The fused model has no BatchNorm, so it is fine-tuned
gently: small learning rate with cosine decay, gradient clipping, light augmentation.

Fake quantization mirrors what onnxruntime's QDQ quantizer will do at export:

* every conv weight: INT8 per output channel, symmetric (``scale = max|w_c| / 127``), via
  ``torch.fake_quantize_per_channel_affine`` (straight-through gradient);
* every conv input and output that the INT8 model quantizes (read from the PTQ model itself:
  network input, ReLU outputs - onnxruntime folds the ReLU into the conv's output quantization -,
  SiLU inputs and outputs, concatenations, prediction outputs): per-tensor asymmetric UINT8 (or
  INT8), ``torch.fake_quantize_per_tensor_affine``; one quantizer per tensor, shared by every
  conv that reads or writes it (a tensor has a single scale). Ranges start from the PTQ
  calibration and follow a moving average of the batch min / max during the first half of the
  epochs, then stay frozen.

Loss: the detection loss (:func:`repyolo.loss.detection.build_loss`) plus channel-wise
distillation (:func:`repyolo.loss.distill.cwd_loss`) of the three neck outputs, the FP32
model being the teacher.

Export: the fine-tuned model is exported to FP32 ONNX, the other tensors are calibrated again,
and the learned ranges override those of the tensors QAT quantized; the QDQ model is then
built by the same quantizer as PTQ, so ``QuantizeLinear`` / ``DequantizeLinear`` carry the
QAT scales (activations: from the learned ranges, weights: from the trained weights, the same
rule as in training) and the file runs wherever the PTQ file runs.
"""
from __future__ import annotations

import copy
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from repyolo.errors import RepyoloError
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

WEIGHT_QRANGE = (-127, 127)          # symmetric INT8 weights (onnxruntime's symmetric range)
ACT_QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}
LIGHT_AUG = {"hsv_h": 0.015, "hsv_s": 0.4, "hsv_v": 0.3, "degrees": 0.0, "translate": 0.05, "scale": 0.1,
             "shear": 0.0, "flipud": 0.0, "fliplr": 0.5, "mosaic": 0.0, "mixup": 0.0}


# ---------------------------------------------------------------------------------------------- fake quant


def scale_zero_point(lo: torch.Tensor, hi: torch.Tensor, qmin: int, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """onnxruntime's asymmetric rule: the range is widened to contain 0, ``scale = (hi - lo) / (qmax - qmin)``,
    ``zero_point = round(qmin - lo / scale)``. Scalar tensors -> (float32 scale, int32 zero point)."""
    lo = torch.clamp(lo, max=0.0)
    hi = torch.clamp(hi, min=0.0)
    scale = ((hi - lo) / float(qmax - qmin)).float()
    tiny = torch.finfo(torch.float32).tiny
    if float(scale) < tiny:
        return torch.ones_like(scale), torch.zeros((), dtype=torch.int32)
    zp = torch.round(qmin - lo / scale).clamp(qmin, qmax).to(torch.int32)
    return scale, zp


class ActFakeQuant(nn.Module):
    """Per-tensor affine fake quantization of an activation ``(B, C, H, W)`` (any shape).

    Args:
        lo, hi: initial range (from calibration).
        dtype: ``'uint8'`` (asymmetric, 0..255) or ``'int8'`` (-128..127).
        momentum: moving-average factor of the batch min / max while ``observe`` is on (training only).
    """

    def __init__(self, lo: float, hi: float, dtype: str = "uint8", momentum: float = 0.01, name: str = ""):
        super().__init__()
        self.qmin, self.qmax = ACT_QRANGE[dtype]
        self.register_buffer("lo", torch.tensor(float(lo)))
        self.register_buffer("hi", torch.tensor(float(hi)))
        self.momentum = float(momentum)
        self.observe = True
        self.enabled = True
        self.tensor_name = name

    def extra_repr(self) -> str:
        return f"{self.tensor_name!r}, range=({float(self.lo):.4g}, {float(self.hi):.4g}), q=[{self.qmin}, {self.qmax}]"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self.training and self.observe:
            with torch.no_grad():
                m = self.momentum
                self.lo.mul_(1 - m).add_(m * x.detach().min().float())
                self.hi.mul_(1 - m).add_(m * x.detach().max().float())
        scale, zp = scale_zero_point(self.lo, self.hi, self.qmin, self.qmax)
        return torch.fake_quantize_per_tensor_affine(x, scale, zp, self.qmin, self.qmax)


def fake_quant_weight(w: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """Symmetric per-channel INT8 fake quantization of a conv weight along ``axis`` (output channels)."""
    dims = [d for d in range(w.ndim) if d != axis]
    absmax = w.detach().abs().amax(dim=dims).float()
    scale = torch.where(absmax > 0, absmax / WEIGHT_QRANGE[1], torch.ones_like(absmax))
    zp = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zp, axis, *WEIGHT_QRANGE)


class QuantConv(nn.Module):
    """A Conv2d / ConvTranspose2d with fake-quantized input, weights and output.

    ``(B, C_in, H, W) -> (B, C_out, H', W')``, same as the wrapped conv (kept at ``.conv``, its
    parameters are trained). ``act_in`` / ``act_out`` are per-tensor quantizers, shared with the
    other convs reading / writing the same tensor. ``relu_out``: the conv is followed by a ReLU
    that the INT8 model folds into the output quantization (onnxruntime drops it and quantizes
    the ReLU output), so the output is quantized after a ReLU here too; the model's own ReLU
    then changes nothing.
    """

    def __init__(self, conv: nn.Module, act_in: ActFakeQuant | None, act_out: ActFakeQuant | None = None,
                 relu_out: bool = False, node: str = ""):
        super().__init__()
        self.conv = conv
        self.act_in = act_in
        self.act_out = act_out
        self.relu_out = bool(relu_out)
        self.node = node
        self.transposed = isinstance(conv, nn.ConvTranspose2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if self.act_in is not None:
            x = self.act_in(x)
        if self.transposed:
            w = fake_quant_weight(c.weight, axis=1)
            y = F.conv_transpose2d(x, w, c.bias, c.stride, c.padding, c.output_padding, c.groups, c.dilation)
        else:
            w = fake_quant_weight(c.weight, axis=0)
            y = F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation, c.groups)
        if self.act_out is not None:
            y = self.act_out(F.relu(y) if self.relu_out else y)
        return y


# ---------------------------------------------------------------------------------------------- model surgery


def module_of_node(node_name: str) -> str:
    """The torch module path of an exported node from its scope name.

    The TorchScript exporter names a node ``/<scope>/.../<Op>``; a child of a container is shown
    as ``<container>.<index>``, after the container's own scope when the container was called
    (``/backbone/ERBlock_2/ERBlock_2.0/rbr_reparam/Conv`` -> ``backbone.ERBlock_2.0.rbr_reparam``,
    ``/detect/cls_preds.0/Conv`` -> ``detect.cls_preds.0``).
    """
    parts = node_name.strip("/").split("/")[:-1]
    path: list[str] = []
    for comp in parts:
        if path and comp.startswith(path[-1] + "."):
            path.append(comp[len(path[-1]) + 1:])
        else:
            path.extend(comp.split("."))
    return ".".join(path)


def conv_node_map(proto, module_names=None) -> dict[str, tuple[str, str]]:
    """ONNX conv nodes keyed by the torch module that produced them: ``{module: (node, input_tensor)}``.

    The module comes from the node's scope name (:func:`module_of_node`); when that is not one of
    ``module_names``, from the weight initializer's name (the exporter names it ``<module>.weight``).
    """
    from repyolo.quant.graph import CONV_TYPES

    known = set(module_names) if module_names is not None else None
    out = {}
    for node in proto.graph.node:
        if node.op_type not in CONV_TYPES:
            continue
        name = module_of_node(node.name)
        if known is not None and name not in known and len(node.input) > 1:
            w = node.input[1].split("__")[0]
            name = w[: -len(".weight")] if w.endswith(".weight") else name
        if known is None or name in known:
            out[name] = (node.name, node.input[0])
    return out


def quant_points(fp_proto, qdq_proto) -> dict[str, dict]:
    """Where the INT8 model quantizes, per FP32 conv node:
    ``{node: {"input": tensor | None, "output": tensor | None, "relu_out": bool}}`` for the convs
    whose weights are INT8 in ``qdq_proto``; ``output`` is the conv's output tensor, or the output
    of the ReLU that follows it (folded into the quantization by onnxruntime)."""
    from repyolo.quant.graph import CONV_TYPES, quantized_convs

    quantized = {n.input[0] for n in qdq_proto.graph.node if n.op_type == "QuantizeLinear"}
    int8 = set(quantized_convs(qdq_proto))
    consumers: dict[str, list] = {}
    for node in fp_proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    points = {}
    for node in fp_proto.graph.node:
        if node.op_type not in CONV_TYPES or node.name not in int8:
            continue
        inp = node.input[0] if node.input[0] in quantized else None
        out, relu = node.output[0], False
        users = consumers.get(out, [])
        if out not in quantized:
            out = None
            if len(users) == 1 and users[0].op_type == "Relu" and users[0].output[0] in quantized:
                out, relu = users[0].output[0], True
        points[node.name] = {"input": inp, "output": out, "relu_out": relu}
    return points


def prepare_qat(model: nn.Module, fp_proto, qdq_proto, ranges, act_dtype: str = "uint8",
                momentum: float = 0.01) -> tuple[nn.Module, dict[str, ActFakeQuant]]:
    """Wrap, in place, the convs of the fused ``model`` that are INT8 in ``qdq_proto``.

    Args:
        fp_proto: the FP32 ONNX export of ``model`` (maps modules to nodes and tensors).
        qdq_proto: the PTQ model built from it: which convs and tensors are quantized.
        ranges: calibration ``TensorsData`` (initial activation ranges).
    Returns:
        ``(model, quantizers)``: ``quantizers`` maps ONNX tensor names to their :class:`ActFakeQuant`
        (one per tensor, shared by every conv reading or writing it).
    """
    from repyolo.quant.calibrate import range_of

    points = quant_points(fp_proto, qdq_proto)
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    nodes = conv_node_map(fp_proto, convs)
    quantizers: dict[str, ActFakeQuant] = {}

    def quantizer(tensor: str | None, node: str) -> ActFakeQuant | None:
        if tensor is None:
            return None
        if tensor not in quantizers:
            r = range_of(ranges, tensor)
            if r is None:
                raise RepyoloError(f"no calibrated range for {tensor!r} (at {node})")
            quantizers[tensor] = ActFakeQuant(*r, dtype=act_dtype, momentum=momentum, name=tensor)
        return quantizers[tensor]

    wrapped = set()
    for name, module in list(model.named_modules()):
        if name not in nodes or nodes[name][0] not in points:
            continue
        node = nodes[name][0]
        p = points[node]
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, QuantConv(module, quantizer(p["input"], node), quantizer(p["output"], node),
                                         p["relu_out"], node))
        wrapped.add(node)
    missing = set(points) - wrapped
    if missing:
        raise RepyoloError(f"could not map {len(missing)} ONNX convs to model modules: {sorted(missing)[:3]}")
    LOGGER.info("QAT: %d convs fake-quantized, %d activation quantizers", len(wrapped), len(quantizers))
    return model, quantizers


def strip_qat(model: nn.Module) -> nn.Module:
    """Replace every :class:`QuantConv` by its plain conv (in place); returns the model."""
    for name, module in list(model.named_modules()):
        if isinstance(module, QuantConv):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.conv)
    return model


def set_observers(quantizers: dict[str, ActFakeQuant], on: bool) -> None:
    for q in quantizers.values():
        q.observe = bool(on)


def learned_ranges(quantizers: dict[str, ActFakeQuant]) -> dict[str, tuple[float, float]]:
    """``{tensor: (lo, hi)}`` of the QAT quantizers."""
    return {t: (float(q.lo), float(q.hi)) for t, q in quantizers.items()}


def override_ranges(ranges, learned: dict[str, tuple[float, float]]):
    """A copy of ``TensorsData`` where the tensors of ``learned`` take the QAT ranges."""
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    data = dict(ranges.data)
    for name, (lo, hi) in learned.items():
        data[name] = TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
    return TensorsData(ranges.calibration_method, data)


# ---------------------------------------------------------------------------------------------- training


def distill_loss(s_feats, t_feats, tau: float = 1.0) -> torch.Tensor:
    """Channel-wise distillation summed over the neck levels."""
    from repyolo.loss.distill import cwd_loss

    return sum(cwd_loss(s, t, tau) for s, t in zip(s_feats, t_feats))


@dataclass
class QATResult:
    """``path``: the QAT INT8 ONNX; ``history``: per-epoch mean losses; ``ranges``: learned ranges;
    ``checkpoint``: the fine-tuned fused FP32 weights (when saved); ``openvino``: IR folder (when written)."""

    path: Path
    history: list[dict] = field(default_factory=list)
    ranges: dict = field(default_factory=dict)
    checkpoint: Path | None = None
    openvino: Path | None = None
    time_s: float = 0.0


def _train_loader(data, img_size: int, batch: int, workers: int, stride: int, augment: str, seed: int,
                  train_images: int | None):
    from repyolo.data.config import DataConfig, load_data_config
    from repyolo.data.loader import build_dataloader
    from repyolo.quant.evaluate import subset_dataset

    cfg = data if isinstance(data, DataConfig) else load_data_config(data)
    if augment not in ("light", "none"):
        raise RepyoloError(f"--augment {augment!r}: choose 'light' or 'none'")
    split = "train" if cfg.train else "val"
    ds = cfg.dataset(split, img_size=img_size, augment=augment == "light", hyp=LIGHT_AUG, rect=False,
                     stride=stride, batch_size=batch, prefix=f"qat ({split}): ", seed=seed)
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(0, strong_aug=False)
    if train_images and train_images < len(ds):
        idx = np.sort(np.random.default_rng(seed).choice(len(ds), size=int(train_images), replace=False))
        ds = subset_dataset(ds, idx)
    return build_dataloader(ds, batch, workers=workers, shuffle=True, seed=seed)


def train_qat(student: nn.Module, teacher: nn.Module, loader, quantizers: dict[str, ActFakeQuant], epochs: int,
              lr: float = 1e-4, cwd_weight: float = 1.0, cwd_tau: float = 1.0, observe_epochs: int | None = None,
              max_batches: int | None = None, grad_clip: float = 10.0) -> list[dict]:
    """Fine-tune the fake-quantized fused ``student`` (in place) with detection loss + CWD to ``teacher``.

    SGD (momentum 0.937, Nesterov), cosine learning rate from ``lr`` to ``lr / 100`` over all
    iterations, no weight decay. Activation ranges follow the batches for ``observe_epochs``
    (default: the first half, at least one) and are frozen afterwards. Returns per-epoch mean losses.
    """
    from repyolo.data.loader import set_loader_epoch
    from repyolo.loss.detection import build_loss
    from repyolo.ops.image import to_model_input

    criterion = build_loss(student)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.937, nesterov=True)
    nb = len(loader) if max_batches is None else min(len(loader), int(max_batches))
    total = max(1, nb * epochs)
    observe_epochs = max(1, epochs // 2) if observe_epochs is None else int(observe_epochs)
    teacher.eval()
    history, step = [], 0
    for epoch in range(epochs):
        set_observers(quantizers, epoch < observe_epochs)
        set_loader_epoch(loader, epoch)
        student.train()
        sums = np.zeros(4)
        n = 0
        t0 = time.time()
        for i, (imgs, targets, _, _) in enumerate(loader):
            if i >= nb:
                break
            for g in opt.param_groups:
                g["lr"] = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / total)))
            x = to_model_input(imgs)
            with torch.no_grad():
                t_feats = teacher.neck(teacher.backbone(x))
            out = student(x)
            det, items = criterion(out, targets, 10 ** 6, x.shape[0])  # past any ATSS warm-up: TAL
            kd = distill_loss(out["feats"], t_feats, cwd_tau)
            loss = det + cwd_weight * kd
            if not torch.isfinite(loss):
                raise RepyoloError(f"QAT loss became {loss.item()} at epoch {epoch + 1}, batch {i}: "
                                   "try a lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            step += 1
            sums += np.array([loss.item(), det.item(), kd.item(), items[0].item()])
            n += 1
        mean = sums / max(n, 1)
        row = {"epoch": epoch + 1, "loss": mean[0], "det": mean[1], "cwd": mean[2], "cls": mean[3],
               "batches": n, "time_s": round(time.time() - t0, 1)}
        history.append(row)
        LOGGER.info("QAT epoch %d/%d: loss %.4f (detection %.4f, cwd %.4f) in %.0f s", epoch + 1, epochs,
                    row["loss"], row["det"], row["cwd"], row["time_s"])
    student.eval()
    set_observers(quantizers, False)
    return history


# ---------------------------------------------------------------------------------------------- entry point


def quantize_qat(weights, data, *, epochs: int = 1, img_size: int = 640, batch: int = 8, lr: float = 1e-4,
                 cwd_weight: float = 1.0, cwd_tau: float = 1.0, calib: int = 100, calibrator: str = "minmax",
                 activation_type: str = "uint8", quantize_preds: bool = True, exclude=(), workers: int = 2,
                 augment: str = "light", train_images: int | None = None, max_batches: int | None = None,
                 output: str | Path | None = None, save_pt: bool = False, openvino: bool = False,
                 seed: int = 0) -> QATResult:
    """QAT of a checkpoint with CWD self-distillation, exported to an INT8 QDQ ONNX model.

    Args:
        weights: repyolo checkpoint (training or fused form) or model.
        data: data YAML (train split for fine-tuning and calibration).
        epochs, img_size, batch, lr, workers: fine-tuning settings; ``train_images`` / ``max_batches``
            limit the images / batches per epoch.
        cwd_weight, cwd_tau: weight and temperature of the channel-wise distillation term.
        calib, calibrator: calibration of the initial ranges (and of the tensors QAT does not train).
        activation_type, quantize_preds, exclude: as for PTQ (excluded convs stay FP32 in training too).
        augment: ``'light'`` (flip, small HSV / scale jitter, no mosaic) or ``'none'``.
        output: INT8 ``.onnx`` (default ``W_qat_int8.onnx`` beside the weights).
        save_pt: also save the fine-tuned fused FP32 weights (``*_qat_fused.pt``).
        openvino: also write an OpenVINO IR folder of the INT8 model.
    """
    from repyolo.export.exporter import deploy_model
    from repyolo.quant import graph as G
    from repyolo.quant.calibrate import CalibrationImages, collect_ranges
    from repyolo.quant.qdq import FloatModel, PTQContext, QuantSettings, default_output, export_fp32

    if epochs < 1:
        raise RepyoloError(f"--epochs {epochs}: QAT needs at least one epoch")
    t0 = time.time()
    torch.manual_seed(seed)
    settings = QuantSettings(calibrator=calibrator, calib=calib, activation_type=activation_type,
                             quantize_preds=quantize_preds)
    out = Path(output) if output else default_output(weights, "_qat_int8")
    teacher = deploy_model(weights)
    names = list(getattr(teacher, "names", []))
    with tempfile.TemporaryDirectory(prefix="repyolo_qat_") as tmp:
        tmp = Path(tmp)
        fp = FloatModel.load(export_fp32(teacher, img_size, tmp / "fp32.onnx"))
        calib_set = CalibrationImages(data, n=calib, img_size=fp.img_size[0], stride=teacher.max_stride, seed=seed)
        ctx = PTQContext(fp, calib_set.images(), settings)
        unknown = sorted(set(exclude) - set(fp.convs) - {n.name for n in fp.proto.graph.node})
        if unknown:
            raise RepyoloError(f"--exclude: no node named {', '.join(unknown[:5])} in the model")
        student = copy.deepcopy(teacher)
        for p in student.parameters():
            p.requires_grad_(True)
        student, quantizers = prepare_qat(student, fp.proto, ctx.build(exclude=list(exclude)), ctx.ranges,
                                          act_dtype=activation_type)
        loader = _train_loader(data, fp.img_size[0], batch, workers, teacher.max_stride, augment, seed, train_images)
        history = train_qat(student, teacher, loader, quantizers, epochs, lr=lr, cwd_weight=cwd_weight,
                            cwd_tau=cwd_tau, max_batches=max_batches)
        learned = learned_ranges(quantizers)

        tuned = strip_qat(student).eval()
        for p in tuned.parameters():
            p.requires_grad_(False)
        tuned.names = names
        fp2 = FloatModel.load(export_fp32(tuned, img_size, tmp / "qat_fp32.onnx"))
        if fp2.convs != fp.convs:
            raise RepyoloError("internal: the fine-tuned model exports a different graph")
        with_ranges = override_ranges(collect_ranges(fp2.path, ctx.images, calibrator, input_name=fp2.input_name),
                                      learned)
        ctx2 = PTQContext(fp2, ctx.images, settings, ranges=with_ranges)
        proto = ctx2.build(exclude=list(exclude))
        path = ctx2.save(proto, out, method="qat", epochs=int(epochs), lr=float(lr), cwd_weight=float(cwd_weight),
                         excluded=list(exclude), qat_tensors=len(learned))
        ckpt = None
        if save_pt:
            from repyolo.io.checkpoint import deploy_checkpoint, save_checkpoint

            ckpt = save_checkpoint(deploy_checkpoint(tuned, names, qat_ranges=learned),
                                   out.with_name(out.stem.removesuffix("_int8") + "_fused.pt"))
    LOGGER.info("QAT INT8 model: %s (%d convs INT8; %d QDQ pairs)", path, len(G.quantized_convs(proto)),
                G.qdq_counts(proto)["QuantizeLinear"])
    ov_dir = None
    if openvino:
        from repyolo.quant.qdq import to_openvino

        ov_dir = to_openvino(path)
    return QATResult(path=path, history=history, ranges=learned, checkpoint=Path(ckpt) if ckpt else None,
                     openvino=ov_dir, time_s=round(time.time() - t0, 1))


__all__ = ["ActFakeQuant", "QuantConv", "QATResult", "fake_quant_weight", "scale_zero_point", "prepare_qat",
           "strip_qat", "train_qat", "quant_points", "learned_ranges", "override_ranges", "conv_node_map",
           "module_of_node", "quantize_qat", "distill_loss", "LIGHT_AUG"]
