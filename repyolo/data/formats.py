"""Label file formats: YOLO txt, COCO json and Pascal VOC xml, read into one form.

Every reader turns its boxes into rows ``[class, x1, y1, x2, y2]`` in image pixels
(float64) plus a name for each row (``line 3``, ``annotation 17``, ``object 2``) so that
:func:`validate_boxes` can check them all the same way and say which row was wrong.
"""
from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from repyolo.errors import DataError


@dataclass
class Issue:
    """One problem found in a data set file.

    ``action`` says what was done: ``skipped`` (the image is not used), ``dropped`` (one
    box row removed), ``clipped`` (a box was clipped to the image), ``background`` (no
    label file: used as an image without objects), ``ignored`` (a label file without an image)
    or ``warning`` (used as is).
    """

    file: str
    reason: str
    action: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.reason} ({self.action})"

    def to_dict(self) -> dict:
        return {"file": self.file, "reason": self.reason, "action": self.action, "line": self.line}


def img2label_path(im_file: str | os.PathLike) -> str:
    """YOLO label file of an image: the last ``/images/`` folder becomes ``/labels/``, suffix ``.txt``.

    An image outside any ``images`` folder has its label beside it.
    """
    s = str(im_file)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in s:
        head, tail = s.rsplit(sa, 1)
        s = head + sb + tail
    return os.path.splitext(s)[0] + ".txt"


class LabelFileError(Exception):
    """A label file that cannot be read at all (binary garbage, not UTF-8)."""


def parse_yolo_text(data: bytes, width: int, height: int) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """Parse a YOLO label file ``class cx cy w h`` (normalised) into pixel rows.

    Args:
        data: file bytes; width, height: image size in pixels.
    Returns:
        rows ``(n, 5)`` float64 ``[class, x1, y1, x2, y2]`` pixels, their 1-based line numbers,
        and ``(line, reason)`` for lines that could not be parsed (wrong column count,
        non-numeric or non-finite values).
    Raises:
        LabelFileError for content that is not text.
    """
    if b"\x00" in data:
        raise LabelFileError("label file is binary, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LabelFileError("label file is not UTF-8 text") from None
    values, lines, bad = [], [], []
    for no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            bad.append((no, f"expected 5 columns (class cx cy w h), got {len(parts)}"))
            continue
        try:
            row = [float(p) for p in parts]
        except ValueError:
            word = next(p for p in parts if not _is_float(p))
            bad.append((no, f"non-numeric value {word[:20]!r}"))
            continue
        if not all(math.isfinite(v) for v in row):
            bad.append((no, "non-finite value (nan/inf)"))
            continue
        values.append(row)
        lines.append(no)
    arr = np.asarray(values, dtype=np.float64).reshape(-1, 5)
    c, cx, cy, w, h = arr.T
    rows = np.stack([c, (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
    return rows.reshape(-1, 5), lines, bad


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def validate_boxes(rows: np.ndarray, width: int, height: int, nc: int | None, file: str,
                   row_names: list, min_size: float = 1.0) -> tuple[np.ndarray, np.ndarray, list[Issue]]:
    """Check and repair pixel box rows of one image.

    Rules, in order: class must be an integer in ``[0, nc)``; a box with zero or negative
    width/height is dropped; a box reaching outside the image is clipped to it and dropped
    when less than ``min_size`` pixels wide or high remain; exact duplicate rows are dropped.

    Args:
        rows: ``(n, 5)`` ``[class, x1, y1, x2, y2]`` pixels.
        row_names: ``n`` line numbers (int) or labels (str) used in the issues.
    Returns:
        kept rows ``(m, 5)`` float32, the indices of the kept rows into ``rows``, and the issues.
    """
    issues: list[Issue] = []

    def report(i: int, reason: str, action: str) -> None:
        name = row_names[i]
        if isinstance(name, int):
            issues.append(Issue(file, reason, action, line=name))
        else:
            issues.append(Issue(file, f"{name}: {reason}", action))

    n = len(rows)
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return np.zeros((0, 5), np.float32), np.zeros(0, np.int64), issues
    cls = rows[:, 0]
    bad_cls = (cls != np.floor(cls)) | (cls < 0)
    if nc is not None:
        bad_cls |= cls >= nc
    for i in np.flatnonzero(bad_cls):
        rng = f" (nc={nc})" if nc is not None else ""
        report(i, f"class id {cls[i]:g} out of range{rng}", "dropped")
    keep &= ~bad_cls

    w, h = rows[:, 3] - rows[:, 1], rows[:, 4] - rows[:, 2]
    zero = keep & ((w <= 0) | (h <= 0))
    for i in np.flatnonzero(zero):
        report(i, f"zero-area box (w={w[i]:.4g} px, h={h[i]:.4g} px)", "dropped")
    keep &= ~zero

    tol_x, tol_y = 1e-6 * width + 1e-9, 1e-6 * height + 1e-9
    xyxy = rows[:, 1:5].copy()
    outside = ((xyxy[:, 0] < -tol_x) | (xyxy[:, 2] > width + tol_x) |
               (xyxy[:, 1] < -tol_y) | (xyxy[:, 3] > height + tol_y))
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
    cw, ch = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
    tiny = keep & ((cw < min_size - 1e-6) | (ch < min_size - 1e-6))
    for i in np.flatnonzero(tiny):
        why = "box outside the image" if outside[i] else "box"
        report(i, f"{why} smaller than {min_size:g} px after clipping ({cw[i]:.3g}x{ch[i]:.3g} px)", "dropped")
    keep &= ~tiny
    for i in np.flatnonzero(keep & outside):
        report(i, "box reaches outside the image", "clipped")

    seen: dict[tuple, int] = {}
    for i in np.flatnonzero(keep):
        key = tuple(rows[i].tolist())
        if key in seen:
            first = row_names[seen[key]]
            ref = f"line {first}" if isinstance(first, int) else str(first)
            report(i, f"duplicate row (same as {ref})", "dropped")
            keep[i] = False
        else:
            seen[key] = i
    idx = np.flatnonzero(keep)
    out = np.concatenate([cls[idx, None], xyxy[idx]], 1).astype(np.float32)
    return out, idx, issues


@dataclass
class CocoImage:
    """One image entry of a COCO json with its annotations in pixel rows."""

    file: str
    id: int
    width: int
    height: int
    rows: np.ndarray  # (n, 5) float64 [class, x1, y1, x2, y2] pixels, crowd excluded
    areas: np.ndarray  # (n,) COCO 'area' of those rows
    names: list  # row names for reports ("annotation <id>")
    crowd: np.ndarray  # (k, 5) float64 iscrowd=1 rows (kept for evaluation only)
    bad: list = field(default_factory=list)  # (name, reason) rows that could not be read
    file_name: str = ""  # as written in the json


@dataclass
class CocoFile:
    """A parsed COCO annotation json: categories in sorted id order and its images."""

    path: Path
    categories: list[dict]
    images: list[CocoImage]

    @property
    def category_ids(self) -> list[int]:
        return [int(c["id"]) for c in self.categories]

    @property
    def names(self) -> list[str]:
        return [str(c.get("name", c["id"])) for c in self.categories]


def coco_image_candidates(json_path: Path) -> list[Path]:
    """Folders a COCO json's ``file_name``s may be relative to, best guess first."""
    d = json_path.parent
    stem = json_path.stem
    split = stem.split("_", 1)[1] if stem.startswith("instances_") else stem
    cands = [d, d.parent / split, d.parent / "images" / split, d.parent, d.parent / "images"]
    return list(dict.fromkeys(cands))


def read_coco_json(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> CocoFile:
    """Read a COCO detection json; resolve ``file_name``s against ``image_root`` (or guess).

    Category ids map to contiguous class indices in sorted id order. ``iscrowd=1``
    annotations are kept apart (``CocoImage.crowd``). Raises DataError naming the file
    when it is not a COCO annotation file.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise DataError(f"{path}: cannot read COCO json ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a COCO annotation file (no 'images' list)")
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise DataError(f"{path}: not a COCO annotation file (no 'categories' list)")
    try:
        cats = sorted(cats, key=lambda c: int(c["id"]))
        cat_index = {int(c["id"]): i for i, c in enumerate(cats)}
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: every category needs an integer 'id'") from None

    if image_root is not None:
        root = Path(image_root)
    else:
        root = None
        first = next((im.get("file_name") for im in data["images"] if im.get("file_name")), None)
        for cand in coco_image_candidates(path):
            if first is None or (cand / first).exists():
                root = cand
                break
        root = root or path.parent

    per_image: dict[int, list] = {}
    for ann in data.get("annotations") or []:
        try:
            per_image.setdefault(int(ann["image_id"]), []).append(ann)
        except (KeyError, TypeError, ValueError):
            continue  # an annotation without an image cannot be placed; counted below
    images = []
    for im in data["images"]:
        try:
            im_id, fname = int(im["id"]), str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: image entry without integer 'id' and 'file_name': {str(im)[:80]}") from None
        rows, areas, names, crowd, bad = [], [], [], [], []
        for ann in per_image.get(im_id, []):
            name = f"annotation {ann.get('id', '?')}"
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
                cid = int(ann["category_id"])
            except (KeyError, TypeError, ValueError):
                bad.append((name, "missing or non-numeric 'bbox'/'category_id'"))
                continue
            if not all(math.isfinite(v) for v in (x, y, w, h)):
                bad.append((name, "non-finite bbox value"))
                continue
            if cid not in cat_index:
                bad.append((name, f"category_id {cid} not in categories"))
                continue
            row = [cat_index[cid], x, y, x + w, y + h]
            if ann.get("iscrowd", 0):
                crowd.append(row)
                continue
            rows.append(row)
            areas.append(float(ann.get("area", w * h)))
            names.append(name)
        images.append(CocoImage(
            file=str(root / fname), id=im_id, width=int(im.get("width") or 0), height=int(im.get("height") or 0),
            rows=np.asarray(rows, np.float64).reshape(-1, 5), areas=np.asarray(areas, np.float64),
            names=names, crowd=np.asarray(crowd, np.float64).reshape(-1, 5), bad=bad, file_name=fname))
    return CocoFile(path=path, categories=cats, images=images)


@dataclass
class VocAnnotation:
    """A Pascal VOC xml: image file name, size and objects ``(name, x1, y1, x2, y2, difficult)``."""

    path: Path
    filename: str
    width: int
    height: int
    objects: list[tuple[str, float, float, float, float, bool]]


def read_voc_xml(path: str | os.PathLike) -> VocAnnotation:
    """Parse a Pascal VOC annotation; raises DataError naming the file when malformed."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise DataError(f"{path}: cannot parse VOC xml ({exc})") from None

    def num(node, tag, default=None):
        el = node.find(tag)
        if el is None or el.text is None or not el.text.strip():
            if default is not None:
                return default
            raise DataError(f"{path}: missing <{tag}>")
        try:
            return float(el.text.strip())
        except ValueError:
            raise DataError(f"{path}: <{tag}> is not a number: {el.text.strip()!r}") from None

    size = root.find("size")
    width = int(num(size, "width", 0)) if size is not None else 0
    height = int(num(size, "height", 0)) if size is not None else 0
    filename = (root.findtext("filename") or "").strip()
    objects = []
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name or box is None:
            raise DataError(f"{path}: object {k} has no <name> or <bndbox>")
        difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true", "True")
        objects.append((name, num(box, "xmin"), num(box, "ymin"), num(box, "xmax"), num(box, "ymax"), difficult))
    return VocAnnotation(path=path, filename=filename, width=width, height=height, objects=objects)


def _num(v: float, decimals: int) -> str:
    s = f"{v:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def format_yolo_rows(rows: np.ndarray, width: int, height: int, decimals: int = 8) -> str:
    """``(n, 5)`` ``[class, x1, y1, x2, y2]`` pixels -> YOLO txt text (normalised, ``decimals`` digits,
    trailing zeros dropped; 8 digits keep boxes stored as float32 pixels exact to ~1e-7)."""
    lines = []
    for c, x1, y1, x2, y2 in np.asarray(rows, np.float64).reshape(-1, 5):
        vals = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
        lines.append(" ".join([str(int(c))] + [_num(v, decimals) for v in vals]))
    return "".join(line + "\n" for line in lines)
