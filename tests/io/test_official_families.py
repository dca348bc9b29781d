"""Importing official checkpoints of every family, key for key: base, MBLA, QARepVGG, Lite.

Each stand-in checkpoint is built from the family's layer listing (``official_models/<name>.txt``:
every state_dict key and shape, every leaf module's class - activations included - and conv
geometry; generic ``yolov6.*`` containers) and saved the way the official releases are
(:func:`official_fakes.make_listing_checkpoint`). For each: the importer infers exactly that
config (``yolov6l`` and ``yolov6l-base`` share their keys: only the activations tell them apart),
every official tensor lands and none is left over, and the imported model computes what a repyolo
model loaded with the same tensors computes.
"""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from official_fakes import make_listing_checkpoint
from official_listing import LISTINGS, read_listing

from repyolo.io.checkpoint import model_from_checkpoint
from repyolo.io.official import convert_official, to_repyolo_keys
from repyolo.io.official_arch import ACTIVATIONS, bundled_matches, infer_config, shapes_of
from repyolo.nn.model import build_model

FAMILIES = ["yolov6n-base", "yolov6s-base", "yolov6m-base", "yolov6l-base",
            "yolov6s-mbla", "yolov6m-mbla", "yolov6l-mbla", "yolov6x-mbla",
            "yolov6n-qa", "yolov6s-qa", "yolov6m-qa",
            "yolov6lite-s", "yolov6lite-m", "yolov6lite-l"]
LARGE = {"yolov6l-base", "yolov6l-mbla", "yolov6x-mbla"}  # > 45M parameters: several seconds each

pytestmark = pytest.mark.skipif(not (LISTINGS / "yolov6n-base.txt").is_file(),
                                reason=f"official layer listings not found at {LISTINGS}")


def _listing(name: str) -> dict:
    return read_listing(LISTINGS / f"{name}.txt", official_names=True)


def _reference_model(name: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The bundled config built on the meta device and given exactly ``state`` (repyolo names)."""
    with torch.device("meta"):
        model = build_model(name, num_classes=80)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in FAMILIES])
def test_import_official_family(name, tmp_path):
    path = tmp_path / f"{name}.pt"
    saved = make_listing_checkpoint(_listing(name), path)

    ckpt = convert_official(path)
    cfg = ckpt["model_cfg"]
    assert (cfg["name"], cfg["nc"], cfg["head"]["aux_anchor"], cfg["head"]["aux_dist"]) == (name, 80, 0, False)

    # key for key: every official tensor lands, none is missing or left over, values as saved
    official = {k: v.float() if v.is_floating_point() else v for k, v in to_repyolo_keys(saved).items()}
    assert len(official) == len(saved) and set(ckpt["model"]) == set(official)
    assert all(torch.equal(ckpt["model"][k], v) for k, v in official.items())

    # the imported model computes what the bundled model with the same tensors computes
    model = model_from_checkpoint(ckpt)
    reference = _reference_model(name, official)
    size = 128 if model.max_stride == 64 else 64
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y, ref = model(x), reference(x)
    assert y.shape == (1, sum((size // s) ** 2 for s in model.detect.strides), 84) and torch.isfinite(y).all()
    assert torch.equal(y, ref)


def test_l_and_l_base_are_told_apart_by_activations():
    """Same keys and shapes; only the activation classes of the module tree say L (SiLU body, ReLU
    neck laterals) or L-base (ReLU body, SiLU head). (The pickled trees: test_import_official_family.)"""
    listings = {n: _listing(n) for n in ("yolov6l", "yolov6l-base")}
    assert listings["yolov6l"]["state"] == listings["yolov6l-base"]["state"]
    state = {k: torch.empty(s, device="meta") for k, s in listings["yolov6l"]["state"].items()}
    assert {c["name"] for c in bundled_matches(shapes_of(to_repyolo_keys(state)))} == {"yolov6l", "yolov6l-base"}
    for name, listing in listings.items():
        acts = Counter(d for d in listing["leaves"].values() if d in ACTIVATIONS)
        assert acts["SiLU"] and acts["ReLU"]  # both use both: the counts decide
        assert infer_config(state, acts)[0]["name"] == name
