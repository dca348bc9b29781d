"""Stand-in official YOLOv6 checkpoints for the importer tests.

``make_official_checkpoint(name, path)`` writes a temporary package ``yolov6`` whose modules
define empty ``nn.Module`` subclasses with the official class names (from
``module_classes.txt``), assembles from them the module tree that has exactly the keys
and shapes of the key file ``<name>.txt`` (random values, float16, BN running_var > 0),
``torch.save``\\ s it the way the official releases are saved, then removes the package from
``sys.path`` / ``sys.modules`` / disk so nothing can import it while the file is read back.
"""
from __future__ import annotations

import ast
import importlib
import math
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn as nn

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "official_checkpoints"
KEY_FILES = ["yolov6n", "yolov6s", "yolov6m", "yolov6l", "yolov6n6", "yolov6m-fuse_ab", "yolov6l-fuse_ab",
             "yolov6n-distill_ns", "yolov6s-distill_ns"]
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def read_key_file(name: str) -> dict[str, tuple[int, ...]]:
    """``{official key: shape}`` of ``<name>.txt``, in file order."""
    out = {}
    for line in (REFERENCE / f"{name}.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")
            out[key] = tuple(ast.literal_eval(shape))
    return out


def official_classes() -> list[str]:
    return [c for c in (REFERENCE / "module_classes.txt").read_text().split() if c and not c.startswith("#")
            and "." in c]


class FakeOfficialPackage:
    """Context manager: an importable ``yolov6`` package of empty module classes, removed on exit.

    It defines the classes of ``module_classes.txt`` plus ``extra`` class paths (``yolov6.x.y.Name``).
    """

    def __init__(self, extra: tuple[str, ...] = ()):
        self.extra = tuple(extra)

    def __enter__(self) -> dict[str, type]:
        self.root = Path(tempfile.mkdtemp(prefix="fake_yolov6_"))
        files: dict[str, list[str]] = defaultdict(list)
        for qual in dict.fromkeys(official_classes() + list(self.extra)):
            if qual.startswith("yolov6."):
                module, name = qual.rsplit(".", 1)
                files[module].append(name)
        for module, names in files.items():
            parts = module.split(".")
            for i in range(1, len(parts)):
                pkg = self.root.joinpath(*parts[:i])
                pkg.mkdir(parents=True, exist_ok=True)
                (pkg / "__init__.py").touch()
            body = ["import torch.nn as nn", ""] + [f"class {n}(nn.Module):\n    pass\n" for n in names]
            self.root.joinpath(*parts[:-1], f"{parts[-1]}.py").write_text("\n".join(body))
        sys.path.insert(0, str(self.root))
        importlib.invalidate_caches()
        classes = {}
        for module, names in files.items():
            mod = importlib.import_module(module)
            classes.update({f"{module}.{n}": getattr(mod, n) for n in names})
        return classes

    def __exit__(self, *exc) -> None:
        sys.path.remove(str(self.root))
        for name in [m for m in sys.modules if m == "yolov6" or m.startswith("yolov6.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        shutil.rmtree(self.root, ignore_errors=True)


def _tree_children(keys) -> dict[str, list[str]]:
    """module path -> names of its direct child modules (``''`` is the root)."""
    children: dict[str, dict[str, None]] = defaultdict(dict)
    for key in keys:
        parts = key.split(".")[:-1]
        for i in range(len(parts)):
            children[".".join(parts[:i])].setdefault(parts[i], None)
    return {k: list(v) for k, v in children.items()}


def _pick_class(path: str, kids: list[str], leaves: set[str], shapes: dict, csp: bool, p6: bool, silu: bool,
                head: str, classes: dict[str, type]):
    """The official class of the module at ``path`` (children ``kids``, own tensors ``leaves``)."""
    C = lambda q: classes[q]  # noqa: E731
    name = path.rsplit(".", 1)[-1]
    common = "yolov6.layers.common."
    if path == "backbone":
        kind = "EfficientRep6" if p6 else "CSPBepBackbone" if csp else "EfficientRep"
        return C("yolov6.models.efficientrep." + kind)
    if path == "neck":
        return C("yolov6.models.reppan." + ("RepBiFPANNeck6" if p6 else "CSPRepBiFPANNeck" if csp else "RepBiFPANNeck"))
    if path == "detect":
        return C({"plain": "yolov6.models.effidehead.Detect",
                  "distill": "yolov6.models.heads.effidehead_distill_ns.Detect",
                  "fuseab": "yolov6.models.heads.effidehead_fuseab.Detect"}[head])
    if "rbr_dense" in kids:
        return C(common + "RepVGGBlock")
    if set(kids) == {"conv", "bn"}:
        return C(common + "ConvModule")
    if kids == ["block"] and set(_sub(shapes, path + ".block")) == {"conv", "bn"}:
        return C(common + ("ConvBNSiLU" if silu or path.startswith("detect.") else "ConvBNReLU"))
    if set(kids) <= {"conv1", "block"} and "conv1" in kids:
        return C(common + "RepBlock")
    if set(kids) == {"conv1", "conv2"}:
        return C(common + "BottleRep")
    if set(kids) == {"cv1", "cv2", "cv3", "m"}:
        return C(common + "BepC3")
    if name == "cspsppf":
        return C(common + "CSPSPPFModule")
    if name == "sppf":
        return C(common + "SPPFModule")
    if kids == ["cspsppf"]:
        return C(common + "SimCSPSPPF")
    if kids == ["sppf"]:
        return C(common + ("SPPF" if silu else "SimSPPF"))
    if name.startswith("Bifusion"):
        return C(common + "BiFusion")
    if kids == ["upsample_transpose"]:
        return C(common + "Transpose")
    if kids and all(k.isdigit() for k in kids):
        return nn.ModuleList if path.startswith("detect.") else nn.Sequential
    raise AssertionError(f"no official class for {path} with children {kids} and tensors {leaves}")


def _sub(shapes: dict, path: str) -> list[str]:
    prefix = path + "."
    return list(dict.fromkeys(k[len(prefix):].split(".")[0] for k in shapes
                              if k.startswith(prefix) and "." in k[len(prefix):]))


def _leaf_module(path: str, tensors: dict[str, tuple[int, ...]]) -> nn.Module:
    """A real torch.nn leaf (Conv2d, ConvTranspose2d, BatchNorm2d) with these parameter shapes."""
    w = tensors.get("weight")
    if "running_var" in tensors:
        return nn.BatchNorm2d(w[0], eps=1e-3, momentum=0.03)
    if path.endswith("upsample_transpose"):
        return nn.ConvTranspose2d(w[0], w[1], w[2], w[2], bias="bias" in tensors)
    if w is not None and len(w) == 4:
        return nn.Conv2d(w[1], w[0], w[2], 1, w[2] // 2, bias="bias" in tensors)
    raise AssertionError(f"no leaf module for {path}: {tensors}")


def _random(key: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.randint(1, 10000, shape, generator=gen, dtype=torch.int64)
    if leaf == "running_var":
        return torch.rand(shape, generator=gen) + 0.5
    if leaf == "proj":
        return torch.linspace(0, shape[0] - 1, shape[0])
    if key.endswith("proj_conv.weight"):
        return torch.linspace(0, shape[1] - 1, shape[1]).view(shape)
    if leaf == "alpha" or (leaf == "weight" and len(shape) == 1):  # BN gamma, BottleRep alpha
        return torch.rand(shape, generator=gen) * 0.5 + 0.5
    if leaf == "weight":
        fan_in = math.prod(shape[1:])
        return torch.randn(shape, generator=gen) * (0.7 / math.sqrt(fan_in))
    return torch.randn(shape, generator=gen) * 0.1  # biases, running_mean


def build_official_tree(name: str, classes: dict[str, type], seed: int = 0,
                        replace: dict[str, tuple[int, ...]] | None = None) -> nn.Module:
    """The official module tree (``yolov6.models.yolo.Model`` root) with exactly the keys of ``<name>.txt``
    (shapes of ``replace`` instead of the file's where given)."""
    shapes = {**read_key_file(name), **(replace or {})}
    children = _tree_children(shapes)
    own: dict[str, dict[str, tuple[int, ...]]] = defaultdict(dict)
    for key, shape in shapes.items():
        path, leaf = key.rsplit(".", 1)
        own[path][leaf] = shape
    csp = any(".cv1." in k and k.startswith("backbone.ERBlock_2.1.") for k in shapes)
    p6 = any(k.startswith("backbone.ERBlock_6.") for k in shapes)
    silu = "backbone.stem.block.conv.weight" in shapes
    head = "distill" if any("reg_preds_dist" in k for k in shapes) else \
        "fuseab" if any("cls_preds_ab" in k for k in shapes) else "plain"
    gen = torch.Generator().manual_seed(seed)
    act = nn.SiLU if silu else nn.ReLU

    def make(path: str) -> nn.Module:
        kids = children.get(path, [])
        if not kids:
            with torch.device("meta"):  # every tensor of a leaf is replaced below
                module = _leaf_module(path, own[path])
        else:
            cls = _pick_class(path, kids, set(own.get(path, {})), shapes, csp, p6, silu, head, classes)
            module = cls()
            for kid in kids:
                module.add_module(kid, make(f"{path}.{kid}" if path else kid))
            qual = f"{type(module).__module__}.{type(module).__qualname__}"
            if qual.endswith(("RepVGGBlock", "ConvModule")):  # modules without tensors, as in the real tree
                module.add_module("nonlinearity" if "RepVGG" in qual else "act", act() if "RepVGG" in qual or
                                  path.endswith(".block") else nn.Identity())
            if qual.endswith(("SPPFModule", "CSPSPPFModule")):
                module.add_module("m", nn.MaxPool2d(5, 1, 2))
        for leaf, shape in own.get(path, {}).items():
            tensor = _random(f"{path}.{leaf}", shape, gen)
            if leaf in BUFFERS:
                module.register_buffer(leaf, tensor)
            else:
                module.register_parameter(leaf, nn.Parameter(tensor, requires_grad=False))
        return module

    root = classes["yolov6.models.yolo.Model"]()
    for kid in children[""]:
        root.add_module(kid, make(kid))
    root.half()
    for p in root.parameters():
        p.requires_grad_(False)
    got = {k: tuple(v.shape) for k, v in root.state_dict().items()}
    assert got == shapes, f"stand-in tree of {name} does not reproduce its key file"
    return root


def make_official_checkpoint(name: str, path: Path, seed: int = 0, ema_seed: int | None = None,
                             legacy: bool = False, shapes: dict[str, tuple[int, ...]] | None = None
                             ) -> dict[str, torch.Tensor]:
    """Write a stand-in official checkpoint of key file ``name`` to ``path``.

    ``shapes`` replaces some of the key file's shapes (e.g. a 4-channel DLD branch). Returns the
    saved weights as ``{official key: float16/int64 tensor}`` (of ``ema`` when ``ema_seed`` is
    given, else of ``model``). The fake package is gone when this returns.
    """
    with FakeOfficialPackage() as classes:
        model = build_official_tree(name, classes, seed, shapes)
        ema = build_official_tree(name, classes, ema_seed, shapes) if ema_seed is not None else None
        ckpt = {"model": model, "ema": ema, "updates": None, "optimizer": None, "epoch": 299}
        torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
        state = (ema or model).state_dict()
    return {k: v.clone() for k, v in state.items()}


# ------------------------------------------------------------------ from the layer listings (every family)

# generic official class paths where a listing names no class (containers); the importer reads
# weights and activation classes, not container names
GENERIC = "yolov6.layers.common.Module"
LISTING_CLASSES = (GENERIC, "yolov6.models.yolo.Model", "yolov6.models.backbone.Backbone",
                   "yolov6.models.neck.Neck", "yolov6.models.head.Detect")


def _listing_leaf(desc: str) -> nn.Module:
    """The torch.nn leaf a listing line describes (``Conv2d in=3 out=16 k=3 s=2 p=1 g=1 bias=False`` ...)."""
    cls, *fields = desc.split()
    geo = {k: v for k, v in (f.split("=", 1) for f in fields)}
    if cls == "Conv2d":
        return nn.Conv2d(int(geo["in"]), int(geo["out"]), int(geo["k"]), int(geo["s"]), int(geo["p"]),
                         groups=int(geo["g"]), bias=geo["bias"] == "True")
    if cls == "ConvTranspose2d":
        return nn.ConvTranspose2d(int(geo["in"]), int(geo["out"]), int(geo["k"]), int(geo["s"]), bias=True)
    if cls == "MaxPool2d":
        return nn.MaxPool2d(int(geo["k"]), int(geo["s"]), int(geo["p"]))
    if cls == "Upsample":
        return nn.Upsample(scale_factor=float(geo["scale"]), mode=geo["mode"])
    if cls == "AvgPool2d":
        return nn.AvgPool2d(3, 1, 1)
    if cls == "AdaptiveAvgPool2d":
        return nn.AdaptiveAvgPool2d(1)
    if cls == "BatchNorm2d":
        return nn.BatchNorm2d(1, eps=1e-3, momentum=0.03)  # its tensors are replaced by the listing's
    return getattr(nn, cls)()  # ReLU, SiLU, Hardswish, Hardsigmoid, Identity


def build_listing_tree(listing: dict, classes: dict[str, type], seed: int = 0) -> nn.Module:
    """The module tree of an official model from its layer listing (``read_listing(..., official_names=True)``):
    every leaf of the listing with its class (activations included) and conv geometry, every state_dict
    key with its shape (random float16 values), generic ``yolov6.*`` containers in between."""
    shapes, leaves = listing["state"], listing["leaves"]
    own: dict[str, dict[str, tuple[int, ...]]] = defaultdict(dict)
    for key, shape in shapes.items():
        path, leaf = key.rsplit(".", 1)
        own[path][leaf] = shape
    children = _tree_children([f"{name}.x" for name in leaves] + list(shapes))
    roots = {"backbone": "yolov6.models.backbone.Backbone", "neck": "yolov6.models.neck.Neck",
             "detect": "yolov6.models.head.Detect"}
    gen = torch.Generator().manual_seed(seed)

    def make(path: str) -> nn.Module:
        if path in leaves:
            with torch.device("meta"):  # every tensor of a leaf is replaced below
                module = _listing_leaf(leaves[path])
        else:
            module = classes[roots.get(path, GENERIC)]()
            for kid in children.get(path, []):
                module.add_module(kid, make(f"{path}.{kid}"))
        for leaf, shape in own.get(path, {}).items():
            tensor = _random(f"{path}.{leaf}", shape, gen)
            if leaf in BUFFERS or leaf == "proj":
                module.register_buffer(leaf, tensor)
            else:
                module.register_parameter(leaf, nn.Parameter(tensor, requires_grad=False))
        if isinstance(module, nn.BatchNorm2d):
            module.num_features = own[path]["weight"][0]
        return module

    root = classes["yolov6.models.yolo.Model"]()
    for kid in children[""]:
        root.add_module(kid, make(kid))
    root.half()
    got = {k: tuple(v.shape) for k, v in root.state_dict().items()}
    assert got == shapes, "stand-in tree does not reproduce the listing's state_dict"
    assert not any(t.is_meta for t in root.state_dict().values())
    return root


def make_listing_checkpoint(listing: dict, path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """Write a stand-in official checkpoint of a layer listing to ``path`` (as the releases are saved);
    returns the saved weights ``{official key: tensor}``. The fake package is gone when this returns."""
    with FakeOfficialPackage(LISTING_CLASSES) as classes:
        model = build_listing_tree(listing, classes, seed)
        torch.save({"model": model, "ema": None, "updates": None, "optimizer": None, "epoch": 299}, path)
        state = model.state_dict()
    return {k: v.clone() for k, v in state.items()}
