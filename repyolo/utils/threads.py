"""How many intra-op threads a process should use, and applying that choice.

On a busy CPU, OpenMP threads that wait for each other at every parallel region are the
worst case: when one of two threads is descheduled, the other spins until it comes back, so a
step can take many times longer than with one thread. The policy therefore never gives a
process more intra-op threads than the cores it may actually run on (its CPU affinity and its
cgroup CPU quota), minus the loader workers that run beside it, and at least one:

    threads = requested  if requested  else  max(1, cores - workers)

``requested`` is the caller's ``threads`` argument, else the environment's ``REPYOLO_THREADS``,
else ``OMP_NUM_THREADS`` (a user who set it has chosen). :func:`choose_threads` is that rule as a
pure function (tested on its own);
:func:`available_cores` reads the machine; :func:`apply_threads` sets torch's intra-op threads
and logs the choice once per distinct decision; :func:`thread_scope` sets them for a block and
restores the previous value.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path

from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
_logged: set = set()


def cgroup_cpu_limit(v2: Path = _CGROUP_V2, v1: tuple[Path, Path] = _CGROUP_V1) -> float | None:
    """The cgroup CPU quota in cores (``quota / period``), or ``None`` when there is none or it
    cannot be read (cgroup v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``)."""
    try:
        if v2.is_file():
            quota, _, period = v2.read_text().strip().partition(" ")
            if quota != "max" and float(period or 100000) > 0:
                return float(quota) / float(period or 100000)
            return None
        if v1[0].is_file() and v1[1].is_file():
            quota, period = float(v1[0].read_text()), float(v1[1].read_text())
            return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None
    return None


def count_cores(affinity: int | None, cpu_count: int | None, quota: float | None) -> int:
    """Cores a process may use: its affinity set (else the CPU count), capped by a CPU quota
    (rounded up: a quota of 1.5 cores still lets two threads make progress). Pure; at least 1."""
    cores = affinity or cpu_count or 1
    if quota is not None and quota > 0:
        cores = min(cores, max(1, math.ceil(quota - 1e-6)))
    return max(1, int(cores))


def available_cores() -> int:
    """The cores this process may run on (``os.sched_getaffinity`` and the cgroup CPU quota)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        affinity = None
    return count_cores(affinity, os.cpu_count(), cgroup_cpu_limit())


def choose_threads(cores: int, workers: int = 0, requested: int | None = None) -> int:
    """The intra-op thread count: ``requested`` when given (> 0), else the ``cores`` left after
    ``workers`` loader processes / threads, at least 1. Pure function."""
    if requested is not None and int(requested) > 0:
        return int(requested)
    return max(1, int(cores) - max(0, int(workers or 0)))


def requested_threads(requested: int | None = None, environ=None) -> int | None:
    """``requested`` when set (> 0), else ``REPYOLO_THREADS``, else ``OMP_NUM_THREADS`` (ignored
    when not a positive integer), else ``None``."""
    if requested is not None and int(requested) > 0:
        return int(requested)
    environ = os.environ if environ is None else environ
    for key in ("REPYOLO_THREADS", "OMP_NUM_THREADS"):
        value = str(environ.get(key, "")).strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def apply_threads(requested: int | None = None, workers: int = 0, who: str = "repyolo", processes: int = 1,
                  log: bool = True) -> int:
    """Set torch's intra-op threads by :func:`choose_threads` on this machine; returns the count.

    ``processes``: processes of this job sharing the machine's cores (DDP on one CPU host), each
    gets its share. The choice is logged (once per distinct ``who`` / decision), with the numbers
    it came from (``log=False``: not logged).
    """
    import torch

    requested = requested_threads(requested)
    cores = max(1, available_cores() // max(1, int(processes)))
    n = choose_threads(cores, workers, requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    key = (who, cores, workers, requested, n)
    if log and key not in _logged:
        _logged.add(key)
        why = (f"requested {requested}" if requested else
               f"{cores} available core(s) - {max(0, int(workers or 0))} loader worker(s)")
        LOGGER.info("%s: %d intra-op thread(s) (%s)", who, n, why)
    return n


@contextmanager
def thread_scope(requested: int | None = None, workers: int = 0, who: str = "repyolo"):
    """Run a block with :func:`apply_threads`, then restore the previous intra-op thread count."""
    import torch

    before = torch.get_num_threads()
    n = apply_threads(requested, workers, who)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


__all__ = ["apply_threads", "available_cores", "cgroup_cpu_limit", "choose_threads", "count_cores",
           "requested_threads", "thread_scope"]
