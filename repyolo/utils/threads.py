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

A long job (training) goes further with :class:`ThreadGovernor`: on a quiet machine all cores
are faster (the loader workers then share them: a small training run 24.5 s with two threads vs
30.3 s with one, measured), on a busy one ``cores - workers`` is (216 s vs 49 s with two competing
CPU-bound processes). The governor measures, every few seconds, how much CPU the *other*
processes of the machine take (``/proc/stat`` minus this process and its children) and switches
between the two counts, with hysteresis.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
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


def _proc_jiffies(stat_line: str, reaped_children: bool = False) -> tuple[int, int]:
    """``(ppid, utime + stime)`` from a ``/proc/<pid>/stat`` line (the name may hold spaces);
    ``reaped_children`` adds ``cutime + cstime`` (children that ended and were waited for)."""
    fields = stat_line[stat_line.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return int(fields[1]), ticks


def cpu_seconds(proc: Path = Path("/proc")) -> tuple[float, float] | None:
    """``(busy CPU seconds of the whole machine, CPU seconds of this process and its children)``
    since boot, from ``/proc``; ``None`` where ``/proc`` is not readable (not Linux).

    The children are the running ones (loader workers) plus those that ended and were waited for
    (their time moves to this process's ``cutime``), so workers restarting every epoch do not make
    their CPU time look like another process's."""
    try:
        hz = os.sysconf("SC_CLK_TCK")
        first = (proc / "stat").read_text().split("\n", 1)[0].split()
        values = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
        busy = sum(values) - values[3] - values[4]
        me = os.getpid()
        own = _proc_jiffies((proc / "self" / "stat").read_text(), reaped_children=True)[1]
        for entry in proc.iterdir():
            if entry.name.isdigit() and int(entry.name) != me:
                try:
                    ppid, ticks = _proc_jiffies((entry / "stat").read_text())
                except (OSError, ValueError, IndexError):  # the process ended meanwhile
                    continue
                if ppid == me:
                    own += ticks
        return busy / hz, own / hz
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class ThreadGovernor:
    """Switches a long job between ``quiet_threads`` and ``busy_threads`` by the machine's load.

    Call :meth:`tick` often (every training step); at most every ``interval`` seconds it reads
    ``reader()`` (:func:`cpu_seconds`) and computes the cores the other processes used since the
    last reading. Above ``busy_above`` cores it sets ``busy_threads``; below ``quiet_below`` it
    sets ``quiet_threads``; in between nothing changes (hysteresis). It starts with
    ``busy_threads`` (the safe choice) until the first reading. ``setter`` applies a count
    (default ``torch.set_num_threads``). Returns the new count from :meth:`tick` when it changed.
    """

    def __init__(self, quiet_threads: int, busy_threads: int, interval: float = 5.0, busy_above: float = 0.3,
                 quiet_below: float = 0.15, who: str = "repyolo",
                 reader: Callable[[], tuple[float, float] | None] = cpu_seconds,
                 clock: Callable[[], float] = time.monotonic, setter: Callable[[int], None] | None = None):
        self.quiet_threads, self.busy_threads = int(quiet_threads), int(busy_threads)
        self.interval, self.busy_above, self.quiet_below = float(interval), float(busy_above), float(quiet_below)
        self.who, self.reader, self.clock = who, reader, clock
        self.setter = setter or _torch_set_threads
        self.threads = self.busy_threads
        self.others: float | None = None  # cores the other processes used over the last interval
        self._last = (self.clock(), self.reader())
        self._announced: set[int] = set()

    def tick(self) -> int | None:
        now = self.clock()
        t0, reading0 = self._last
        if now - t0 < self.interval:
            return None
        reading = self.reader()
        self._last = (now, reading)
        if reading is None or reading0 is None:
            return None
        self.others = max(0.0, (reading[0] - reading0[0]) - (reading[1] - reading0[1])) / (now - t0)
        if self.others > self.busy_above:
            wanted = self.busy_threads
        elif self.others < self.quiet_below:
            wanted = self.quiet_threads
        else:
            return None
        if wanted == self.threads:
            return None
        self.threads = wanted
        self.setter(wanted)
        level = logging.INFO if wanted not in self._announced else logging.DEBUG  # once loud, then quiet
        self._announced.add(wanted)
        LOGGER.log(level, "%s: %d intra-op thread(s) (other processes use %.1f core(s))", self.who, wanted,
                   self.others)
        return wanted


def _torch_set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def thread_governor(requested: int | None, workers: int, who: str = "repyolo", processes: int = 1,
                    interval: float = 5.0) -> ThreadGovernor | None:
    """A :class:`ThreadGovernor` for a job with ``workers`` loader processes, or ``None`` when the
    count is fixed: threads requested (argument, ``REPYOLO_THREADS``, ``OMP_NUM_THREADS``), several
    processes of one job on this host, no loader workers (both counts equal), or no ``/proc``."""
    if requested_threads(requested) or processes > 1 or cpu_seconds() is None:
        return None
    cores = available_cores()
    quiet, busy = cores, choose_threads(cores, workers)
    if quiet == busy:
        return None
    return ThreadGovernor(quiet, busy, interval=interval, who=who)


__all__ = ["ThreadGovernor", "apply_threads", "available_cores", "cgroup_cpu_limit", "choose_threads", "count_cores",
           "cpu_seconds", "requested_threads", "thread_governor", "thread_scope"]
