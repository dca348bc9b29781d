"""Data set YAML files: the official YOLOv6 style and the ultralytics style, one reader.

Official YOLOv6::

    train: ../coco/images/train2017   # folder, list file or COCO json (or a list of them)
    val: ../coco/images/val2017
    nc: 80
    names: [person, bicycle, ...]

Ultralytics::

    path: ../datasets/coco128          # root the other paths are relative to
    train: images/train2017
    val: images/train2017
    names: {0: person, 1: bicycle, ...} # or a list

A COCO json source may name the folder its ``file_name``s live in with ``train_images`` /
``val_images`` (else they resolve against the json's folder); ``names`` may then be left
out (the json's categories are used, in sorted id order).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from repyolo.errors import DataError

SPLITS = ("train", "val", "test")


class SourcePath(type(Path())):
    """A resolved source path; a COCO json source also carries ``images``, the folder its
    ``file_name``s resolve against (the YAML's ``train_images`` / ``val_images``), so that
    ``DetectionDataset(cfg.train)`` finds the images without extra arguments."""

    images: Path | None = None


@dataclass
class DataConfig:
    """A parsed data YAML.

    Attributes:
        path: root folder relative paths were resolved against.
        train, val, test: resolved sources (image folders, list files or COCO json files).
        nc: number of classes; names: ``nc`` class names (index = class id).
        yaml_path: the file read (``None`` when built from a folder).
        images: per split, the folder COCO ``file_name``s resolve against (``None`` = json folder).
    """

    path: Path
    train: list[Path]
    val: list[Path]
    nc: int
    names: list[str]
    yaml_path: Path | None = None
    test: list[Path] = field(default_factory=list)
    images: dict[str, Path | None] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def sources(self, split: str) -> list[Path]:
        """The sources of ``split`` ('train', 'val' or 'test')."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
        srcs = getattr(self, split)
        if not srcs:
            raise DataError(f"{self.yaml_path or self.path}: no '{split}' split")
        return srcs

    def dataset(self, split: str = "train", **kwargs):
        """A :class:`~repyolo.data.dataset.DetectionDataset` over ``split`` (kwargs go to it)."""
        from repyolo.data.dataset import DetectionDataset

        kwargs.setdefault("names", self.names)
        kwargs.setdefault("image_root", self.images.get(split))
        kwargs.setdefault("root", self.path)
        kwargs.setdefault("prefix", f"{split}: ")
        return DetectionDataset(self.sources(split), **kwargs)


def _parse_names(names: Any, where: str) -> list[str]:
    if isinstance(names, dict):
        try:
            items = sorted((int(k), str(v)) for k, v in names.items())
        except (TypeError, ValueError):
            raise DataError(f"{where}: 'names' keys must be integer class ids") from None
        ids = [k for k, _ in items]
        if ids != list(range(len(ids))):
            raise DataError(f"{where}: 'names' ids must be contiguous 0..{len(ids) - 1}, got {ids[:10]}")
        return [v for _, v in items]
    if isinstance(names, (list, tuple)):
        return [str(n) for n in names]
    if isinstance(names, str) and Path(names).suffix == ".txt":  # a classes.txt file name
        return None  # resolved by the caller against the root
    raise DataError(f"{where}: 'names' must be a list or a dict of id -> name")


def _resolve(value: str, bases: list[Path], where: str, key: str) -> Path:
    p = Path(os.path.expanduser(str(value)))
    if p.is_absolute():
        if p.exists():
            return p
        raise DataError(f"{where}: {key} path '{value}' does not exist")
    for base in bases:
        cand = base / p
        if cand.exists():
            return Path(os.path.normpath(cand))
    tried = ", ".join(str(b) for b in bases)
    raise DataError(f"{where}: {key} path '{value}' not found (looked relative to {tried})")


def _json_categories(path: Path) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read COCO json ({exc})") from None
    cats = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(cats, list):
        raise DataError(f"{path}: not a COCO annotation file (no 'categories' list)")
    return sorted(cats, key=lambda c: int(c["id"]))


def load_data_config(path: str | os.PathLike) -> DataConfig:
    """Read a data YAML (either style) and resolve every path.

    A folder holding ``images/train`` (+ ``images/val``) and a ``classes.txt`` or
    ``data.yaml`` is accepted too. Raises DataError naming the file for missing keys or
    paths and for an ``nc`` that disagrees with ``names``.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("data.yaml", "data.yml", "dataset.yaml"):
            if (path / name).is_file():
                return load_data_config(path / name)
        return _folder_config(path)
    if not path.is_file():
        raise DataError(f"{path}: data YAML not found")
    where = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{where}: cannot parse YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected a mapping with 'train', 'val' and 'names'")
    yaml_dir = path.resolve().parent

    if raw.get("path"):
        root = Path(os.path.expanduser(str(raw["path"])))
        if not root.is_absolute():
            cand = yaml_dir / root
            root = cand if cand.exists() or not (Path.cwd() / root).exists() else Path.cwd() / root
        root = Path(os.path.normpath(root))
        if not root.is_dir():
            raise DataError(f"{where}: 'path' folder '{raw['path']}' does not exist")
    else:
        root = yaml_dir
    bases = list(dict.fromkeys([root, yaml_dir, Path.cwd()]))

    splits: dict[str, list[Path]] = {}
    for split in SPLITS:
        value = raw.get(split)
        if value is None or value == "" or value == []:
            if split != "test":
                raise DataError(f"{where}: missing key '{split}'")
            splits[split] = []
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        splits[split] = [_resolve(str(v), bases, where, split) for v in values]

    images: dict[str, Path | None] = {}
    for split in SPLITS:
        key = f"{split}_images"
        images[split] = _resolve(str(raw[key]), bases, where, key) if raw.get(key) else None
        if images[split] is not None:
            tagged = []
            for src in splits[split]:
                if src.suffix.lower() == ".json":
                    src = SourcePath(src)
                    src.images = images[split]
                tagged.append(src)
            splits[split] = tagged

    names = None
    if raw.get("names") is not None:
        names = _parse_names(raw["names"], where)
        if names is None:  # names: classes.txt
            names_file = _resolve(str(raw["names"]), bases, where, "names")
            names = [ln.strip() for ln in names_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    nc = raw.get("nc")
    if nc is not None:
        try:
            nc = int(nc)
        except (TypeError, ValueError):
            raise DataError(f"{where}: 'nc' must be an integer, got {raw['nc']!r}") from None
        if nc <= 0:
            raise DataError(f"{where}: 'nc' must be positive, got {nc}")
    if names is None:
        jsons = [s for s in splits["train"] + splits["val"] if s.suffix.lower() == ".json"]
        if jsons:
            names = [str(c.get("name", c["id"])) for c in _json_categories(jsons[0])]
        elif nc is not None:
            names = [f"class{i}" for i in range(nc)]
        else:
            raise DataError(f"{where}: missing key 'names' (and 'nc')")
    if nc is not None and nc != len(names):
        raise DataError(f"{where}: nc={nc} but {len(names)} names are given")
    if not names:
        raise DataError(f"{where}: 'names' is empty")
    return DataConfig(path=root, train=splits["train"], val=splits["val"], test=splits["test"],
                      nc=len(names), names=names, yaml_path=path, images=images, raw=raw)


def _folder_config(root: Path) -> DataConfig:
    """A bare ``images/{train,val}`` folder with ``classes.txt`` (val falls back to train)."""
    where = str(root)
    train = root / "images" / "train"
    if not train.is_dir():
        raise DataError(f"{where}: not a data YAML and no images/train folder inside")
    val = root / "images" / "val"
    val = val if val.is_dir() else train
    names_file = root / "classes.txt"
    if not names_file.is_file():
        raise DataError(f"{where}: no data.yaml and no classes.txt naming the classes")
    names = [ln.strip() for ln in names_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return DataConfig(path=root, train=[train], val=[val], nc=len(names), names=names,
                      yaml_path=None, images={s: None for s in SPLITS})


def write_data_yaml(path: str | os.PathLike, root: str | os.PathLike, splits: dict[str, str | list[str]],
                    names: list[str]) -> Path:
    """Write an ultralytics-style data YAML (``path`` + relative splits + ``nc`` + ``names``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"path": str(root)}
    data.update(splits)
    data["nc"] = len(names)
    data["names"] = list(names)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False, allow_unicode=True)
    return path
