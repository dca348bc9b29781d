"""The ablation benchmark's machinery: row aggregation, noise verdicts, table, and a --smoke run."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "ablation.py"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation_benchmark", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def _row(cfg, seed, m, m50, group="assigner", t=10.0, pc=None):
    return {"config": cfg, "group": group, "label": cfg, "seed": seed, "map": m, "map50": m50, "epoch_s": t,
            "wall_s": 1.0, "reused": False, "per_class": pc or {"a": m, "b": m50}}


def test_configs_change_one_thing(ablation):
    cfgs = {c.name: c for c in ablation.ablation_configs(3)}
    assert list(cfgs) == ["tal_vfl", "atss", "simota", "atss_tal", "focal", "qfl", "poly"]
    base = cfgs["tal_vfl"].hyp
    for c in cfgs.values():
        changed = {k for k in base if c.hyp[k] != base[k]}
        assert len(changed) <= 1, (c.name, changed)
    assert cfgs["atss_tal"].hyp["atss_warmup_epochs"] == 3 and cfgs["atss_tal"].hyp["assigner"] == "tal"
    assert cfgs["simota"].hyp["assigner"] == "simota" and cfgs["poly"].hyp["cls_loss"] == "poly"


def test_summarize_spread_and_verdicts(ablation):
    rows = [_row("tal_vfl", 0, 0.30, 0.60, "default"), _row("tal_vfl", 1, 0.32, 0.62, "default"),
            _row("atss", 0, 0.315, 0.605),    # inside the 2-point spread
            _row("simota", 0, 0.20, 0.45),    # clearly worse on both
            _row("qfl", 0, 0.40, 0.70, "cls loss"),  # clearly better on both
            _row("poly", 0, 0.35, 0.60, "cls loss")]  # better mAP, same mAP50: not called
    table, noise = ablation.summarize(rows)
    assert noise["map"] == pytest.approx(2.0) and noise["map50"] == pytest.approx(2.0)
    by = {r["config"]: r for r in table}
    assert by["tal_vfl"]["map"] == pytest.approx(0.31) and by["tal_vfl"]["verdict"] == "reference"
    assert by["atss"]["delta"] == pytest.approx(0.5)
    assert "noise" in by["atss"]["verdict"]
    assert by["simota"]["verdict"].startswith("worse")
    assert by["qfl"]["verdict"].startswith("better")
    assert "noise" in by["poly"]["verdict"]
    text = ablation.format_table(table)
    assert text.count("\n") == len(table) + 1
    assert "31.0 (30.0, 32.0)" in text and "-11.0 / -16.0" in text
    assert "| a 31.0 · b 61.0 |" in text  # per-class AP, mean over seeds


def test_single_seed_gives_no_verdict(ablation):
    table, noise = ablation.summarize([_row("tal_vfl", 0, 0.3, 0.6, "default"), _row("atss", 0, 0.1, 0.2)])
    assert noise["map"] is None
    assert table[1]["verdict"] == "no spread measured"


def test_epoch_seconds_excludes_final_eval(ablation, tmp_path):
    p = tmp_path / "results.csv"
    p.write_text("epoch,time_s\n1,10.0\n2,20.0\n3,45.0\n")
    assert ablation.epoch_seconds(p) == pytest.approx(10.0)
    p.write_text("epoch,time_s\n1,12.5\n")
    assert ablation.epoch_seconds(p) == pytest.approx(12.5)
    assert ablation.epoch_seconds(tmp_path / "missing.csv") is None


def test_reading_names_rows_beyond_the_spread(ablation):
    rows = [_row("tal_vfl", 0, 0.30, 0.60, "default"), _row("tal_vfl", 1, 0.32, 0.62, "default"),
            _row("simota", 0, 0.20, 0.45), _row("atss", 0, 0.31, 0.61)]
    table, _ = ablation.summarize(rows)
    text = ablation.reading(table)
    assert "worse than the default beyond the seed spread: simota" in text
    assert "within the seed spread" in text and "atss" in text.split("within the seed spread")[1]
    assert "better" not in text


@pytest.mark.slow
def test_smoke_run_writes_table(ablation, tmp_path, capsys):
    """Real 1-batch runs on 16 synthetic images: the default in-process, then with --reuse --jobs 2 the
    default is re-read and the ATSS warm-up row is trained in a child process."""
    out = tmp_path / "ablation.md"
    runs = tmp_path / "runs"
    common = ["--smoke", "--seeds", "0", "--atss-warmup", "1", "--project", str(runs),
              "--out", str(out), "--max-batches", "1", "--workers", "0"]
    assert ablation.main(common + ["--configs", "tal_vfl"]) == 0
    assert "| TAL + VFL (default) | default | 0 |" in out.read_text()
    first = (runs / "tal_vfl_s0" / "metrics.json").stat().st_mtime_ns

    assert ablation.main(common + ["--configs", "tal_vfl", "atss_tal", "--reuse", "--jobs", "2"]) == 0
    text = out.read_text()
    assert "| TAL + VFL (default) | default | 0 |" in text and "ATSS warm-up (1 ep) -> TAL" in text
    assert "python benchmarks/ablation.py --smoke" in text
    assert (runs / "tal_vfl_s0" / "metrics.json").stat().st_mtime_ns == first  # re-read, not retrained
    assert (runs / "atss_tal_s0" / "metrics.json").is_file() and (runs / "atss_tal_s0.log").is_file()
    args_yaml = (runs / "atss_tal_s0" / "args.yaml").read_text()
    assert "atss_warmup_epochs: 1" in args_yaml and "assigner: tal" in args_yaml

    # positives per ground truth of every assigner, with the trained checkpoint
    capsys.readouterr()
    assert ablation.main(["--smoke", "--positives", str(runs / "tal_vfl_s0" / "weights" / "best.pt")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    assert [ln.split("|")[1].strip() for ln in lines[1:]] == ["atss", "tal", "simota"]
    assert all(float(v) >= 0 for ln in lines[1:] for v in ln.strip("| ").split("|")[1:])


def test_row_seeds_parsing(ablation):
    assert ablation.parse_row_seeds(["atss_tal=0,1", "simota=3"]) == {"atss_tal": [0, 1], "simota": [3]}
    with pytest.raises(SystemExit):
        ablation.parse_row_seeds(["atss_tal"])
    with pytest.raises(SystemExit):
        ablation.parse_row_seeds(["atss_tal=x"])


def test_a_row_with_its_own_wide_spread_is_noise(ablation):
    rows = [_row("tal_vfl", 0, 0.30, 0.60, "default"), _row("tal_vfl", 1, 0.32, 0.62, "default"),
            _row("atss_tal", 0, 0.18, 0.37), _row("atss_tal", 1, 0.29, 0.54)]  # mean -7.5 / -15, own spread 11 / 17
    table, _ = ablation.summarize(rows)
    assert "noise" in table[1]["verdict"]
    assert ablation.verdict(-7.5, -15.0, {"map": 2.0, "map50": 2.0}).startswith("worse")
