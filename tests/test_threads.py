"""The thread policy (repyolo.utils.threads): pure functions of cores, workers and requests."""
from __future__ import annotations

import time

import pytest
import torch

from repyolo.utils.threads import (
    apply_threads,
    cgroup_cpu_limit,
    choose_threads,
    count_cores,
    requested_threads,
    thread_scope,
)


def test_cores_minus_workers_at_least_one():
    assert choose_threads(8, 2) == 6
    assert choose_threads(2, 0) == 2
    assert choose_threads(2, 1) == 1
    assert choose_threads(2, 2) == 1
    assert choose_threads(1, 4) == 1
    assert choose_threads(4, None) == 4


def test_a_request_wins():
    assert choose_threads(2, 2, requested=3) == 3
    assert choose_threads(16, 0, requested=1) == 1
    assert choose_threads(4, 1, requested=0) == 3  # 0 / None mean "choose"


def test_cores_from_affinity_and_quota():
    assert count_cores(4, 64, None) == 4          # affinity wins over the machine's count
    assert count_cores(None, 8, None) == 8
    assert count_cores(8, 8, 2.0) == 2            # a cgroup quota of two cores
    assert count_cores(8, 8, 1.5) == 2            # rounded up
    assert count_cores(8, 8, 0.2) == 1
    assert count_cores(None, None, None) == 1


def test_cgroup_files(tmp_path):
    v2 = tmp_path / "cpu.max"
    v2.write_text("150000 100000\n")
    assert cgroup_cpu_limit(v2, (tmp_path / "a", tmp_path / "b")) == 1.5
    v2.write_text("max 100000\n")
    assert cgroup_cpu_limit(v2, (tmp_path / "a", tmp_path / "b")) is None
    quota, period = tmp_path / "q", tmp_path / "p"
    quota.write_text("-1")
    period.write_text("100000")
    assert cgroup_cpu_limit(tmp_path / "none", (quota, period)) is None
    quota.write_text("300000")
    assert cgroup_cpu_limit(tmp_path / "none", (quota, period)) == 3.0


def test_environment_requests():
    assert requested_threads(None, {}) is None
    assert requested_threads(None, {"OMP_NUM_THREADS": "3"}) == 3
    assert requested_threads(None, {"REPYOLO_THREADS": "2", "OMP_NUM_THREADS": "3"}) == 2
    assert requested_threads(4, {"REPYOLO_THREADS": "2"}) == 4
    assert requested_threads(None, {"OMP_NUM_THREADS": "x"}) is None


def test_apply_and_scope_restore():
    before = torch.get_num_threads()
    with thread_scope(requested=1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert apply_threads(requested=1, who="test") == 1
    torch.set_num_threads(before)


def test_governor_follows_the_load_of_other_processes_with_hysteresis():
    from repyolo.utils.threads import ThreadGovernor

    clock = [0.0]
    machine = [0.0, 0.0]  # busy CPU seconds of the machine, of this process + children
    applied = []
    gov = ThreadGovernor(quiet_threads=2, busy_threads=1, interval=5.0, reader=lambda: tuple(machine),
                         clock=lambda: clock[0], setter=applied.append)
    assert gov.threads == 1 and gov.tick() is None  # starts safe; no reading before the interval

    def advance(seconds, own_cores, other_cores):
        clock[0] += seconds
        machine[0] += seconds * (own_cores + other_cores)
        machine[1] += seconds * own_cores
        return gov.tick()

    assert advance(5, own_cores=1.0, other_cores=0.02) == 2      # quiet: all cores
    assert advance(2, own_cores=2.0, other_cores=1.0) is None    # not a whole interval yet
    assert advance(3, own_cores=1.4, other_cores=0.6) == 1       # a competitor appeared
    assert gov.others == pytest.approx((2 * 1.0 + 3 * 0.6) / 5)
    assert advance(5, own_cores=1.0, other_cores=0.2) is None    # in between: no change (hysteresis)
    assert advance(5, own_cores=1.0, other_cores=0.05) == 2      # gone: back to all cores
    assert applied == [2, 1, 2]


def test_governor_only_where_the_count_is_free(monkeypatch):
    from repyolo.utils import threads

    monkeypatch.delenv("REPYOLO_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "cpu_seconds", lambda: (1.0, 0.5))
    gov = threads.thread_governor(None, workers=2)
    assert gov is not None and (gov.quiet_threads, gov.busy_threads) == (2, 1)
    assert threads.thread_governor(1, workers=2) is None                 # --threads given
    assert threads.thread_governor(None, workers=0) is None              # both counts are 2
    assert threads.thread_governor(None, workers=2, processes=2) is None  # DDP processes share the host
    monkeypatch.setenv("REPYOLO_THREADS", "1")
    assert threads.thread_governor(None, workers=2) is None
    monkeypatch.delenv("REPYOLO_THREADS")
    monkeypatch.setattr(threads, "cpu_seconds", lambda: None)             # no /proc
    assert threads.thread_governor(None, workers=2) is None


def test_cpu_seconds_reads_this_machine():
    from repyolo.utils.threads import cpu_seconds

    first = cpu_seconds()
    if first is None:
        pytest.skip("no /proc on this system")
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:  # burn a little CPU in this process
        pass
    second = cpu_seconds()
    assert second[1] - first[1] >= 0.2 and second[0] - first[0] >= second[1] - first[1] - 0.05


def test_proc_stat_fields_and_children_that_ended():
    from repyolo.utils.threads import _proc_jiffies

    # pid (comm, may hold spaces and parentheses) state ppid pgrp session tty tpgid flags
    # minflt cminflt majflt cmajflt utime stime cutime cstime ...
    line = "123 (my (odd) name) S 77 1 1 0 -1 0 0 0 0 0 500 120 40 10 20 0"
    assert _proc_jiffies(line) == (77, 620)
    assert _proc_jiffies(line, reaped_children=True) == (77, 670)


def test_cpu_seconds_keep_the_time_of_children_that_ended():
    import subprocess
    import sys

    from repyolo.utils.threads import cpu_seconds

    if cpu_seconds() is None:
        pytest.skip("no /proc on this system")
    before = cpu_seconds()[1]
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    assert cpu_seconds()[1] - before >= 0.3  # the child ended, its time still counts as ours
