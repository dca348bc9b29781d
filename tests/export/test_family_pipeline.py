"""Every new model family through the normal paths, at a fraction of its width: the real Trainer
trains it for two iterations on a tiny synthetic set, and its fused checkpoint exports to ONNX with the
fused PyTorch model's outputs. The Lite configs' published solver reaches the trainer."""
from __future__ import annotations

import copy

import pytest
import torch
import yaml
from export_helpers import assert_parity, perturb

from repyolo.cfg.settings import Hyp
from repyolo.engine.trainer import TrainArgs, Trainer
from repyolo.export import export_model
from repyolo.io.checkpoint import load_model, read_checkpoint
from repyolo.nn.model import load_model_config
from repyolo.runtime.onnx import OnnxBackend

# family -> (bundled config, width / depth multiples of the reduced copy)
FAMILIES = {"base": ("yolov6n-base", 0.125, 0.17), "mbla": ("yolov6s-mbla", 0.125, 0.25),
            "qa": ("yolov6n-qa", 0.125, 0.17), "lite": ("yolov6lite-s", 0.25, None)}


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
    from repyolo.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("syn"), n_train=8, n_val=2, img_size=64, seed=0)


def reduced_yaml(family: str, folder) -> str:
    name, width, depth = FAMILIES[family]
    cfg = load_model_config(name)
    cfg.update(name=f"{name}-small", width_multiple=width)
    if depth is not None:
        cfg["depth_multiple"] = depth
    cfg.pop("published", None)
    path = folder / f"{name}-small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_trains_fuses_and_exports(family, synthetic_data, tmp_path):
    args = TrainArgs(model=reduced_yaml(family, tmp_path), data=str(synthetic_data), epochs=1, img=64, batch=4,
                     max_batches=2, project=str(tmp_path), name="run", workers=0, no_val=True, exist_ok=True)
    trainer = Trainer(args)
    trainer.train()
    assert trainer.step == 2
    ckpt = read_checkpoint(trainer.wdir / "last.pt")
    assert ckpt["model_cfg"]["family"] == family and ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())

    model = perturb(load_model(trainer.wdir / "last.pt"), seed=1)  # non-trivial head outputs
    fused = copy.deepcopy(model).fuse()
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = fused(x)
        assert_parity(model(x), ref)  # fusing is exact
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    path = export_model(model, "onnx", img_size=128, batch=2, output=tmp_path / f"{family}.onnx")
    assert_parity(OnnxBackend(path, threads=1)(x), ref)


def test_lite_published_solver_reaches_the_trainer(synthetic_data, tmp_path):
    """yolov6lite-s as published: SGD lr0 0.4, momentum 0.9, weight decay 4e-5, scale 0.5, mixup 0,
    4 ATSS warm-up epochs, SIoU, 320 px (official yolov6_lite_s.py)."""
    hyp = Hyp.resolve(load_model_config("yolov6lite-s"))
    assert (hyp.lr0, hyp.momentum, hyp.weight_decay, hyp.scale, hyp.mixup) == (0.4, 0.9, 4e-5, 0.5, 0.0)
    assert (hyp.atss_warmup_epochs, hyp.iou_type, hyp.optimizer) == (4, "siou", "SGD")
    assert Hyp.resolve(load_model_config("yolov6lite-s"), {"lr0": 0.1}).lr0 == 0.1  # the user still wins

    for recipe in ("yolov6", "small"):
        trainer = Trainer(TrainArgs(model="yolov6_lite_s", data=str(synthetic_data), epochs=10, batch=4,
                                    project=str(tmp_path), name=recipe, workers=0, no_val=True,
                                    hyp={"recipe": recipe}))
        assert trainer.args.img == 320  # img None -> the model's published input size
        assert trainer.train_set.img_size == 320 and trainer.model.cfg["name"] == "yolov6lite-s"
        assert trainer.hyp.scale == 0.5 and trainer.hyp.mixup == 0.0
        assert trainer.criterion.atss_warmup_epochs == 4 and trainer.criterion.iou_type == "siou"
        if recipe == "yolov6":  # the published constants as they are (wd scaled to the nominal batch 64)
            assert trainer.recipe.lr0 == 0.4 and trainer.recipe.weight_decay == pytest.approx(4e-5)
        else:  # the short-run recipe rescales the LR to the batch and the weight decay to batch / 64
            assert trainer.recipe.lr0 == pytest.approx(0.4 * (4 / 32) ** 0.5)
            assert trainer.recipe.weight_decay == pytest.approx(4e-5 * 4 / 64)
        assert trainer.schedule.momentum == 0.9  # after warm-up (which ramps momentum from 0.8)
