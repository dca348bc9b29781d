"""Output folders: run folders claimed atomically, and writability checked before work starts."""
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
        path.mkdir(exist_ok=True)
        return path
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
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RepyoloError(f"{path}: cannot create the output folder (a file of that name exists)") from None
    except OSError as exc:
        raise RepyoloError(f"{path}: cannot create the output folder ({exc.strerror or exc})") from None
    if not path.is_dir():
        raise RepyoloError(f"{path}: output path is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise RepyoloError(f"{path}: output folder is not writable")
    return path
