"""`repyolo info`: the contract JSON of one model, and the zoo list (every family, no model built)."""
from __future__ import annotations

import json

import pytest

from repyolo.cli import main
from repyolo.nn.model import available_models


def test_info_json(capsys):
    assert main(["info", "--model", "yolov6n", "--img", "640", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert abs(info["params"]["deploy"] / 1e6 - 4.7) / 4.7 < 0.02
    assert abs(info["gflops"]["deploy"] - 11.4) / 11.4 < 0.02
    assert info["params"]["train"] > info["params"]["deploy"]


def test_info_table(capsys):
    assert main(["info", "--model", "yolov6s-v2", "--img", "320"]) == 0
    out = capsys.readouterr().out
    assert "backbone" in out and "GFLOPs" in out


def test_info_official_name(capsys):
    assert main(["info", "--model", "yolov6_lite_s.py", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "yolov6lite-s" and info["img"] == 320


@pytest.mark.parametrize("argv", [["info"], ["info", "--list"]])
def test_info_lists_every_family_without_building(argv, capsys, monkeypatch):
    import repyolo.nn.model as model_module

    def no_build(*a, **k):
        raise AssertionError("the list must not build models")

    monkeypatch.setattr(model_module.YOLOv6, "__init__", no_build)
    assert main(argv) == 0
    out = capsys.readouterr().out
    for heading in ("v3:", "v3-p6:", "v2:", "base:", "mbla:", "qa:", "lite:"):
        assert f"\n{heading}" in out
    assert all(name in out for name in available_models())
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  yolov6")}
    assert rows["yolov6lite-s"][1:5] == ["0.55", "0.56", "320", "22.4"]
    assert rows["yolov6n-qa"][1:6] == ["4.7", "11.4", "640", "37.1", "36.4"]
    assert rows["yolov6l6"][1:4] == ["140.4", "673.4", "1280"]


def test_info_list_json(capsys):
    assert main(["info", "--list", "--json"]) == 0
    zoo = json.loads(capsys.readouterr().out)
    by_name = {e["name"]: e for e in zoo}
    assert set(by_name) == set(available_models())
    assert by_name["yolov6x-mbla"]["family"] == "mbla" and by_name["yolov6x-mbla"]["published"]["coco_map"] == 53.5
    assert by_name["yolov6-tiny"]["published"] == {}


def test_readme_model_table_shows_every_family_with_the_configs_numbers():
    """The README's model table and the configs' ``published:`` keys (the one source) agree."""
    from pathlib import Path

    from repyolo.nn.model import model_zoo

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and "`yolov6" in cells[1]:
            names = [n.strip(" `") for n in cells[1].split(",")]
            for i, name in enumerate(names):
                rows[name] = (cells[0], cells[2].split(" / ")[i], cells[3].split(" / ")[i], cells[4], cells[5])
    published = {e["name"]: e for e in model_zoo() if e["published"]}
    assert set(rows) == set(published)
    for name, (family, params, gflops, img, maps) in rows.items():
        p = published[name]["published"]
        assert (family, params, gflops, img) == (published[name]["family"], f"{p['params_m']:g}", f"{p['gflops']:g}",
                                                 str(p["img"])), name
        for key in ("coco_map", "coco_map_int8"):
            assert key not in p or f"{p[key]:.1f}" in maps, (name, key)
