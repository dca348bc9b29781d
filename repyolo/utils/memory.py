"""glibc ``malloc`` settings that keep freed tensor memory for the next step.

PyTorch's CPU allocator hands every tensor to ``malloc``. glibc serves blocks above its mmap
threshold (dynamic, starting at 128 KiB) with ``mmap`` and returns them to the kernel on ``free``,
and it trims the top of the heap once more than 128 KiB is free there. A training step
allocates and frees the same activations (MBs each) every step, so the kernel maps, zeroes and
unmaps the same pages again and again (system time and page faults). With the mmap threshold at
its largest allowed value (32 MiB on 64-bit), a 2 GiB trim threshold and a 256 MiB top pad, the
blocks stay in the heap and are reused; measured on the yolov6n training step (2 cores, float32,
interleaved in one run, ``benchmarks/train_step_ab.py`` with the same settings as environment
variables, trim threshold 4 GiB there): 1.06x faster at batch 8 x 320 px and 1.16x at batch 4 x
640 px. The cost is memory that stays mapped at the step's peak instead of going back to the
system between steps.

:func:`keep_freed_memory` applies them with ``mallopt`` (Linux with glibc only; elsewhere it does
nothing). A value the user set through glibc's own environment variables (``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_THRESHOLD_``) is left as set, and ``REPYOLO_MALLOC_TUNING=0``
turns the whole thing off.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys

from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

# mallopt parameter numbers (glibc malloc.h) -> (environment variable, value)
SETTINGS = {
    -1: ("MALLOC_TRIM_THRESHOLD_", 2**31 - 1),  # M_TRIM_THRESHOLD: keep up to 2 GiB free at the heap top
    -2: ("MALLOC_TOP_PAD_", 256 << 20),        # M_TOP_PAD: grow the heap 256 MiB at a time
    -3: ("MALLOC_MMAP_THRESHOLD_", 32 << 20),  # M_MMAP_THRESHOLD: glibc's maximum on 64-bit
}


@functools.cache
def keep_freed_memory() -> bool:
    """Apply :data:`SETTINGS` to this process once (later calls return the first answer); True
    when glibc took them."""
    applied = False
    reason = ""
    if os.environ.get("REPYOLO_MALLOC_TUNING", "1") == "0":
        reason = "REPYOLO_MALLOC_TUNING=0"
    elif not sys.platform.startswith("linux"):
        reason = f"not Linux ({sys.platform})"
    else:
        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
        except (OSError, AttributeError):  # musl or another C library without mallopt
            reason = "no glibc mallopt"
        else:
            mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
            chosen = {p: v for p, (env, v) in SETTINGS.items() if env not in os.environ}
            applied = all(mallopt(p, v) == 1 for p, v in chosen.items())
            reason = "" if applied else "mallopt refused a value"
    if applied:
        LOGGER.debug("malloc: freed tensor memory kept for reuse (mmap threshold 32 MiB, trim threshold 2 GiB)")
    else:
        LOGGER.debug("malloc: default settings (%s)", reason)
    return applied
