"""glibc malloc tuning (repyolo.utils.memory): applied once on Linux, switchable off, in training."""
from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import json
from repyolo.utils import memory
print(json.dumps({"applied": memory.keep_freed_memory(), "again": memory.keep_freed_memory()}))
"""


def _run(env_extra: dict) -> dict:
    import json
    import os

    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt: Linux only")
def test_applied_once_on_linux_and_switchable_off():
    assert _run({}) == {"applied": True, "again": True}
    assert _run({"REPYOLO_MALLOC_TUNING": "0"}) == {"applied": False, "again": False}


def test_trainer_applies_it_on_the_cpu(synthetic_data, tiny_model_yaml, tmp_path, monkeypatch):
    from repyolo.engine import trainer as trainer_mod

    calls = []
    monkeypatch.setattr(trainer_mod, "keep_freed_memory", lambda: calls.append(1) or True)
    trainer_mod.Trainer(trainer_mod.TrainArgs(model=str(tiny_model_yaml), data=str(synthetic_data), epochs=1,
                                              img=64, batch=8, project=str(tmp_path), name="m", workers=0))
    assert calls == [1]
