"""Training engine: outputs, resume after SIGKILL, fine-tuning, divergence, DDP."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from repyolo.engine.trainer import TrainArgs, Trainer, TrainingDiverged
from repyolo.io.checkpoint import read_checkpoint


def _args(data, model, tmp_path, **kw) -> TrainArgs:
    base = dict(model=str(model) if model else None, data=str(data), epochs=2, img=64, batch=8,
                project=str(tmp_path), name="run",
                workers=0, seed=0, exist_ok=True)
    base.update(kw)
    return TrainArgs(**base)


def test_train_writes_outputs(synthetic_data, tiny_model_yaml, tmp_path):
    result = Trainer(_args(synthetic_data, tiny_model_yaml, tmp_path)).train()
    run = tmp_path / "run"
    for f in ("weights/last.pt", "weights/best.pt", "results.csv", "metrics.json", "args.yaml", "results.png",
              "labels.png"):
        assert (run / f).is_file(), f
    ckpt = torch.load(run / "weights" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["format"] == "repyolo" and ckpt["optimizer"] is not None
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and "val/map50" in rows[-1]
    assert 0.0 <= result["map50"] <= 1.0 and "recipe" in result


def test_finetune_with_other_class_count(synthetic_data, tiny_model_yaml, tmp_path):
    from repyolo import build_model
    from repyolo.engine.trainer import transfer_weights
    from repyolo.io.checkpoint import save_checkpoint

    src = build_model(str(tiny_model_yaml), num_classes=3)
    dst = build_model(str(tiny_model_yaml), num_classes=5)
    copied, total = transfer_weights(dst, src.state_dict())
    n_cls = sum(1 for k in dst.state_dict() if k.startswith("detect.cls_preds"))
    assert copied == total - n_cls
    weights = save_checkpoint({"model_cfg": src.cfg, "names": list("abc"), "model": src.state_dict(), "epoch": 0},
                              tmp_path / "src.pt")
    Trainer(_args(synthetic_data, None, tmp_path, epochs=1, weights=str(weights), no_val=True, name="ft")).train()
    ck = read_checkpoint(tmp_path / "ft" / "weights" / "last.pt")
    assert ck["model_cfg"]["name"] == "yolov6-tiny" and ck["model_cfg"]["nc"] == 5


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(synthetic_data, tiny_model_yaml, tmp_path,
                                                                monkeypatch):
    trainer = Trainer(_args(synthetic_data, tiny_model_yaml, tmp_path, epochs=3, no_val=True, name="nan"))
    original = Trainer._train_epoch

    def poisoned(self, epoch, *rest, **kw):
        if epoch == 1:
            real = self.criterion

            def nan_loss(*a, **k):
                loss, items = real(*a, **k)
                return loss * float("nan"), items
            self.criterion = nan_loss
        return original(self, epoch, *rest, **kw)

    monkeypatch.setattr(Trainer, "_train_epoch", poisoned)
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2"):
        trainer.train()
    ck = read_checkpoint(tmp_path / "nan" / "weights" / "last.pt")
    assert ck["epoch"] == 0


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "repyolo.cli", *args]


@pytest.mark.slow(seconds=15)
def test_resume_after_sigkill_matches_uninterrupted_run(synthetic_data, tiny_model_yaml, tmp_path):
    common = ["train", "--model", str(tiny_model_yaml), "--data", str(synthetic_data), "--epochs", "5", "--img",
              "64", "--batch", "4", "--workers", "1", "--project", str(tmp_path), "--exist-ok", "--no-val",
              "--seed", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli(*common, "--name", "full"), check=True, env=env, capture_output=True)

    proc = subprocess.Popen(_cli(*common, "--name", "killed"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "weights" / "last.pt"
    deadline, seen_epochs = time.time() + 300, set()
    try:
        while time.time() < deadline and proc.poll() is None:
            if last.exists():
                ck = read_checkpoint(last)  # every read must succeed: writes are atomic
                seen_epochs.add(ck["epoch"])
                if ck["epoch"] >= 0:  # killed during a later epoch
                    break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert seen_epochs, "the run never wrote a checkpoint"
    killed_at = read_checkpoint(last)["epoch"]
    assert killed_at < 4, "the run finished before it could be killed"
    subprocess.run(_cli("train", "--resume", str(last), "--workers", "1"), check=True, env=env,
                   capture_output=True)
    a = read_checkpoint(tmp_path / "full" / "weights" / "last.pt")
    b = read_checkpoint(last)
    assert a["epoch"] == b["epoch"] == 4
    for key in ("model", "ema"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name} differs after resume"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_ddp_two_processes_on_cpu(synthetic_data, tiny_model_yaml, tmp_path):
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", "29531", "-m", "repyolo.cli", "train",
           "--model", str(tiny_model_yaml), "--data", str(synthetic_data), "--epochs", "1", "--img", "64",
           "--batch", "4", "--workers", "0", "--project", str(tmp_path), "--name", "ddp", "--exist-ok"]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from repyolo import load_model

    model = load_model(tmp_path / "ddp" / "weights" / "last.pt")
    assert model.nc == 5
    ck = read_checkpoint(tmp_path / "ddp" / "weights" / "last.pt")
    assert ck["args"]["data"] == str(synthetic_data)
