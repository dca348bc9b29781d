"""The official-checkpoint reader: the pickled official class tree, EMA preference, the legacy
format, architecture inference for every bundled family, exact key accounting, and the CLI."""
from __future__ import annotations

import pytest
import torch
from official_fakes import make_official_checkpoint

import repyolo
import repyolo.io.official as official
from repyolo.cli import main
from repyolo.errors import CheckpointError
from repyolo.io.checkpoint import save_checkpoint
from repyolo.io.official import convert_official, looks_official, read_official_state_dict
from repyolo.io.official_arch import activation_counts, infer_config, model_signature
from repyolo.io.torchfile import StandIn, load_torch_file
from repyolo.nn.model import build_model, load_model_config


def _qual(module) -> str:
    return module.qualname


def test_unpickled_tree_is_the_official_class_tree(official_yolov6n):
    path, saved = official_yolov6n
    obj = load_torch_file(path)
    assert set(obj) == {"model", "ema", "updates", "optimizer", "epoch"} and obj["epoch"] == 299
    root = obj["model"]
    assert isinstance(root, StandIn) and _qual(root) == "yolov6.models.yolo.Model"
    mods = root.__dict__["_modules"]
    assert [_qual(mods[k]) for k in ("backbone", "neck", "detect")] == [
        "yolov6.models.efficientrep.EfficientRep", "yolov6.models.reppan.RepBiFPANNeck",
        "yolov6.models.effidehead.Detect"]
    stem = mods["backbone"].__dict__["_modules"]["stem"]
    assert _qual(stem) == "yolov6.layers.common.RepVGGBlock"
    assert _qual(stem.__dict__["_modules"]["rbr_dense"].__dict__["_modules"]["bn"]) == \
        "torch.nn.modules.batchnorm.BatchNorm2d"
    reduce = mods["neck"].__dict__["_modules"]["reduce_layer0"]
    assert _qual(reduce) == "yolov6.layers.common.ConvBNReLU"  # official wrapper: .block.conv / .block.bn

    state, info = read_official_state_dict(path)
    assert list(state) == list(saved)  # the walk yields state_dict() order and names
    assert info["source"] == "model" and info["dtypes"] == ["float16"] and info["bn_eps"] == [1e-3]
    assert "yolov6.models.yolo.Model" in info["classes"]
    assert all(torch.equal(state[k], v.float() if v.is_floating_point() else v) for k, v in saved.items())


def test_ema_is_preferred_when_set(tmp_path, official_reference):
    path = tmp_path / "train_ckpt.pt"
    ema = make_official_checkpoint("yolov6n", path, seed=1, ema_seed=2)
    state, info = read_official_state_dict(path)
    assert info["source"] == "ema"
    key = "backbone.stem.rbr_dense.conv.weight"
    assert torch.equal(state[key], ema[key].float())


def test_legacy_torch_format_is_recognised_and_refused_clearly(tmp_path, official_yolov6n):
    """Pre-1.6 (non-zip) files with pickled modules carry module source as persistent records that
    torch's weights-only unpickler rejects: recognised, and refused with a one-line reason."""
    path = tmp_path / "legacy.pt"
    make_official_checkpoint("yolov6n", path, legacy=True)
    assert looks_official(path)
    with pytest.raises(CheckpointError, match=r"legacy\.pt: legacy \(pre-1\.6\) torch format"):
        convert_official(path)
    with pytest.raises(CheckpointError, match="legacy"):
        repyolo.load_model(path)


@pytest.mark.parametrize("name", ["yolov6n-v2", "yolov6t-v2", "yolov6s-v2", "yolov6m-v2", "yolov6l-v2",
                                  "yolov6l-relu-v2", "yolov6s6", "yolov6m6", "yolov6l6", "yolov6l", "yolov6l-base",
                                  "yolov6n-base", "yolov6s-mbla", "yolov6x-mbla", "yolov6n-qa", "yolov6m-qa",
                                  "yolov6lite-s", "yolov6lite-m", "yolov6lite-l"])
def test_infer_bundled_families(name):
    """Keys and shapes pick the config; where two configs share them (yolov6l / yolov6l-base,
    yolov6l-v2 / yolov6l-relu-v2) the module tree's activation classes decide."""
    with torch.device("meta"):
        model = build_model(name, num_classes=20)
    cfg, nc = infer_config(model.state_dict(), activation_counts(model))
    assert (cfg["name"], nc) == (name, 20)


def test_infer_constructs_config_for_unbundled_scales():
    custom = load_model_config("yolov6m")
    custom.update(name="mine", depth_multiple=0.5, width_multiple=0.375)
    custom["head"] = {**custom["head"], "aux_anchor": 3}
    with torch.device("meta"):
        state = build_model(custom, num_classes=7).state_dict()
    cfg, nc = infer_config(state)
    assert nc == 7 and cfg["name"].startswith("imported") and cfg["head"]["aux_anchor"] == 3
    assert model_signature(cfg, nc) == {k: tuple(v.shape) for k, v in state.items()}


def test_every_key_is_accounted_for(official_yolov6n, monkeypatch):
    path, _ = official_yolov6n
    state, info = read_official_state_dict(path)
    extra = {**state, "detect.extra.weight": torch.zeros(3)}
    monkeypatch.setattr(official, "read_official_state_dict", lambda p: (extra, info))
    with pytest.raises(CheckpointError, match="detect.extra.weight"):
        convert_official(path)
    missing = {k: v for k, v in state.items() if k != "neck.Rep_p4.conv1.rbr_1x1.bn.running_var"}
    monkeypatch.setattr(official, "read_official_state_dict", lambda p: (missing, info))
    with pytest.raises(CheckpointError, match="Rep_p4.conv1.rbr_1x1.bn.running_var"):
        convert_official(path)
    reshaped = {**state, "detect.cls_preds.1.weight": torch.zeros(80, 65, 1, 1)}
    monkeypatch.setattr(official, "read_official_state_dict", lambda p: (reshaped, info))
    with pytest.raises(CheckpointError, match="shape"):
        convert_official(path)


def test_forced_model(official_yolov6n):
    path, _ = official_yolov6n
    assert convert_official(path, model="yolov6n")["model_cfg"]["name"] == "yolov6n"
    with pytest.raises(CheckpointError, match="does not fit"):
        convert_official(path, model="yolov6s")


def test_not_official_files(tmp_path):
    ours = save_checkpoint({"model_cfg": {"name": "yolov6n"}, "model": {"w": torch.zeros(2)}}, tmp_path / "ours.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    empty = tmp_path / "empty.pt"
    empty.touch()
    assert not any(looks_official(p) for p in (ours, junk, empty, tmp_path / "missing.pt", tmp_path))
    with pytest.raises(CheckpointError, match="junk.pt: not a checkpoint: binary data"):
        load_torch_file(junk)


def test_truncated_official_file(tmp_path, official_yolov6n):
    path, _ = official_yolov6n
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        read_official_state_dict(cut)


def test_cli_import_weights(tmp_path, capsys, official_reference):
    src = tmp_path / "yolov6n-distill_ns.pt"
    make_official_checkpoint("yolov6n-distill_ns", src)
    out = tmp_path / "ours.pt"
    assert main(["import-weights", str(src), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "yolov6n (inferred)" in text and "DLD" in text and str(out) in text
    model = repyolo.load_model(out)
    assert model.detect.reg_preds_dist is not None and model.names[0] == "person"

    assert main(["import-weights", str(src), "--no-aux"]) == 0  # default output beside the input
    lean = repyolo.load_model(tmp_path / "yolov6n-distill_ns_repyolo.pt")
    assert lean.detect.reg_preds_dist is None
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64)
        torch.testing.assert_close(lean(x), model(x))

    assert main(["import-weights", str(src), "-o", str(tmp_path / "bad.pt"), "--model", "yolov6s"]) == 2
    assert not (tmp_path / "bad.pt").exists()
