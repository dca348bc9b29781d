"""Every repyolo config with an official counterpart is exact to the official layer listing.

For each listing ``official_models/<name>.txt`` (built from the published config, 80 classes):
(a) the state_dict keys and shapes equal the repyolo model's (official ``.block.conv|bn``
wrapper names renamed), and (b) every leaf module - activations included - has the same
class and conv geometry (in, out, k, s, p, groups, bias), matched by name.
"""
from __future__ import annotations

import pytest
import torch
from official_listing import LISTINGS, diff, model_leaves, read_listing

from repyolo.nn.model import available_models, build_model

# repyolo configs whose official listing exists (same name)
LISTED = [
    "yolov6n", "yolov6m", "yolov6l", "yolov6l6",
    "yolov6n-base", "yolov6s-base", "yolov6m-base", "yolov6l-base",
    "yolov6s-mbla", "yolov6m-mbla", "yolov6l-mbla", "yolov6x-mbla",
    "yolov6n-qa", "yolov6s-qa", "yolov6m-qa",
    "yolov6lite-s", "yolov6lite-m", "yolov6lite-l",
]


def _listing(name: str) -> dict:
    path = LISTINGS / f"{name}.txt"
    if not path.is_file():
        pytest.skip(f"official listing {name}.txt not found in {LISTINGS} (CI has ../shared/reference; "
                    "a user clone may not)")
    return read_listing(path)


def _meta_model(name: str):
    with torch.device("meta"):
        return build_model(name, num_classes=80)


def test_every_listing_has_a_config():
    if not LISTINGS.is_dir():
        pytest.skip(f"official listings not found at {LISTINGS}")
    names = sorted(p.stem for p in LISTINGS.glob("*.txt"))
    assert names and set(names) <= set(LISTED) and set(LISTED) <= set(available_models())


@pytest.mark.parametrize("name", LISTED)
def test_state_dict_matches_listing(name):
    listing = _listing(name)
    model = _meta_model(name)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = diff(listing["state"], got, "state_dict keys")
    assert not problems, f"{name}: " + " | ".join(problems)


@pytest.mark.parametrize("name", LISTED)
def test_leaf_modules_match_listing(name):
    listing = _listing(name)
    model = _meta_model(name)
    problems = diff(listing["leaves"], model_leaves(model), "leaf modules")
    assert not problems, f"{name}: " + " | ".join(problems)


@pytest.mark.parametrize("name", LISTED)
def test_config_matches_published(name):
    """Multipliers, strides, DFL, IoU loss and ATSS warm-up as published."""
    published = _listing(name)["config"]["model"]
    model = _meta_model(name)
    cfg, head = model.cfg, published["head"]
    if published.get("depth_multiple") is not None:
        assert cfg["depth_multiple"] == pytest.approx(published["depth_multiple"])
    assert cfg["width_multiple"] == pytest.approx(published["width_multiple"])
    assert list(model.detect.strides) == head["strides"]
    assert model.detect.use_dfl == head["use_dfl"]
    assert cfg["loss"]["iou_type"] == head["iou_type"]
    assert cfg["atss_warmup_epochs"] == head["atss_warmup_epoch"]
    solver, aug = _listing(name)["config"]["solver"], _listing(name)["config"]["data_aug"]
    assert cfg["lr0"] == pytest.approx(solver["lr0"]) and cfg["mixup"] == pytest.approx(aug["mixup"])
