"""Where the API's commands write: run folders claimed when the first output is ready (and
removed again, if still empty, when the command fails), and JSON result files."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from repyolo.utils.paths import check_output_path, claim_run_dir


@contextmanager
def run_folder(project: str | Path, name: str, exist_ok: bool = False) -> Iterator[Path]:
    """Claim ``project/name`` (or ``name2``, ``name3`` ...; the folder itself with ``exist_ok``)
    for the block; a folder this call created is removed again if the block fails before writing
    anything into it, so a failed command leaves no empty run folder behind."""
    target = Path(project) / name
    existed = exist_ok and target.exists()
    folder = claim_run_dir(target, exist_ok=exist_ok)
    try:
        yield folder
    except BaseException:
        if not existed and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON (NaN -> null), creating the folder."""
    from repyolo.engine.metrics import nan_to_none

    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nan_to_none(obj), indent=2), encoding="utf-8")
    return path
