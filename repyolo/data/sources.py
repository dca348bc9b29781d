"""Turn data set sources (image folders, list files, COCO json files) into a list of samples.

A *sample* is one image file plus where its boxes come from: a YOLO label file (found by
the ``images -> labels`` path swap) or the annotations of a COCO json entry.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from repyolo.data.formats import CocoFile, CocoImage, Issue, img2label_path, read_coco_json
from repyolo.data.io import IMG_FORMATS, UNSUPPORTED_IMG_FORMATS
from repyolo.errors import DataError


@dataclass
class Sample:
    """One image: ``im_file``, and either ``label_file`` (YOLO txt, may not exist) or ``coco``."""

    im_file: str
    label_file: str | None = None
    coco: CocoImage | None = None


@dataclass
class SampleList:
    """Samples of all sources plus what was found while listing them."""

    samples: list[Sample] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)  # listed files that are not usable images
    coco_files: list[CocoFile] = field(default_factory=list)
    stat_files: list[str] = field(default_factory=list)  # list/json files whose change invalidates a cache


def walk_files(folder: str | os.PathLike) -> list[str]:
    """Every file below ``folder`` (recursive, links followed), in sorted order."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        files.extend(os.path.join(dirpath, name) for name in sorted(filenames))
    return files


def read_list_file(path: Path, root: Path | None = None) -> list[tuple[int, str, Path]]:
    """The entries of a list file (one path a line; blank lines and ``#`` comments skipped) as
    ``(line number, entry text, resolved path)``: relative entries resolve against the list's
    folder, else against ``root``, else against the working folder, whichever has the file first
    (the list's folder when none has it). Raises DataError when the list is unreadable."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read list file ({exc})") from None
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        p = Path(os.path.expanduser(entry))
        if not p.is_absolute():
            bases = [path.parent] + ([root] if root is not None else []) + [Path.cwd()]
            p = next((b / p for b in bases if (b / p).exists()), path.parent / p)
        out.append((no, entry, Path(os.path.normpath(p))))
    return out


def _listdir_images(folder: Path, issues: list[Issue]) -> list[str]:
    files = []
    for f in walk_files(folder):
        ext = os.path.splitext(f)[1][1:].lower()
        if ext in IMG_FORMATS:
            files.append(f)
        elif ext in UNSUPPORTED_IMG_FORMATS:
            issues.append(Issue(f, f"unsupported image format '.{ext}'", "skipped"))
    return files


def orphan_label_files(folder: Path) -> list[Issue]:
    """Label files in the ``labels/`` folder parallel to the image folder ``folder`` that belong
    to no file there (an image deleted or renamed, a label typo): reported, never used. Nothing
    is checked when labels live beside the images (other ``.txt`` files may be anything)."""
    label_dir = Path(os.path.dirname(img2label_path(folder / "x.jpg")))
    if label_dir == folder or not label_dir.is_dir():
        return []
    expected = {img2label_path(f) for f in walk_files(folder)}
    return [Issue(f, "label file without an image", "ignored") for f in walk_files(label_dir)
            if f.endswith(".txt") and f not in expected]


def _read_list_file(path: Path, root: Path | None, issues: list[Issue]) -> list[str]:
    files = []
    for no, entry, p in read_list_file(path, root):
        ext = p.suffix[1:].lower()
        if ext not in IMG_FORMATS:
            why = f"unsupported image format '.{ext}'" if ext else "no image suffix"
            issues.append(Issue(str(path), f"{why}: {entry}", "skipped", line=no))
            continue
        files.append(str(p))
    return files


def collect_samples(sources, image_root=None, root=None) -> SampleList:
    """List the samples of ``sources``.

    Args:
        sources: a path or a list of paths; each an image folder (searched recursively), a
            list file (one image path per line, relative to the list's folder or ``root``),
            a COCO json (suffix ``.json``) or a single image.
        image_root: folder COCO ``file_name``s resolve against (a path or ``{json: folder}``).
        root: data set root (the YAML ``path``), second base for list entries.
    Raises:
        DataError naming the source when it does not exist.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    out = SampleList()
    root = Path(root) if root is not None else None
    for src in sources:
        tagged_root = getattr(src, "images", None)  # a config SourcePath of a COCO json
        src = Path(src)
        if not src.exists():
            raise DataError(f"{src}: data source not found")
        if src.is_dir():
            for f in _listdir_images(src, out.issues):
                out.samples.append(Sample(f, label_file=img2label_path(f)))
            out.issues.extend(orphan_label_files(src))
        elif src.suffix.lower() == ".json":
            ir = image_root.get(src) if isinstance(image_root, dict) else image_root
            ir = ir if ir is not None else tagged_root
            coco = read_coco_json(src, ir)
            out.coco_files.append(coco)
            out.stat_files.append(str(src))
            out.samples.extend(Sample(im.file, coco=im) for im in coco.images)
        elif src.suffix[1:].lower() in IMG_FORMATS:
            out.samples.append(Sample(str(src), label_file=img2label_path(src)))
        else:
            out.stat_files.append(str(src))
            for f in _read_list_file(src, root, out.issues):
                out.samples.append(Sample(f, label_file=img2label_path(f)))
    return out
