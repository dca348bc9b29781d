"""ONNX Runtime backend for files written by ``repyolo export --format onnx``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from repyolo.errors import CheckpointError, RepyoloError, one_line
from repyolo.runtime.base import FileBackend
from repyolo.runtime.metadata import END2END_OUTPUTS, from_strings
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


def _providers(device: str, ort) -> list[str]:
    available = ort.get_available_providers()
    if device.startswith("cuda") or device.isdigit():
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        LOGGER.warning("onnxruntime has no CUDA provider here (%s): running on CPU", ", ".join(available))
    return ["CPUExecutionProvider"]


def _static(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxBackend(FileBackend):
    """An exported ``.onnx`` file run by onnxruntime.

    Args:
        path: the ``.onnx`` file (must carry repyolo metadata).
        device: ``'cpu'``, or ``'cuda'`` / ``'0'`` for the CUDA provider when onnxruntime has it.
        threads: intra-op threads (``None`` = onnxruntime's default, all cores); idle threads sleep
            (no spinning).
    ``__call__(x (B, 3, H, W))`` -> ``(B, A, 4 + nc)`` float32 torch tensor; ``detect`` for ``--nms`` files.
    """

    kind = "onnx"

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", threads: int | None = None,
                 **kwargs):
        self._check_options(kwargs)
        try:
            import onnxruntime as ort
        except ImportError:
            raise RepyoloError("running .onnx files needs onnxruntime (pip install onnxruntime)") from None
        self.path = Path(path)
        self.source = str(self.path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: ONNX file not found")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        # idle pool threads sleep instead of spinning: spinning burns the core that image decoding,
        # drawing and other processes need (predict on 128 JPEGs: 11.2 -> 8.4 s quiet, 17 -> 14 s
        # beside one CPU-bound process; BENCHMARKS.md, issue 17)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=_providers(str(device), ort))
        except Exception as exc:  # onnxruntime raises its own (pybind) exception types
            raise CheckpointError(f"{self.path}: not a loadable ONNX model ({one_line(exc)})") from None
        self.metadata = from_strings(self.session.get_modelmeta().custom_metadata_map, self.path)
        self.names = self.metadata["names"]
        self.stride = self.metadata["stride"]
        inp = self.session.get_inputs()
        if len(inp) != 1 or len(inp[0].shape) != 4:
            raise CheckpointError(f"{self.path}: expected one (B, 3, H, W) input, found {[i.shape for i in inp]}")
        self.input_name = inp[0].name
        shape = inp[0].shape
        self.batch = _static(shape[0])
        h, w = _static(shape[2]), _static(shape[3])
        self.img_size = (h, w) if h and w else None
        self.dtype = self.input_dtype = np.float16 if inp[0].type == "tensor(float16)" else np.float32
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.end2end = self.metadata.get("output_layout") == "end2end"
        if self.end2end and self.output_names != list(END2END_OUTPUTS):
            raise CheckpointError(f"{self.path}: end-to-end metadata but outputs {self.output_names}")
        LOGGER.debug("%s: onnxruntime %s, input %s %s", self.path, self.session.get_providers(), shape, self.dtype)

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: x})
