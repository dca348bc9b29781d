"""OpenVINO backend for IR folders written by ``repyolo export --format openvino``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from repyolo.errors import CheckpointError, RepyoloError, one_line
from repyolo.runtime.base import FileBackend, resolve_pair
from repyolo.runtime.metadata import END2END_OUTPUTS, from_strings, to_strings
from repyolo.runtime.metadata import OPENVINO_METADATA_FILE as METADATA_FILE
from repyolo.runtime.metadata import OPENVINO_RT_SECTION as RT_SECTION
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)
PRECISIONS = ("f32", "bf16", "f16")


def resolve_xml(path: str | Path) -> Path:
    """An IR folder (holding exactly one ``.xml``) or an ``.xml`` file -> the ``.xml`` path."""
    return resolve_pair(path, ".xml", "OpenVINO")


def _read_metadata(ov_model, xml: Path) -> dict:
    """Metadata from the IR's ``rt_info`` (``repyolo`` section), else from ``metadata.yaml`` beside it."""
    props = {}
    if ov_model.has_rt_info([RT_SECTION]):
        props = {k: v.value for k, v in ov_model.get_rt_info()[RT_SECTION].items()}
    if not props and (xml.parent / METADATA_FILE).is_file():
        try:
            props = to_strings(yaml.safe_load((xml.parent / METADATA_FILE).read_text()) or {})
        except (yaml.YAMLError, AttributeError) as exc:
            raise CheckpointError(f"{xml.parent / METADATA_FILE}: unreadable metadata ({exc})") from None
    return from_strings(props, xml)


class OpenVinoBackend(FileBackend):
    """An OpenVINO IR (folder or ``.xml``) compiled for the CPU plugin.

    Args:
        path_or_dir: ``NAME_openvino_model/`` or its ``.xml``.
        device: ``'cpu'`` (OpenVINO ``CPU``) or an OpenVINO device name (``'GPU'``, ``'AUTO'``).
        threads: ``INFERENCE_NUM_THREADS`` (``None`` = all cores).
        precision: ``INFERENCE_PRECISION_HINT``: ``'f32'`` (default: results match PyTorch), or
            ``'bf16'`` / ``'f16'`` (faster where the CPU supports it; the plugin's own default is bf16
            on CPUs with AVX512-BF16/AMX, which changes scores in the 3rd digit).
    """

    kind = "openvino"

    def __init__(self, path_or_dir: str | Path, device: str | torch.device = "cpu", threads: int | None = None,
                 precision: str = "f32", **kwargs):
        self._check_options(kwargs)
        if precision not in PRECISIONS:
            raise RepyoloError(f"OpenVINO precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        try:
            import openvino as ov
        except ImportError:
            raise RepyoloError("running OpenVINO models needs the openvino package (pip install openvino)") from None
        self.path = resolve_xml(path_or_dir)
        self.source = str(self.path)
        core = ov.Core()
        try:
            ov_model = core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError with multi-line text
            raise CheckpointError(f"{self.path}: not a loadable OpenVINO IR ({one_line(exc)})") from None
        self.metadata = _read_metadata(ov_model, self.path)
        self.names = self.metadata["names"]
        self.stride = self.metadata["stride"]
        if len(ov_model.inputs) != 1 or ov_model.inputs[0].partial_shape.rank.get_length() != 4:
            raise CheckpointError(f"{self.path}: expected one (B, 3, H, W) input")
        dims = ov_model.inputs[0].partial_shape
        static = [d.get_length() if d.is_static else None for d in dims]
        self.batch = static[0]
        self.img_size = (static[2], static[3]) if static[2] and static[3] else None
        self.end2end = self.metadata.get("output_layout") == "end2end"
        device = str(device)
        ov_device = "CPU" if device.lower() == "cpu" else device.upper()
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if ov_device == "CPU":
            config["INFERENCE_PRECISION_HINT"] = precision
        try:
            self.compiled = core.compile_model(ov_model, ov_device, config)
        except Exception as exc:
            raise RepyoloError(f"{self.path}: OpenVINO could not compile the model for {ov_device} "
                               f"({one_line(exc)})") from None
        self.request = self.compiled.create_infer_request()
        self.outputs = list(self.compiled.outputs)
        if self.end2end:  # outputs by name, in the end-to-end order
            by_name = {name: o for o in self.outputs for name in o.get_names()}  # a tensor may have several names
            try:
                self.outputs = [by_name[n] for n in END2END_OUTPUTS]
            except KeyError:
                raise CheckpointError(f"{self.path}: end-to-end metadata but outputs {sorted(by_name)}") from None
        LOGGER.debug("%s: OpenVINO %s, input %s, precision %s", self.path, ov_device, dims, precision)

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({0: x})
        return [np.array(result[o]) for o in self.outputs]
