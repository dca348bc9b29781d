"""Where training writes, and what a run leaves behind (issue #15): resume of a copied run, atomic
run-folder claims, stale temp files, failed starts, an unlabeled val split, the start summary,
``args.yaml``'s effective values and the checkpoints' file mode."""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from repyolo.cli import main
from repyolo.engine.trainer import TrainArgs, Trainer
from repyolo.io.checkpoint import read_checkpoint


def _args(data, model, project, **kw) -> TrainArgs:
    base = dict(model=str(model), data=str(data), epochs=2, img=64, batch=8, project=str(project), name="run",
                workers=0, seed=0, no_val=True)
    base.update(kw)
    return TrainArgs(**base)


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class _Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def interrupted_run(synthetic_data, tiny_model_yaml, tmp_path_factory) -> Path:
    """A 2-epoch run stopped after its first epoch (last.pt at epoch 0), like a killed run."""
    project = tmp_path_factory.mktemp("interrupted")
    trainer = Trainer(_args(synthetic_data, tiny_model_yaml, project, name="orig"))
    end_epoch = trainer._end_epoch

    def stop_after_first(epoch, *a, **kw):
        end_epoch(epoch, *a, **kw)
        raise _Interrupted

    trainer._end_epoch = stop_after_first
    with pytest.raises(_Interrupted):
        trainer.train()
    assert read_checkpoint(project / "orig" / "weights" / "last.pt")["epoch"] == 0
    return project / "orig"


@pytest.mark.parametrize("where", ["beside", "project-name"])
def test_resume_of_a_copied_run_writes_beside_the_copy(interrupted_run, tmp_path, where):
    project = tmp_path / "runs"
    project.mkdir()
    copy = project / "copy"
    shutil.copytree(interrupted_run, copy)  # cp -a runs/orig runs/copy
    before = _tree_digest(interrupted_run)
    cmd = ["train", "--resume", str(copy / "weights" / "last.pt"), "--workers", "0"]
    if where == "project-name":
        cmd += ["--project", str(project), "--name", "copy"]
    assert main(cmd) == 0
    assert read_checkpoint(copy / "weights" / "last.pt")["epoch"] == 1  # the copy was continued
    assert _tree_digest(interrupted_run) == before  # the original is byte-identical
    assert sorted(p.name for p in project.iterdir()) == ["copy"]  # and nothing was written elsewhere
    assert yaml.safe_load((copy / "args.yaml").read_text())["project"] == str(project)


def test_resume_into_another_project_name(interrupted_run, tmp_path):
    before = _tree_digest(interrupted_run)
    assert main(["train", "--resume", str(interrupted_run / "weights" / "last.pt"), "--workers", "0",
                 "--project", str(tmp_path), "--name", "moved"]) == 0
    assert read_checkpoint(tmp_path / "moved" / "weights" / "last.pt")["epoch"] == 1
    assert _tree_digest(interrupted_run) == before


def test_stale_temp_files_are_removed_on_start_and_resume(interrupted_run, synthetic_data, tiny_model_yaml,
                                                          tmp_path, repyolo_log):
    run = tmp_path / "run"
    shutil.copytree(interrupted_run, run)
    orphans = [run / "weights" / ".last.pt.k1ll3d.tmp", run / "weights" / ".best.pt.x7.tmp"]
    for f in orphans:
        f.write_bytes(b"half a checkpoint")
    Trainer(TrainArgs(resume=str(run / "weights" / "last.pt"), workers=0))  # resume: set-up only
    assert not any(f.exists() for f in orphans)
    assert "removed 2 unfinished checkpoint file(s)" in repyolo_log.text(logging.INFO)
    assert sorted(p.name for p in (run / "weights").iterdir()) == ["best.pt", "last.pt"]
    orphans[0].write_bytes(b"again")
    Trainer(_args(synthetic_data, tiny_model_yaml, tmp_path, name="run", exist_ok=True))  # a new run, same folder
    assert not orphans[0].exists()


def _claim(args) -> str:
    from repyolo.utils.paths import claim_run_dir

    barrier, target = args
    barrier.wait()  # both processes race for the same name at the same moment
    return str(claim_run_dir(target))


def test_two_processes_started_together_never_share_a_folder(tmp_path):
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager, ctx.Pool(2) as pool:
        for round_ in range(12):
            barrier = manager.Barrier(2)
            target = tmp_path / f"round{round_}" / "exp"
            got = pool.map(_claim, [(barrier, target), (barrier, target)])
            assert len(set(got)) == 2, f"round {round_}: both runs got {got[0]}"
            assert {Path(p).name for p in got} == {"exp", "exp2"}


@pytest.mark.parametrize("case", ["bad-weights", "empty-data", "nc-mismatch"])
def test_failed_start_leaves_no_run_folder(case, synthetic_data, tiny_model_yaml, tmp_path, repyolo_log):
    project = tmp_path / "runs"
    data = str(synthetic_data)
    extra = []
    if case == "bad-weights":
        (tmp_path / "photo.pt").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
        extra = ["--weights", str(tmp_path / "photo.pt")]
    elif case == "empty-data":
        (tmp_path / "empty" / "images" / "train").mkdir(parents=True)
        (tmp_path / "empty" / "images" / "val").mkdir(parents=True)
        data = tmp_path / "empty.yaml"
        data.write_text(f"train: {tmp_path}/empty/images/train\nval: {tmp_path}/empty/images/val\nnc: 1\nnames: [a]\n")
    else:
        cfg = yaml.safe_load(Path(synthetic_data).read_text())
        data = tmp_path / "nc.yaml"
        data.write_text(yaml.safe_dump({"path": str(Path(synthetic_data).parent), "train": cfg["train"],
                                        "val": cfg["val"], "nc": 3, "names": cfg["names"]}))
    common = ["train", "--model", str(tiny_model_yaml), "--epochs", "1", "--img", "64", "--batch", "8",
              "--workers", "0", "--no-val", "--project", str(project), "--name", "exp"]
    assert main([*common, "--data", str(data), *extra]) == 2
    assert not project.exists() or not any(project.iterdir()), "a failed start left a run folder"
    assert {"bad-weights": "not a checkpoint: a JPEG image", "empty-data": "no images found",
            "nc-mismatch": "nc=3 but 5 names"}[case] in repyolo_log.text()
    if case == "bad-weights":  # the next good run gets the name asked for, not exp2
        assert main([*common, "--data", str(synthetic_data)]) == 0
        assert sorted(p.name for p in project.iterdir()) == ["exp"]


def test_unlabeled_val_split_finishes_with_best_pt(synthetic_data, tiny_model_yaml, tmp_path, repyolo_log):
    data = tmp_path / "data"
    shutil.copytree(Path(synthetic_data).parent, data)
    shutil.rmtree(data / "labels" / "val")
    for cache in data.rglob("*.cache"):
        cache.unlink()
    code = main(["train", "--model", str(tiny_model_yaml), "--data", str(data / "data.yaml"), "--epochs", "2",
                 "--img", "64", "--batch", "8", "--workers", "0", "--project", str(tmp_path), "--name", "unl"])
    assert code == 0
    weights = tmp_path / "unl" / "weights"
    assert (weights / "last.pt").is_file() and (weights / "best.pt").is_file()
    assert read_checkpoint(weights / "best.pt")["epoch"] == 1  # best follows last
    log = repyolo_log.text(logging.INFO)
    assert "the split has no labels: mAP is undefined" in log
    assert "mAP undefined" in log.splitlines()[-2]  # said again at the end, before "done"
    metrics = json.loads((tmp_path / "unl" / "metrics.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}"))
    assert metrics["map"] is None and metrics["best_epoch"] == 2


def test_start_summary_args_yaml_report_once_and_file_modes(synthetic_data, tiny_model_yaml, tmp_path, repyolo_log):
    """Before the first epoch: the run folder and a model line; args.yaml records the configured and
    the effective hyper-parameters; the train split's check report is logged once (not again by
    precise-BN); checkpoints have the same mode as the other outputs."""
    data = tmp_path / "data"
    shutil.copytree(Path(synthetic_data).parent, data)
    (data / "labels" / "train" / "train_00000.txt").write_text("7 0.5 0.5 0.2 0.2\n")  # class 7 of 5: dropped
    old_umask = os.umask(0o022)
    try:
        Trainer(_args(data / "data.yaml", tiny_model_yaml, tmp_path, epochs=1, no_val=False,
                      hyp={"lr0": 0.04})).train()
    finally:
        os.umask(old_umask)
    lines = repyolo_log.text(logging.INFO).splitlines()
    first_epoch = next(i for i, ln in enumerate(lines) if ln.startswith("epoch 1"))
    start = "\n".join(lines[:first_epoch])
    assert f"run folder {tmp_path / 'run'}" in start
    model_line = next(ln for ln in lines[:first_epoch] if ln.startswith("model yolov6-tiny"))
    for part in ("M parameters", "GFLOPs at 64 px", "5 classes (circle, rectangle", "recipe small"):
        assert part in model_line
    assert sum("train_00000.txt" in ln for ln in lines) == 1, "the bad-file report was logged twice"

    text = (tmp_path / "run" / "args.yaml").read_text()
    assert text.startswith("# repyolo training run")
    saved = yaml.safe_load(text)
    recipe_line = next(ln for ln in lines if ln.startswith("recipe small"))
    eff = saved["effective"]["lr0"]
    assert saved["hyp"]["lr0"] == eff["configured"] == 0.04
    assert eff["effective"] == saved["recipe"]["lr0"] < 0.04 and f"lr0 {eff['effective']:.4g}" in recipe_line
    assert set(saved["effective"]) >= {"weight_decay", "warmup", "accumulate", "ema_decay", "close_mosaic"}

    expected = 0o644
    for f in ("weights/last.pt", "weights/best.pt", "results.csv", "args.yaml"):
        assert stat.S_IMODE((tmp_path / "run" / f).stat().st_mode) == expected, f


def test_unwritable_project_fails_before_any_work(synthetic_data, tiny_model_yaml, tmp_path, repyolo_log,
                                                  monkeypatch):
    (tmp_path / "file").write_text("a regular file")
    common = ["train", "--model", str(tiny_model_yaml), "--data", str(synthetic_data), "--epochs", "1", "--img",
              "64", "--workers", "0"]
    assert main([*common, "--project", str(tmp_path / "file" / "runs")]) == 2
    msg = repyolo_log.text()
    assert "file is a file, not a folder" in msg and "Traceback" not in msg and len(msg.splitlines()) == 1
    assert "images usable" not in repyolo_log.text(logging.INFO)  # the data set was never read

    readonly = tmp_path / "ro"
    readonly.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == readonly else real_access(p, mode))
    assert main([*common, "--project", str(readonly)]) == 2
    assert f"{readonly}" in repyolo_log.text() and "not writable" in repyolo_log.text()
    assert not any(readonly.iterdir())


def test_resume_from_an_older_checkpoint_than_last_pt_is_refused(interrupted_run, tmp_path, repyolo_log):
    from repyolo.io.checkpoint import save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(interrupted_run, run)
    later = read_checkpoint(run / "weights" / "last.pt")
    later["epoch"], later["args"] = 1, {**later["args"], "epochs": 3}
    save_checkpoint(later, run / "weights" / "last.pt")  # last.pt went on; best.pt stayed at epoch 1
    before = _tree_digest(run)
    assert main(["train", "--resume", str(run / "weights" / "best.pt"), "--workers", "0"]) == 2
    assert "resume from" in repyolo_log.text() and "last.pt" in repyolo_log.text()
    assert _tree_digest(run) == before
