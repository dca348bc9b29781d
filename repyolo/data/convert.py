"""Label converters: Pascal VOC xml -> YOLO txt, COCO json -> YOLO txt, YOLO txt -> COCO json.

The YOLO side is always a normal folder ``images/<split>`` + ``labels/<split>`` with a
``data.yaml``; images are symlinked (or copied, ``image_mode='copy'``) from the source so a
read-only data set can be converted without touching it. Conversions are faithful: boxes
are written as given (the loader's check reports and drops degenerate ones), and problems
met on the way are logged.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from repyolo.data.config import DataConfig, load_data_config, write_data_yaml
from repyolo.data.formats import format_yolo_rows, read_coco_json, read_voc_xml
from repyolo.data.io import IMG_FORMATS, decode_image
from repyolo.errors import DataError
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


def _place_image(src: Path, dst: Path, mode: str) -> None:
    """Symlink / copy ``src`` to ``dst`` (replacing what is there); ``mode='none'`` does nothing."""
    if mode == "none":
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        if dst.is_symlink() and os.path.realpath(dst) == os.path.realpath(src):
            return
        dst.unlink()
    if mode == "symlink":
        try:
            os.symlink(os.path.abspath(src), dst)
            return
        except OSError:  # no symlinks here (e.g. Windows without privileges): copy
            pass
    elif mode != "copy":
        raise DataError(f"unknown image_mode {mode!r} (use 'symlink', 'copy' or 'none')")
    shutil.copy2(src, dst)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _find_voc_root(root: Path) -> Path:
    if not root.is_dir():
        raise DataError(f"{root}: VOC folder not found" if not root.exists() else f"{root}: not a folder")
    if (root / "Annotations").is_dir():
        return root
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if (sub / "Annotations").is_dir():
            return sub
    raise DataError(f"{root}: not a Pascal VOC folder (no Annotations/ inside)")


def _voc_splits(root: Path, splits) -> dict[str, list[str]]:
    main = root / "ImageSets" / "Main"
    found = {}
    if main.is_dir():
        for f in sorted(main.glob("*.txt")):
            if "_" not in f.stem:  # per-class files look like 'aeroplane_train.txt'
                found[f.stem] = [ln.split()[0] for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if splits is None:
        chosen = [s for s in ("train", "val", "test") if s in found]
        if "train" not in found and "trainval" in found:
            chosen = ["trainval"] + [s for s in ("test",) if s in found]
        if not chosen:
            ids = sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
            if not ids:
                raise DataError(f"{root}: no xml files in Annotations/")
            return {"train": ids}
        return {s: found[s] for s in chosen}
    missing = [s for s in splits if s not in found]
    if missing:
        raise DataError(f"{main}: no list for split(s) {', '.join(missing)} (have {', '.join(found) or 'none'})")
    return {s: found[s] for s in splits}


def _voc_image(root: Path, ann, image_id: str) -> Path:
    folder = root / "JPEGImages"
    if ann.filename and (folder / ann.filename).is_file():
        return folder / ann.filename
    for ext in sorted(IMG_FORMATS):
        cand = folder / f"{image_id}.{ext}"
        if cand.is_file():
            return cand
    raise DataError(f"{ann.path}: image '{ann.filename or image_id}' not found in {folder}")


def voc_to_yolo(voc_root: str | os.PathLike, out_dir: str | os.PathLike, names: list[str] | None = None,
                splits: list[str] | None = None, image_mode: str = "symlink",
                include_difficult: bool = True) -> Path:
    """Convert a Pascal VOC folder (``JPEGImages/``, ``Annotations/``, ``ImageSets/Main/*.txt``).

    Args:
        voc_root: the VOC folder or a folder holding one (e.g. ``bccd/`` with ``BCCD/`` inside).
        out_dir: output: ``images/<split>`` (links), ``labels/<split>/*.txt``, ``data.yaml``.
        names: class order (default: sorted names found in the used xml files).
        splits: ImageSets lists to convert (default: train, val, test that exist; ``trainval``
            when there is no ``train``; everything as ``train`` without ImageSets).
        image_mode: ``symlink`` | ``copy`` | ``none``.
        include_difficult: keep objects flagged ``difficult``.
    Returns:
        path of the written ``data.yaml`` (val falls back to train when there is no val list).
    """
    root = _find_voc_root(Path(voc_root))
    out = Path(out_dir)
    split_ids = _voc_splits(root, splits)
    anns = {}
    for ids in split_ids.values():
        for i in ids:
            if i not in anns:
                anns[i] = read_voc_xml(root / "Annotations" / f"{i}.xml")
    if names is None:
        names = sorted({o[0] for a in anns.values() for o in a.objects if include_difficult or not o[5]})
    index = {n: k for k, n in enumerate(names)}
    unknown, degenerate = Counter(), []
    for split, ids in split_ids.items():
        n_boxes = 0
        for image_id in ids:
            ann = anns[image_id]
            img_path = _voc_image(root, ann, image_id)
            w, h = ann.width, ann.height
            if not (w and h):
                h, w = decode_image(img_path).shape[:2]
            rows = []
            for k, (name, x1, y1, x2, y2, difficult) in enumerate(ann.objects):
                if difficult and not include_difficult:
                    continue
                if name not in index:
                    unknown[name] += 1
                    continue
                if x2 <= x1 or y2 <= y1:
                    degenerate.append(f"{ann.path.name} object {k} ({name} {x1:g},{y1:g},{x2:g},{y2:g})")
                rows.append([index[name], x1, y1, x2, y2])
            n_boxes += len(rows)
            _place_image(img_path, out / "images" / split / img_path.name, image_mode)
            _write_text(out / "labels" / split / f"{img_path.stem}.txt", format_yolo_rows(np.array(rows), w, h))
        LOGGER.info("voc_to_yolo: %s: %d images, %d boxes", split, len(ids), n_boxes)
    if unknown:
        LOGGER.warning("voc_to_yolo: skipped objects of classes not in names: %s", dict(unknown))
    if degenerate:
        LOGGER.warning("voc_to_yolo: %d zero-area boxes written as given (the loader drops them): %s",
                       len(degenerate), "; ".join(degenerate[:10]))
    train_split = "train" if "train" in split_ids else next(iter(split_ids))
    ys = {"train": f"images/{train_split}", "val": "images/val" if "val" in split_ids else f"images/{train_split}"}
    if "test" in split_ids:
        ys["test"] = "images/test"
    return write_data_yaml(out / "data.yaml", out.resolve(), ys, names)


def coco_to_yolo(json_path: str | os.PathLike, out_dir: str | os.PathLike, images_dir: str | os.PathLike | None = None,
                 split: str | None = None, image_mode: str = "symlink") -> Path:
    """Convert a COCO detection json to YOLO txt (``iscrowd=1`` annotations are left out).

    Category ids become contiguous class indices in sorted id order. Every image gets a label
    file (empty when it has no boxes).

    Args:
        json_path: COCO annotation file; images_dir: folder its ``file_name``s are relative to
            (default: the json's folder or a guess next to it).
        split: output split name (default from the json name: ``instances_val2017`` -> ``val2017``).
    Returns:
        path of the written ``data.yaml`` (train and val both point at the split).
    """
    json_path = Path(json_path)
    coco = read_coco_json(json_path, images_dir)
    out = Path(out_dir)
    if split is None:
        stem = json_path.stem
        split = stem.split("_", 1)[1] if stem.startswith("instances_") else stem
    n_boxes = n_crowd = n_bad = 0
    for im in coco.images:
        rel = Path(im.file_name)
        src = Path(im.file)
        w, h = im.width, im.height
        if not (w and h):
            h, w = decode_image(src).shape[:2]
        n_boxes += len(im.rows)
        n_crowd += len(im.crowd)
        n_bad += len(im.bad)
        if image_mode != "none":
            if not src.is_file():
                raise DataError(f"{json_path}: image '{im.file_name}' not found at {src} (pass images_dir)")
            _place_image(src, out / "images" / split / rel, image_mode)
        _write_text((out / "labels" / split / rel).with_suffix(".txt"), format_yolo_rows(im.rows, w, h))
    LOGGER.info("coco_to_yolo: %s: %d images, %d boxes (%d crowd left out, %d unreadable annotations)",
                split, len(coco.images), n_boxes, n_crowd, n_bad)
    return write_data_yaml(out / "data.yaml", out.resolve(), {"train": f"images/{split}", "val": f"images/{split}"},
                           coco.names)


def yolo_to_coco(dataset_or_dir, out_json: str | os.PathLike | None = None, names: list[str] | None = None,
                 split: str = "val", **dataset_kwargs) -> dict:
    """COCO-format ground truth of a YOLO data set (for evaluation).

    Args:
        dataset_or_dir: a :class:`DetectionDataset`, a :class:`DataConfig`, a data YAML path
            (its ``split``), or an image folder / list file (with ``names``).
        out_json: also write the json there.
    Returns:
        the COCO dict (``images``, ``annotations`` with ``bbox`` xywh original pixels, ``categories``).
    """
    from repyolo.data.dataset import DetectionDataset

    ds = dataset_or_dir
    if not isinstance(ds, DetectionDataset):
        if isinstance(ds, DataConfig):
            ds = ds.dataset(split, **dataset_kwargs)
        else:
            p = Path(ds)
            if p.suffix.lower() in (".yaml", ".yml") or (p.is_dir() and (p / "data.yaml").is_file()):
                ds = load_data_config(p).dataset(split, **dataset_kwargs)
            else:
                ds = DetectionDataset(p, names=names, **dataset_kwargs)
    gt = ds.coco_gt()
    if out_json is not None:
        out_json = Path(out_json)
        out_json.parent.mkdir(parents=True, exist_ok=True)
        with open(out_json, "w", encoding="utf-8") as f:
            json.dump(gt, f)
        LOGGER.info("yolo_to_coco: wrote %d images, %d annotations to %s", len(gt["images"]),
                    len(gt["annotations"]), out_json)
    return gt
