"""RepOptimizer: SGD with gradient re-parameterization for RepOpt-VGG models.

The three steps of RepOpt (Ding et al., "Re-parameterizing Your Optimizers rather than
Architectures"):

1. *Transfer the architectural prior into the optimizer.* A RepVGG-style block
   ``s * conv3x3(x) + t * conv1x1(x) + x`` with constant per-channel scales ``s``, ``t`` (a
   CSLA block) is one 3x3 conv with kernel ``W' = s * W3 + t * pad(W1) + I``. One SGD step on
   ``W3`` and ``W1`` moves ``W'`` by ``-lr * M * dL/dW'`` with the constant gradient mask
   ``M = s^2`` everywhere, ``+ t^2`` at the kernel centre, ``+ 1`` at the centre of the
   ``[c, c]`` kernels when the block has an identity (square, stride 1). The identity's ``+1`` is
   the paper's convention: it treats the identity branch as a trainable per-channel (diagonal)
   weight initialised to 1 with constant scale 1. So a plain 3x3 conv initialised to ``W'``
   and trained with masked gradients follows exactly the trajectory of the multi-branch block
   (with plain or momentum / Nesterov SGD; weight decay is the exception, see below).
2. *Hyper-search the scales.* Train the model with :class:`~repyolo.nn.repopt.HyperSearchBlock`
   blocks (learnable ``s``, ``t``) on a small data set; :func:`extract_scales` reads them off
   (:func:`repyolo.engine.hypersearch.hyper_search` runs the whole step with the regular trainer).
3. *Train with RepOpt.* :func:`build_repoptimizer` re-initialises every
   :class:`~repyolo.nn.repopt.RepOptBlock` kernel to the merged kernel of fresh branch kernels
   and the scales, and returns a :class:`RepOptimizer` that multiplies each of those kernels'
   gradients by its mask before an ordinary SGD step.

Conventions: the mask multiplies the loss gradient only; weight decay is added afterwards on
the plain kernel, unmasked (decay on separate branch kernels has no exact plain equivalent).
Every other parameter (1x1 convs, head, BN) gets plain SGD. Parameter groups follow
:func:`repyolo.engine.optim.build_optimizer`: 0 decayed weights, 1 BN / scale weights, 2 biases.

A scales dict maps block names (``model.named_modules()`` names, e.g. ``backbone.stem``) to
``{"scale_3x3": (C_out,), "scale_1x1": (C_out,), "identity": bool}``. On disk (:func:`save_scales`)
it is ``{"format": "repyolo-repopt-scales", "version": 1, "model": name, "scales": {...}}``,
readable with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from repyolo.engine.optim import param_groups
from repyolo.errors import CheckpointError, ConfigError
from repyolo.io.torchfile import load_torch_file
from repyolo.nn.repopt import HyperSearchBlock, RepOptBlock, default_conv_init, merged_kernel
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)
SCALES_FORMAT = "repyolo-repopt-scales"
SCALES_VERSION = 1


# ---------------------------------------------------------------------------- masks
def grad_mask(scale_3x3: torch.Tensor, scale_1x1: torch.Tensor, in_channels: int, identity: bool) -> torch.Tensor:
    """The constant gradient multiplier of one block's 3x3 kernel.

    Args:
        scale_3x3, scale_1x1: ``(C_out,)`` scales ``s``, ``t``.
        in_channels: ``C_in``; identity: add the identity term (needs ``C_in == C_out``).
    Returns:
        ``(C_out, C_in, 3, 3)``: ``s[o]^2`` everywhere, ``+ t[o]^2`` at ``[o, i, 1, 1]``,
        ``+ 1`` at ``[o, o, 1, 1]`` when ``identity``.
    """
    s = scale_3x3.detach().reshape(-1)
    t = scale_1x1.detach().reshape(-1).to(s)
    if not s.is_floating_point():
        s, t = s.float(), t.float()
    if s.shape != t.shape:
        raise ValueError(f"scale_3x3 {tuple(s.shape)} and scale_1x1 {tuple(t.shape)} differ in length")
    c_out = s.numel()
    mask = (s ** 2).reshape(-1, 1, 1, 1).expand(c_out, in_channels, 3, 3).clone()
    mask[:, :, 1, 1] += (t ** 2).reshape(-1, 1)
    if identity:
        if in_channels != c_out:
            raise ValueError(f"identity term needs C_in == C_out, got {in_channels} and {c_out}")
        idx = torch.arange(c_out)
        mask[idx, idx, 1, 1] += 1.0
    return mask


# ---------------------------------------------------------------------------- scales
def _blocks(model: nn.Module, kind: type) -> dict[str, nn.Module]:
    """``{name: block}`` of every ``kind`` block (names without a DDP ``module.`` prefix)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, kind):
            out[name[len("module."):] if name.startswith("module.") else name] = m
    return out


def repopt_blocks(model: nn.Module) -> dict[str, RepOptBlock]:
    """The model's :class:`RepOptBlock` s by module name."""
    return _blocks(model, RepOptBlock)


@torch.no_grad()
def extract_scales(hypersearch_model: nn.Module) -> dict:
    """Read the learned scales off a model built with ``block: hypersearch``.

    Returns ``{block name: {"scale_3x3": (C_out,), "scale_1x1": (C_out,), "identity": bool}}``
    (CPU float32 copies), for the plain model of the same config (``block: repopt``).
    """
    blocks = _blocks(hypersearch_model, HyperSearchBlock)
    if not blocks:
        raise ConfigError("the model has no hyper-search blocks: build it with block='hypersearch'")
    return {name: {"scale_3x3": b.scale_3x3.weight.detach().float().cpu().clone(),
                   "scale_1x1": b.scale_1x1.weight.detach().float().cpu().clone(),
                   "identity": bool(b.identity)} for name, b in blocks.items()}


def save_scales(scales: dict, path: str | Path, model_name: str | None = None) -> Path:
    """Write a scales dict to ``path`` atomically (loadable with ``torch.load(weights_only=True)``)."""
    from repyolo.io.checkpoint import save_checkpoint

    payload = {"format": SCALES_FORMAT, "version": SCALES_VERSION, "model": model_name,
               "scales": {k: {"scale_3x3": v["scale_3x3"].float().cpu(), "scale_1x1": v["scale_1x1"].float().cpu(),
                              "identity": bool(v["identity"])} for k, v in scales.items()}}
    return save_checkpoint(payload, path)


def load_scales(source) -> dict:
    """A scales dict from a dict, a scales file (:func:`save_scales`), or a repyolo training
    checkpoint of a hyper-search model (its EMA weights are read). Raises :class:`ConfigError` /
    :class:`CheckpointError` naming the file for anything else."""
    if isinstance(source, dict):
        scales = source.get("scales", source) if source.get("format") == SCALES_FORMAT else source
        return _validate_scales(scales, "scales dict")
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"{path}: RepOpt scales file not found")
    try:
        obj = load_torch_file(path)  # the safe reader: says what the file is, never runs code from it
    except CheckpointError as exc:
        raise CheckpointError(f"not a readable scales file: {exc}") from None
    if isinstance(obj, dict) and obj.get("format") == SCALES_FORMAT:
        return _validate_scales(obj.get("scales"), str(path))
    if isinstance(obj, dict) and obj.get("format") == "repyolo" and "model_cfg" in obj:
        if obj["model_cfg"].get("block") != "hypersearch":
            raise ConfigError(f"{path}: a checkpoint of a {obj['model_cfg'].get('block')!r}-block model; "
                              "RepOpt scales come from a model trained with block: hypersearch")
        from repyolo.io.checkpoint import model_from_checkpoint

        return extract_scales(model_from_checkpoint(obj, use_ema=True))
    raise ConfigError(f"{path}: neither a RepOpt scales file ({SCALES_FORMAT}) nor a hyper-search checkpoint")


def _validate_scales(scales, where: str) -> dict:
    if not isinstance(scales, dict) or not scales:
        raise ConfigError(f"{where}: expected a non-empty {{block name: scales}} dict")
    for name, v in scales.items():
        ok = (isinstance(v, dict) and {"scale_3x3", "scale_1x1"} <= set(v)
              and all(isinstance(v[k], torch.Tensor) and v[k].ndim == 1 for k in ("scale_3x3", "scale_1x1"))
              and v["scale_3x3"].shape == v["scale_1x1"].shape)
        if not ok:
            raise ConfigError(f"{where}: entry {name!r} needs 1-D tensors 'scale_3x3' and 'scale_1x1' of equal length")
        if not (torch.isfinite(v["scale_3x3"]).all() and torch.isfinite(v["scale_1x1"]).all()):
            raise ConfigError(f"{where}: entry {name!r} holds non-finite scales")
    return scales


def match_scales(model: nn.Module, scales) -> dict[str, tuple[RepOptBlock, dict]]:
    """Pair every :class:`RepOptBlock` of ``model`` with its scales; a clear error on any mismatch."""
    scales = load_scales(scales)
    blocks = repopt_blocks(model)
    if not blocks:
        raise ConfigError("the model has no RepOpt blocks: build it with block='repopt' (e.g. yolov6n-repopt)")
    missing = sorted(set(blocks) - set(scales))
    extra = sorted(set(scales) - set(blocks))
    if missing or extra:
        raise ConfigError(f"RepOpt scales do not fit the model ({len(blocks)} blocks, {len(scales)} scale entries): "
                          f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
                          f"unexpected {extra[:4]}{'...' if len(extra) > 4 else ''}; "
                          "search the scales with the same model config")
    pairs = {}
    for name, block in blocks.items():
        v = scales[name]
        if v["scale_3x3"].numel() != block.out_channels:
            raise ConfigError(f"RepOpt scales of {name!r} have {v['scale_3x3'].numel()} channels, "
                              f"the block has {block.out_channels}")
        if "identity" in v and bool(v["identity"]) != block.identity:
            raise ConfigError(f"RepOpt scales of {name!r} were searched {'with' if v['identity'] else 'without'} "
                              "an identity branch, the block has the opposite")
        pairs[name] = (block, v)
    return pairs


@torch.no_grad()
def init_from_scales(model: nn.Module, scales, generator: torch.Generator | None = None) -> int:
    """Set every RepOpt block's kernel to the merged CSLA kernel ``s * W3 + t * pad(W1) (+ I)`` of fresh
    branch kernels ``W3``, ``W1`` drawn like ``nn.Conv2d``'s init (in that order). Returns the block count."""
    pairs = match_scales(model, scales)
    for block, v in pairs.values():
        w = block.conv.weight
        k3 = default_conv_init((block.out_channels, block.in_channels, 3, 3), generator)
        k1 = default_conv_init((block.out_channels, block.in_channels, 1, 1), generator)
        w.copy_(merged_kernel(k3.to(w), k1.to(w), v["scale_3x3"].to(w), v["scale_1x1"].to(w), block.identity))
    return len(pairs)


# ---------------------------------------------------------------------------- optimizer
class RepOptimizer(torch.optim.SGD):
    """SGD whose ``step()`` first multiplies the gradient of each masked parameter by its constant mask.

    Args:
        params: parameter groups, as for :class:`torch.optim.SGD`.
        grad_masks: ``{parameter: mask of the same shape}``.
        lr, momentum, weight_decay, nesterov: as for SGD (weight decay is added after masking).

    The masked gradient is written into ``p.grad`` in place (it is the gradient the step uses).
    Masks follow their parameter's device and dtype lazily; they are not part of ``state_dict()``
    (they are constants rebuilt from the scales).
    """

    def __init__(self, params, grad_masks: dict, lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         nesterov=nesterov and momentum > 0)
        for p, m in grad_masks.items():
            if m.shape != p.shape:
                raise ValueError(f"gradient mask {tuple(m.shape)} does not match its parameter {tuple(p.shape)}")
        self.grad_masks = dict(grad_masks)

    @torch.no_grad()
    def apply_masks(self) -> None:
        """``p.grad *= mask`` for every masked parameter that has a gradient."""
        for p, m in self.grad_masks.items():
            if p.grad is None:
                continue
            if m.device != p.grad.device or m.dtype != p.grad.dtype:
                m = self.grad_masks[p] = m.to(p.grad)
            p.grad.mul_(m)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.apply_masks()
        super().step()
        return loss


def build_repoptimizer(model: nn.Module, scales, lr0: float = 0.01, momentum: float = 0.937,
                       weight_decay: float = 5e-4, nesterov: bool = True, reinit: bool = True,
                       generator: torch.Generator | None = None) -> RepOptimizer:
    """RepOptimizer for a ``block: repopt`` model, with the three YOLOv6 parameter groups.

    Args:
        model: the plain model (may be DDP-wrapped); scales: a scales dict, a scales file or a
            hyper-search checkpoint (see :func:`load_scales`).
        lr0, momentum, weight_decay, nesterov: SGD settings (group 0 decayed weights, 1 BN / scale
            weights, 2 biases without decay).
        reinit: set the RepOpt kernels to the merged kernels of the scales first (step 3 of the
            method); pass ``False`` when the weights come from a checkpoint (fine-tune, resume).
        generator: RNG for the re-initialisation (the global one by default).
    """
    pairs = match_scales(model, scales)
    if reinit:
        init_from_scales(model, {k: v for k, (_, v) in pairs.items()}, generator)
    masks = {}
    for block, v in pairs.values():
        w = block.conv.weight
        masks[w] = grad_mask(v["scale_3x3"], v["scale_1x1"], block.in_channels, block.identity).to(w)
    decay, no_decay, bias = param_groups(model)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0},
              {"params": bias, "weight_decay": 0.0}]
    in_groups = {id(p) for p in decay}
    lost = [n for n, (b, _) in pairs.items() if id(b.conv.weight) not in in_groups]
    if lost:
        raise ConfigError(f"RepOpt kernels not trainable (frozen?): {lost[:4]}")
    LOGGER.info("RepOptimizer: %d masked 3x3 kernels (%s), lr0 %g, momentum %g, weight decay %g",
                len(masks), "re-initialised from the scales" if reinit else "weights kept", lr0, momentum,
                weight_decay)
    return RepOptimizer(groups, masks, lr=lr0, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


# ---------------------------------------------------------------------------- hyper-search
def hypersearch_config(model="yolov6n-repopt") -> dict:
    """The hyper-search twin of a model config: the same topology with ``block: hypersearch``."""
    from repyolo.nn.model import load_model_config

    cfg = load_model_config(model)
    name = str(cfg.get("name", "model"))
    return {**cfg, "block": "hypersearch", "name": name if name.endswith("-hs") else f"{name}-hs"}
