"""Importing (stand-in) official YOLOv6 checkpoints of every released kind: architecture, values,
forward, fuse, ONNX, and the end-to-end paths (``load_model``, ``save_checkpoint``)."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
import yaml
from official_fakes import KEY_FILES, REFERENCE, make_official_checkpoint

import repyolo
from repyolo.io.checkpoint import model_from_checkpoint, save_checkpoint
from repyolo.io.official import COCO_NAMES, convert_official, looks_official, to_repyolo_keys

# key file -> (bundled config it must be recognised as, anchor-aided anchors, DLD branch)
EXPECTED = {
    "yolov6n": ("yolov6n", 0, False), "yolov6s": ("yolov6s", 0, False), "yolov6m": ("yolov6m", 0, False),
    "yolov6l": ("yolov6l", 0, False), "yolov6n6": ("yolov6n6", 0, False),
    "yolov6m-fuse_ab": ("yolov6m", 3, False), "yolov6l-fuse_ab": ("yolov6l", 3, False),
    "yolov6n-distill_ns": ("yolov6n", 0, True), "yolov6s-distill_ns": ("yolov6s", 0, True),
}
ONNX_MODELS = {"yolov6n", "yolov6m"}  # one RepBlock model and one CSP (BepC3) model
END_TO_END = {"yolov6n-distill_ns", "yolov6m-fuse_ab"}

pytestmark = pytest.mark.skipif(not (REFERENCE / "yolov6n.txt").is_file(),
                                reason=f"official key files not found at {REFERENCE}")


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> float:
    """Max abs difference relative to the magnitude of ``a``; asserts it is below ``tol``."""
    err = float((a - b).abs().max() / (a.abs().max() + 1.0))
    assert err < tol, err
    return err


def _onnx_roundtrip(model: torch.nn.Module, x: torch.Tensor, path) -> np.ndarray:
    import onnxruntime as ort

    torch.onnx.export(model, x, str(path), opset_version=13, dynamo=False,
                      input_names=["images"], output_names=["outputs"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x.numpy()})[0]


@pytest.mark.parametrize("name", KEY_FILES)
def test_import_official_checkpoint(name, tmp_path):
    path = tmp_path / f"{name}.pt"
    saved = make_official_checkpoint(name, path)
    assert "yolov6" not in sys.modules and importlib.util.find_spec("yolov6") is None
    with pytest.raises(ModuleNotFoundError):  # the official package really is absent
        torch.load(path, weights_only=False)
    assert looks_official(path)

    ckpt = convert_official(path)
    base, n_anchor, dist = EXPECTED[name]
    cfg = ckpt["model_cfg"]
    assert (cfg["name"], cfg["head"]["aux_anchor"], cfg["head"]["aux_dist"], cfg["nc"]) == (base, n_anchor, dist, 80)
    assert ckpt["names"] == COCO_NAMES and ckpt["fused"] is False and ckpt["args"]["official_epoch"] == 299

    # every official tensor is used, none is left over, values are the float16 ones in float32
    official = to_repyolo_keys(saved)
    assert len(official) == len(saved)
    assert set(ckpt["model"]) == set(official)
    for key, ref in official.items():
        got = ckpt["model"][key]
        assert got.shape == ref.shape, key
        if ref.is_floating_point():
            assert got.dtype == torch.float32 and torch.equal(got, ref.float()), key
        else:
            assert torch.equal(got, ref), key

    # the repyolo model has exactly the architecture the keys describe
    model = model_from_checkpoint(ckpt)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in official.items()}

    size = 128 if len(model.detect.strides) == 4 else 64
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    n_anchors = sum((size // s) ** 2 for s in model.detect.strides)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, n_anchors, 4 + 80) and torch.isfinite(y).all()
        assert ((y[..., 4:] >= 0) & (y[..., 4:] <= 1)).all()  # class scores

    if name in END_TO_END:
        # the training-only branches were kept and work (train mode, BN statistics frozen)
        check = model_from_checkpoint(ckpt).train()
        for m in check.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 0.0
        with torch.no_grad():
            out = check(x[:1])
        assert ("reg_dist" in out) == dist and ("cls_ab" in out) == bool(n_anchor)
        if dist:
            assert out["reg_dist"].shape == (1, n_anchors, 4 * 17)
        if n_anchor:
            assert out["cls_ab"].shape == (1, n_anchors * n_anchor, 80)

        with torch.no_grad():
            direct = repyolo.load_model(path)(x)  # read_checkpoint -> official importer
        _close(y, direct, 1e-6)
        ours = save_checkpoint(ckpt, tmp_path / "ours.pt")
        assert not looks_official(ours)
        reloaded = repyolo.load_model(ours)
        assert reloaded.names == COCO_NAMES
        with torch.no_grad():
            _close(y, reloaded(x), 1e-6)

    with torch.no_grad():
        model.fuse()  # deploy form: one 3x3 conv per RepVGG block, BN folded, training-only branches dropped
        y_fused = model(x)
    assert model.detect.reg_preds_dist is None and model.detect.cls_preds_ab is None
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    _close(y, y_fused)

    if base in ONNX_MODELS and name == base:
        out = _onnx_roundtrip(model, x[:1], tmp_path / f"{name}.onnx")
        _close(y_fused[:1], torch.from_numpy(out))


def _dld_distance_shapes() -> dict:
    """yolov6s-distill_ns with the DLD branch of the config as published (use_dfl False, reg_max 0): 4 outputs."""
    from official_fakes import read_key_file

    return {k: (4, *s[1:]) for k, s in read_key_file("yolov6s-distill_ns").items() if "reg_preds_dist" in k}


@pytest.mark.slow
def test_distill_ns_without_dfl_imports_trains_and_fuses(tmp_path):
    """An official yolov6s distilled with distill_ns on the published reg_max-0 config: its 4-channel DLD
    branch imports, trains (detection loss and self-distillation read the branch's own width) and is
    dropped by fuse() with the same deploy output."""
    from repyolo.data.synthetic import generate_synthetic
    from repyolo.engine.trainer import TrainArgs, Trainer
    from repyolo.io.checkpoint import read_checkpoint

    path = tmp_path / "yolov6s_distill_ns_reg0.pt"
    saved = make_official_checkpoint("yolov6s-distill_ns", path, shapes=_dld_distance_shapes())
    ckpt = convert_official(path)
    head = ckpt["model_cfg"]["head"]
    assert ckpt["model_cfg"]["name"] == "yolov6s" and head["aux_dist"] and head["dist_reg_max"] == 0
    assert set(ckpt["model"]) == set(to_repyolo_keys(saved))
    assert ckpt["model"]["detect.reg_preds_dist.2.bias"].shape == (4,)

    # fuse: the branch is dropped, the deploy output is the training-form eval output
    model = model_from_checkpoint(ckpt)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
        out = model_from_checkpoint(ckpt).train()(x)
        assert out["reg_dist"].shape == out["reg"].shape == (1, 84, 4)
        model.fuse()
        _close(y, model(x))
    assert model.detect.reg_preds_dist is None

    # train: the official file itself, self-distilled from itself, two iterations (the first is warm-up at LR 0)
    syn = generate_synthetic(tmp_path / "syn", n_train=4, n_val=2, img_size=64, seed=0).parent
    data = tmp_path / "coco_classes.yaml"  # the synthetic images under the teacher's 80 COCO names
    data.write_text(yaml.safe_dump({"train": str(syn / "images" / "train"), "val": str(syn / "images" / "val"),
                                    "nc": 80, "names": list(COCO_NAMES)}))
    trainer = Trainer(TrainArgs(weights=str(path), data=str(data), epochs=1, img=64, batch=2, max_batches=2,
                                project=str(tmp_path), name="ft", workers=0, no_val=True, exist_ok=True,
                                teacher=str(path), distill=True))
    assert (trainer.distiller.student_box, trainer.distiller.student_bins) == ("reg_dist", 1)
    trainer.train()
    trained = read_checkpoint(trainer.wdir / "last.pt")
    assert trained["model_cfg"]["head"]["dist_reg_max"] == 0
    before = ckpt["model"]["detect.reg_preds_dist.0.weight"]
    after = trained["model"]["detect.reg_preds_dist.0.weight"]
    assert after.shape == before.shape and not torch.equal(after, before)  # the branch learned
    assert all(torch.isfinite(v).all() for v in trained["model"].values() if v.is_floating_point())
