"""Output folders: run folders claimed atomically, and writability checked before work starts.

Every command checks its outputs first (:func:`check_output_path` for a file or folder it will
write, :func:`check_output_dir` for a folder it will create), so a read-only mount, a missing
permission or a parent that is a regular file is one line naming the path, before anything
slow runs and before anything is created.
"""
from __future__ import annotations

import os
from pathlib import Path

from repyolo.errors import RepyoloError


def increment_path(path: str | Path, exist_ok: bool = False) -> Path:
    """``runs/predict/exp`` -> the first of ``exp``, ``exp2``, ``exp3``... that does not exist
    (only looks; use :func:`claim_run_dir` to also create it without a race)."""
    path = Path(path)
    if exist_ok or not path.exists():
        return path
    n = 2
    while (path.parent / f"{path.name}{n}").exists():
        n += 1
    return path.parent / f"{path.name}{n}"


def claim_run_dir(path: str | Path, exist_ok: bool = False) -> Path:
    """Create and return the run folder ``path`` (``exist_ok``) or the first free ``path``,
    ``path2``, ``path3`` ... Claiming is atomic (``mkdir`` fails if another process took the name
    first), so two runs started together never share a folder. Raises a one-line
    :class:`RepyoloError` when the parent cannot be created or written."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    if exist_ok:
        return ensure_writable_dir(path)
    n = 1
    while True:
        cand = path if n == 1 else path.parent / f"{path.name}{n}"
        try:
            cand.mkdir()
            return cand
        except FileExistsError:
            n += 1
        except OSError as exc:
            raise RepyoloError(f"{cand}: cannot create the output folder ({exc.strerror or exc})") from None


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) if needed and check that files can be written there.
    Raises a one-line :class:`RepyoloError` naming the folder (read-only mount, a parent that is
    a file, no permission) instead of an ``OSError`` traceback later in the run."""
    path = Path(path)
    check_output_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RepyoloError(f"{path}: cannot create the output folder ({exc.strerror or exc})") from None
    return path


def check_output_dir(path: str | Path) -> Path:
    """Check, without creating anything, that the folder ``path`` exists and is writable or can
    be created: a one-line :class:`RepyoloError` otherwise (a file where a folder is expected, a
    read-only or unwritable folder)."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise RepyoloError(f"{path}: cannot use it as the output folder: it is a file")
        if not os.access(path, os.W_OK | os.X_OK):
            raise RepyoloError(f"{path}: output folder is not writable (read-only or no permission)")
        return path
    _check_creatable(path)
    return path


def check_output_path(path: str | Path) -> Path:
    """Check, without creating anything, that ``path`` (a file or a folder an exporter writes)
    can be written: its folder must exist and be writable, or be creatable. An existing ``path``
    is overwritten later, so it must be writable too."""
    path = Path(path)
    if path.exists() and not os.access(path, os.W_OK):
        raise RepyoloError(f"{path}: exists and is not writable")
    check_output_dir(path.parent if str(path.parent) else Path("."))
    return path


def _check_creatable(path: Path) -> None:
    """The nearest existing ancestor of ``path`` must be a writable folder."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise RepyoloError(f"{path}: cannot create the output folder: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RepyoloError(f"{path}: cannot create the output folder: {parent} is not writable "
                           "(read-only or no permission)")


__all__ = ["check_output_dir", "check_output_path", "claim_run_dir", "ensure_writable_dir", "increment_path"]
