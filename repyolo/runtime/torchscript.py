"""TorchScript backend for files written by ``repyolo export --format torchscript``."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from repyolo.errors import CheckpointError, one_line
from repyolo.runtime.base import Backend
from repyolo.runtime.metadata import TORCHSCRIPT_EXTRA_FILE as EXTRA_FILE
from repyolo.runtime.metadata import from_strings, to_strings
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


class TorchScriptBackend(Backend):
    """A traced ``.torchscript`` file. Takes any batch and any input size that is a multiple of the stride.

    Args:
        path: the file; ``device``: torch device; ``half``: fp16 (CUDA only);
        ``threads``: ``torch.set_num_threads`` (process-wide).
    """

    kind = "torchscript"
    ignored_options = frozenset({"fuse"})

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", threads: int | None = None,
                 half: bool = False, **kwargs):
        self._check_options(kwargs)
        self.path = Path(path)
        self.source = str(self.path)
        self.device = torch.device(device)
        extra = {EXTRA_FILE: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model = torch.jit.load(str(self.path), map_location=self.device, _extra_files=extra).eval()
        except Exception as exc:  # torch.jit raises RuntimeError / ValueError with long texts
            raise CheckpointError(f"{self.path}: not a loadable TorchScript file ({one_line(exc)})") from None
        try:
            meta = json.loads(extra[EXTRA_FILE] or "{}")
        except ValueError:
            meta = {}
        self.metadata = from_strings(to_strings(meta) if isinstance(meta, dict) else {}, self.path)
        self.names = self.metadata["names"]
        self.stride = self.metadata["stride"]
        exported_half = bool(self.metadata.get("half"))
        self.half = (half or exported_half) and self.device.type == "cuda"
        self.model = self.model.half() if self.half else self.model.float()
        if threads:
            torch.set_num_threads(int(threads))

    @torch.inference_mode()
    def __call__(self, x) -> torch.Tensor:
        self.check_input(x)
        x = torch.as_tensor(x).to(self.device)
        return self.model(x.half() if self.half else x.float()).float()
