"""Logging set-up shared by the CLI and the library (library code only calls ``get_logger``)."""
from __future__ import annotations

import logging
import os
import sys

_ROOT = "repyolo"


def get_logger(name: str = _ROOT) -> logging.Logger:
    """Return a child of the ``repyolo`` logger (``name`` may be a module ``__name__``)."""
    if not name.startswith(_ROOT):
        name = f"{_ROOT}.{name}"
    return logging.getLogger(name)


def setup_logging(verbose: bool = False, rank: int | None = None) -> None:
    """Send ``repyolo`` log records to stderr; non-zero DDP ranks only log warnings."""
    if rank is None:
        rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if verbose else logging.INFO
    if rank != 0:
        level = logging.WARNING
    logger = logging.getLogger(_ROOT)
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.propagate = False
