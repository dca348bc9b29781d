"""The thread policy (repyolo.utils.threads): pure functions of cores, workers and requests."""
from __future__ import annotations

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
