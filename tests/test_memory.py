"""glibc malloc tuning (repyolo.utils.memory): freed blocks are reused instead of given back to the
kernel and faulted in again, applied once, switchable off, and applied by the Trainer on a CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# allocate four 12 MiB blocks, touch every page, free them; ten rounds; report the page faults
# of the last nine (glibc's defaults give the freed heap top back and fault it in again)
CHURN = r"""
import ctypes, json, resource, sys
from repyolo.utils import memory
applied = memory.keep_freed_memory()
again = memory.keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
size, faults = 12 << 20, 0
for round_ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [libc.malloc(size) for _ in range(4)]
    for b in blocks:
        libc.memset(b, 1, size)
    for b in reversed(blocks):
        libc.free(b)
    if round_:
        faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "again": again, "faults": faults}))
"""


def _churn(**env_extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", CHURN], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt: Linux only")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    tuned = _churn()
    default = _churn(REPYOLO_MALLOC_TUNING="0")
    assert tuned["applied"] and tuned["again"]
    assert not default["applied"] and not default["again"]
    # 9 rounds x 48 MiB = ~110k page faults with glibc's defaults, next to none once tuned
    assert default["faults"] > 10_000, default
    assert tuned["faults"] < default["faults"] / 20, (tuned, default)


def test_trainer_applies_it_on_the_cpu(synthetic_data, tiny_model_yaml, tmp_path, monkeypatch):
    from repyolo.engine import trainer as trainer_mod

    calls = []
    monkeypatch.setattr(trainer_mod, "keep_freed_memory", lambda: calls.append(1) or True)
    trainer_mod.Trainer(trainer_mod.TrainArgs(model=str(tiny_model_yaml), data=str(synthetic_data), epochs=1,
                                              img=64, batch=8, project=str(tmp_path), name="m", workers=0))
    assert calls == [1]
