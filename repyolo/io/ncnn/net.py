"""Run an NCNN pair with the ``ncnn`` Python runtime (an optional dependency, imported lazily)."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from repyolo.errors import RepyoloError
from repyolo.io.ncnn.param import NcnnFormatError, read_param
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

# =============================================================================================
# runtime (the ``ncnn`` Python package)


def _import_ncnn():
    try:
        import ncnn  # optional dependency: only the runtime needs it
    except ImportError:
        raise RepyoloError("running NCNN models needs the 'ncnn' package: pip install repyolo[ncnn] "
                           "(or pip install ncnn)") from None
    return ncnn


@contextlib.contextmanager
def _quiet_stderr(enabled: bool):
    """Silence the C library's stderr (NCNN logs warnings with fprintf) inside the block."""
    if not enabled:
        yield
        return
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(fd, 2)
    finally:
        os.close(fd)


class NcnnNet:
    """An NCNN network loaded from a ``.param`` / ``.bin`` pair, run on numpy arrays.

    Args:
        param_path, bin_path: the pair (``bin_path`` defaults to the param path with ``.bin``).
        num_threads: CPU threads of the runtime (1 by default: steady on a shared machine; ``None``:
            ncnn's own default, the big cores).
        fp32: run in float32 (turn off NCNN's fp16 / bf16 storage and arithmetic, which are on
            by default on CPUs that have them); weights stored as fp16 are widened on load.
        quiet: hide NCNN's stderr messages (e.g. its notes about 1-D convolution inputs).
    """

    def __init__(self, param_path: str | os.PathLike, bin_path: str | os.PathLike | None = None,
                 num_threads: int | None = 1, fp32: bool = True, quiet: bool = True):
        ncnn = _import_ncnn()
        self.param_path = Path(param_path)
        self.bin_path = Path(bin_path) if bin_path is not None else self.param_path.with_suffix(".bin")
        self.graph = read_param(self.param_path)
        self.quiet = quiet
        self.net = ncnn.Net()
        opt = self.net.opt
        if num_threads is not None:
            opt.num_threads = int(num_threads)
        if fp32:
            opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = False
            opt.use_bf16_storage = False
        with _quiet_stderr(quiet):
            if self.net.load_param(str(self.param_path)) != 0:
                raise NcnnFormatError(f"{self.param_path}: the ncnn runtime refused the param file")
            if self.net.load_model(str(self.bin_path)) != 0:
                raise NcnnFormatError(f"{self.bin_path}: the ncnn runtime refused the bin file")
        self._ncnn = ncnn

    @property
    def input_names(self) -> list[str]:
        return self.graph.input_blobs

    @property
    def output_names(self) -> list[str]:
        return self.graph.output_blobs

    def _feed(self, ex, inputs: np.ndarray | Mapping[str, np.ndarray]) -> None:
        if not isinstance(inputs, Mapping):
            if len(self.input_names) != 1:
                raise RepyoloError(f"{self.param_path}: {len(self.input_names)} inputs, pass a dict of arrays")
            inputs = {self.input_names[0]: inputs}
        for name, array in inputs.items():
            a = np.ascontiguousarray(array, dtype=np.float32)
            if a.ndim == 4:
                if a.shape[0] != 1:
                    raise RepyoloError(f"ncnn runs one image at a time, got a batch of {a.shape[0]}")
                a = a[0]
            # clone: a Mat over numpy memory has no refcount, and an in-place first layer
            # (ReLU, BatchNorm ...) then crashes the runtime (segfault, ncnn 1.0.20261020)
            ex.input(name, self._ncnn.Mat(a).clone())

    def __call__(self, inputs: np.ndarray | Mapping[str, np.ndarray],
                 outputs: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Run once.

        Args:
            inputs: one ``(C, H, W)`` or ``(1, C, H, W)`` float array for a single-input net, or
                ``{blob name: array}``.
            outputs: blob names to extract (default: :attr:`output_names`).
        Returns:
            ``{blob name: float32 array}`` in NCNN's layout (``(C, H, W)`` for feature maps).
        """
        names = list(outputs) if outputs is not None else self.output_names
        ex = self.net.create_extractor()
        self._feed(ex, inputs)
        result = {}
        with _quiet_stderr(self.quiet):
            for name in names:
                ret, mat = ex.extract(name)
                if ret != 0:
                    raise RepyoloError(f"{self.param_path}: ncnn could not compute blob {name!r} (error {ret})")
                result[name] = np.array(mat, dtype=np.float32, copy=True)
        return result


def run_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike | None,
             inputs: np.ndarray | Mapping[str, np.ndarray], outputs: Iterable[str] | None = None,
             num_threads: int = 1, fp32: bool = True) -> dict[str, np.ndarray]:
    """Load a pair and run it once (see :class:`NcnnNet`); returns ``{blob: array}``."""
    return NcnnNet(param_path, bin_path, num_threads=num_threads, fp32=fp32)(inputs, outputs)


__all__ = [
    "NcnnNet", "run_ncnn",
]
