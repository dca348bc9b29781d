"""Training speed levers, each a separate switch: mixed precision, channels-last, torch.compile.

* **Mixed precision** (``TrainArgs.amp``, on by default; ``--no-amp`` trains in float32): float16
  autocast with a GradScaler on CUDA; bfloat16 autocast on a CPU that computes bfloat16 natively
  (``avx512_bf16`` or AMX, where oneDNN's bf16 convolutions run about 1.8x as fast as float32;
  elsewhere the CPU trains in float32). ``TrainArgs.bf16`` overrides the CPU choice either way.
  The head's prediction convs (:mod:`repyolo.nn.head`) and the losses run in float32: bfloat16's
  8-bit mantissa would round box distances to 1/16 stride (the demo, seed 0: mAP@0.5:0.95 0.619
  instead of 0.672); with them in float32, bfloat16 matched or beat float32 over three seeds
  (BENCHMARKS.md). The optimizer, the EMA and evaluation stay float32; precise BN runs its
  convolutions in the training precision (the statistics it collects are float32).
* **Channels-last** memory format (``TrainArgs.channels_last``, default: on CUDA only). On the
  CPU it is off by default: with torch 2.13, channels-last training of yolov6n corrupted the heap
  (glibc aborts, segfaults; measured with 1x1 stride-2 convolutions of few input channels and in
  the full backbone), and its measured gain there was only ~1.1x.
* **torch.compile** (``TrainArgs.compile``, off by default: compiling yolov6n's training graph
  takes minutes on 2 CPU cores, which only pays back over long runs: measured 1.1x for yolov6n's
  forward+backward after 5.6 min of compiling). Inductor's automatic channels-last layout is
  turned off for the reason above. Any failure to compile at the first call falls back to eager
  execution with one warning (:class:`CompiledForward`).
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn as nn

from repyolo.errors import one_line
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where it does not exist)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU computes bfloat16 in hardware (``avx512_bf16`` or AMX) and oneDNN can use it."""
    flags = cpu_flags() if flags is None else flags
    if not ({"avx512_bf16", "amx_bf16"} & set(flags)):
        return False
    return bool(torch.backends.mkldnn.is_available())


def autocast_dtype(device: torch.device, amp: bool, bf16: bool | None = None,
                   flags: frozenset[str] | None = None) -> torch.dtype | None:
    """The autocast dtype of training on ``device``; ``None`` = float32.

    CUDA: float16 when ``amp``. CPU: bfloat16 where the CPU computes it natively, when ``bf16`` is
    ``True`` or when it is ``None`` (the default) and ``amp`` is on; ``bf16=False`` is float32. An
    explicit ``bf16=True`` on a CPU without native bfloat16 trains in float32 with a warning
    (emulated bfloat16 would be slower than float32)."""
    if device.type == "cuda":
        return torch.float16 if amp else None
    if device.type != "cpu" or bf16 is False or (bf16 is None and not amp):
        return None
    if native_bf16(flags):
        return torch.bfloat16
    if bf16:
        LOGGER.warning("--bf16: this CPU has no native bfloat16 (avx512_bf16 / AMX): training in float32")
    return None


def use_channels_last(device: torch.device, requested: bool | None) -> bool:
    """``requested`` when given, else on for CUDA and off for the CPU (see the module docstring)."""
    return bool(requested) if requested is not None else device.type == "cuda"


class CompiledForward:
    """``torch.compile(model)`` used like the model; the first call that fails to compile logs one
    warning and every call after it runs the eager model (training never stops for the compiler)."""

    def __init__(self, model: nn.Module, **options):
        self.model = model
        self.compiled = torch.compile(model, **options)
        self.failed = False

    def __call__(self, *args, **kwargs):
        if not self.failed:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
                self.failed = True
                LOGGER.warning("torch.compile failed (%s): training continues without it", one_line(exc))
        return self.model(*args, **kwargs)


__all__ = ["CompiledForward", "autocast_dtype", "cpu_flags", "native_bf16", "use_channels_last"]
