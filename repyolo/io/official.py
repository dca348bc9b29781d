"""Import official YOLOv6 checkpoints (``yolov6n.pt`` ... from the official releases).

An official checkpoint is a ``torch.save``\\ d dict ``{"model": <pickled nn.Module>, "ema": ...,
"updates": ..., "optimizer": ..., "epoch": int}``. The module objects are pickled by class
path (``yolov6.models.yolo.Model`` ...), so a plain ``torch.load`` would import - and run -
the official package. This module never does: it reads the torch file itself (the zip
format, and the legacy non-zip format) with a restricted unpickler that

- maps every ``yolov6.*`` and ``torch.nn.modules.*`` class to an inert :class:`StandIn`
  that only keeps its pickled attribute dict (``_modules``, ``_parameters``, ``_buffers``);
- allows a fixed table of harmless globals (``OrderedDict``, ``set``, ``torch.Size``,
  ``torch.device``, dtypes, storage types) and replaces torch's tensor-rebuild functions by
  local equivalents that only slice the file's storage bytes;
- refuses every other global (``os.system``, ``builtins.eval``, ...) with a
  :class:`~repyolo.errors.CheckpointError` naming it, before anything is called.

The state dict is then recovered by walking the stand-in module tree (``ema`` when set,
else ``model``), renamed to repyolo's module names (the official Conv-BN-act wrappers
hold a ``ConvModule`` in ``.block``: ``.block.conv.`` -> ``.conv.``, ``.block.bn.`` ->
``.bn.``), and the architecture is read off the keys and shapes (:func:`infer_config`).
Every official tensor must land in the repyolo model and none may be left over.

Public API: :func:`looks_official`, :func:`read_official_state_dict`, :func:`infer_config`,
:func:`convert_official`.
"""
from __future__ import annotations

import _compat_pickle
import io
import pickle
import re
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch

from repyolo.errors import CheckpointError, ConfigError
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

COCO_NAMES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
]

# class-path prefixes whose classes become inert stand-ins (the module tree of a checkpoint)
STANDIN_PREFIXES = ("yolov6.", "torch.nn.modules.")
# head branches used in training only (anchor-aided training, DLD distillation)
AUX_PREFIXES = ("detect.cls_preds_ab.", "detect.reg_preds_ab.", "detect.reg_preds_dist.")
# repyolo keys an old official head may lack; they hold constants (the DFL bin values)
_CONSTANT_KEYS = ("detect.proj", "detect.proj_conv.weight")
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_HEADER = pickle.dumps(_LEGACY_MAGIC, protocol=2)
_WRAPPED_CONV = re.compile(r"(^|\.)block\.(conv|bn)\.")


# --------------------------------------------------------------------------- stand-ins


class StandIn:
    """Inert stand-in for a pickled class: keeps the pickled attribute dict, runs nothing.

    ``qualname`` (class attribute) is the official class path, e.g. ``yolov6.layers.common.RepVGGBlock``.
    """

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE / NEWOBJ arguments are ignored
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update({k: v for k, v in state.items() if isinstance(k, str)})

    def __repr__(self) -> str:
        return f"<stand-in {self.qualname}>"


_STANDIN_CLASSES: dict[str, type] = {}


def _standin_class(module: str, name: str) -> type:
    qualname = f"{module}.{name}"
    cls = _STANDIN_CLASSES.get(qualname)
    if cls is None:
        cls = type(name, (StandIn,), {"qualname": qualname, "__module__": __name__})
        _STANDIN_CLASSES[qualname] = cls
    return cls


# ------------------------------------------------------------------ safe tensor rebuild


class _StorageType:
    """What a pickled storage class (``torch.HalfStorage`` ...) resolves to: just its dtype."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _Storage:
    """The raw bytes of one serialized storage, ``(nbytes,)`` uint8, and its dtype."""

    def __init__(self, raw: torch.Tensor, dtype: torch.dtype):
        self.raw, self.dtype = raw, dtype

    def tensor(self, dtype: torch.dtype, offset: Any, size: Any, stride: Any) -> torch.Tensor:
        """A view ``size``/``stride`` at element ``offset`` of these bytes read as ``dtype`` (bounds checked)."""
        if not isinstance(dtype, torch.dtype):
            raise CheckpointError("malformed tensor record (dtype)")
        try:
            size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(offset)
        except (TypeError, ValueError):
            raise CheckpointError("malformed tensor record (size/stride)") from None
        item = torch.empty((), dtype=dtype).element_size()
        if len(size) != len(stride) or min(size + stride + (offset,), default=0) < 0 or self.raw.numel() % item:
            raise CheckpointError("malformed tensor record (size/stride/offset)")
        flat = self.raw.view(dtype)
        if all(size):
            end = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
            if end > flat.numel():
                raise CheckpointError(f"tensor record {size} at offset {offset} exceeds its storage "
                                      f"({flat.numel()} elements)")
        return torch.as_strided(flat, size, stride, flat.storage_offset() + offset)  # offset is absolute


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor`` / ``_rebuild_tensor_v2``."""
    if not isinstance(storage, _Storage):
        raise CheckpointError("malformed tensor record (no storage)")
    return storage.tensor(storage.dtype, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       *_ignored) -> torch.Tensor:
    if not isinstance(storage, _Storage):
        raise CheckpointError("malformed tensor record (no storage)")
    return storage.tensor(dtype, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored) -> torch.Tensor:
    """Stand-in for ``_rebuild_parameter(_with_state)`` and ``Parameter``: the tensor itself."""
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("malformed parameter record")
    return data


def _rebuild_from_type_v2(func, new_type, args, state) -> Any:
    """Stand-in for ``torch._tensor._rebuild_from_type_v2``; ``func`` is one of the rebuilders above."""
    if func not in (_rebuild_tensor, _rebuild_tensor_v3, _rebuild_parameter) or not isinstance(args, tuple):
        raise CheckpointError("malformed tensor record (rebuild)")
    return func(*args)


def _encode(text, encoding="utf-8", errors="strict") -> bytes:
    """Stand-in for ``_codecs.encode`` (how protocol-2 pickles store ``bytes``), text codecs only."""
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in (
            "latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"):
        raise CheckpointError(f"unexpected bytes record (codec {encoding!r})")
    return text.encode(encoding, errors)


_DTYPES = {
    "float16": torch.float16, "float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
    "half": torch.float16, "float": torch.float32, "double": torch.float64,
    "int8": torch.int8, "int16": torch.int16, "int32": torch.int32, "int64": torch.int64,
    "uint8": torch.uint8, "bool": torch.bool, "long": torch.int64, "int": torch.int32,
    "complex64": torch.complex64, "complex128": torch.complex128,
}
_STORAGES = {
    "HalfStorage": torch.float16, "FloatStorage": torch.float32, "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16, "CharStorage": torch.int8, "ShortStorage": torch.int16,
    "IntStorage": torch.int32, "LongStorage": torch.int64, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}


_TENSOR_TYPE = object()  # what ``torch.Tensor`` resolves to: only passed to _rebuild_from_type_v2


def _safe_globals() -> dict[tuple[str, str], Any]:
    """The complete table of non-module globals a checkpoint may reference."""
    table: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "slice"): slice,
        ("_codecs", "encode"): _encode,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch", "Tensor"): _TENSOR_TYPE,
        ("torch._tensor", "Tensor"): _TENSOR_TYPE,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    }
    for name, dtype in _DTYPES.items():
        table[("torch", name)] = dtype
    for name, dtype in _STORAGES.items():
        for module in ("torch", "torch.cuda", "torch.storage"):
            table[(module, name)] = _StorageType(dtype)
    return table


_SAFE_GLOBALS = _safe_globals()
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals only from :data:`_SAFE_GLOBALS` or as inert stand-ins.

    ``persistent_load`` is the callback that turns a storage record into a :class:`_Storage`.
    """

    def __init__(self, file, source: str, persistent_load: Callable[[Any], Any] | None = None):
        super().__init__(file, encoding="utf-8")
        self._source = source
        self._persistent = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        module, name = str(module), str(name)
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names in protocol-2 pickles
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        dotted = f"{module}.{name}"
        if (dotted.startswith(STANDIN_PREFIXES) and _IDENT.fullmatch(name) and not name.startswith("__")
                and all(_IDENT.fullmatch(part) for part in module.split("."))):
            return _standin_class(module, name)
        raise CheckpointError(
            f"{self._source}: refusing to load: the file references {dotted!r}, which is not a tensor, "
            "a container or a YOLOv6/torch.nn module class (nothing from the file was run)")

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise CheckpointError(f"{self._source}: unexpected persistent record in a torch file header")
        return self._persistent(pid)


# ------------------------------------------------------------------------ torch files


def _zip_data_pkl(zf: zipfile.ZipFile) -> str | None:
    """Name of the ``<prefix>/data.pkl`` record of a torch zip file, or None."""
    names = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if not names and "data.pkl" in zf.namelist():
        return "data.pkl"
    return names[0] if len(names) == 1 else None


def _storage_record(pid: Any, source: str) -> tuple[_StorageType, str, int]:
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        raise CheckpointError(f"{source}: unexpected persistent record {str(pid)[:80]!r}")
    _, stype, key, _location, numel = pid[:5]
    if not isinstance(stype, _StorageType) or not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
        raise CheckpointError(f"{source}: malformed storage record {str(pid)[:80]!r}")
    return stype, key, numel


def _raw_bytes(data: bytes) -> torch.Tensor:
    if not data:
        return torch.empty(0, dtype=torch.uint8)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _load_zip(path: Path) -> Any:
    source = str(path)
    with zipfile.ZipFile(path) as zf:
        pkl = _zip_data_pkl(zf)
        if pkl is None:
            raise CheckpointError(f"{source}: a zip file but not a torch checkpoint (no data.pkl)")
        prefix = pkl[: -len("data.pkl")]
        names = set(zf.namelist())
        if f"{prefix}constants.pkl" in names:
            raise CheckpointError(f"{source}: a TorchScript archive, not an official YOLOv6 checkpoint")
        if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").strip() not in (b"little", b""):
            raise CheckpointError(f"{source}: big-endian torch files are not supported")
        storages: dict[str, _Storage] = {}

        def persistent_load(pid: Any) -> _Storage:
            stype, key, numel = _storage_record(pid, source)
            if key not in storages:
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise CheckpointError(f"{source}: storage {key!r} missing from the zip file")
                raw = _raw_bytes(zf.read(record))
                item = torch.empty((), dtype=stype.dtype).element_size()
                if raw.numel() < numel * item:
                    raise CheckpointError(f"{source}: storage {key!r} is truncated")
                storages[key] = _Storage(raw, stype.dtype)
            return storages[key]

        return RestrictedUnpickler(io.BytesIO(zf.read(pkl)), source, persistent_load).load()


def _load_legacy(path: Path) -> Any:
    """The pre-1.6 torch format: magic, protocol, sys-info, the object, storage keys, raw storages."""
    source = str(path)
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        if RestrictedUnpickler(f, source).load() != _LEGACY_MAGIC:
            raise CheckpointError(f"{source}: not a torch checkpoint (bad magic number)")
        RestrictedUnpickler(f, source).load()  # protocol version
        sys_info = RestrictedUnpickler(f, source).load()
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise CheckpointError(f"{source}: big-endian torch files are not supported")
        storages: dict[str, tuple[_Storage, int]] = {}

        def persistent_load(pid: Any) -> Any:
            if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
                return pid[1]  # a module class (already resolved as a stand-in), with its source text
            stype, key, numel = _storage_record(pid, source)
            item = torch.empty((), dtype=stype.dtype).element_size()
            if key not in storages:
                if numel * item > file_size:
                    raise CheckpointError(f"{source}: storage {key!r} larger than the file")
                storages[key] = (_Storage(torch.zeros(numel * item, dtype=torch.uint8), stype.dtype), item)
            storage = storages[key][0]
            view = pid[5] if len(pid) > 5 else None
            if view is not None:  # (view key, offset, size) in elements of the root storage
                _, off, size = view
                storage = _Storage(storage.raw[off * item:(off + size) * item], stype.dtype)
            return storage

        obj = RestrictedUnpickler(f, source, persistent_load).load()
        keys = RestrictedUnpickler(f, source).load()
        if not isinstance(keys, list):
            raise CheckpointError(f"{source}: malformed storage list")
        for key in keys:
            if key not in storages:
                raise CheckpointError(f"{source}: unreferenced storage {key!r}")
            storage, item = storages[key]
            header = f.read(8)
            if len(header) != 8:
                raise CheckpointError(f"{source}: truncated storage {key!r}")
            numel = struct.unpack("<q", header)[0]
            if numel * item != storage.raw.numel():
                raise CheckpointError(f"{source}: storage {key!r} size does not match its record")
            data = f.read(numel * item)
            if len(data) != numel * item:
                raise CheckpointError(f"{source}: truncated storage {key!r}")
            storage.raw.copy_(_raw_bytes(data))
    return obj


def load_torch_file(path: str | Path) -> Any:
    """Unpickle a ``torch.save`` file (zip or legacy format) without importing or running anything
    from it: module objects come back as :class:`StandIn` instances, tensors as CPU tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as f:
            header = f.read(len(_LEGACY_HEADER))
        if header != _LEGACY_HEADER:
            raise CheckpointError(f"{path}: not a torch checkpoint (neither the zip nor the legacy format)")
        return _load_legacy(path)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError, ValueError, TypeError,
            AttributeError, KeyError, IndexError, RuntimeError, struct.error, RecursionError,
            UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt or unreadable torch file ({type(exc).__name__}: "
                              f"{str(exc).strip()[:200]})") from None


def looks_official(path: str | Path) -> bool:
    """Cheap check: a torch file whose pickle references ``yolov6.models`` / ``yolov6.layers`` classes."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                pkl = _zip_data_pkl(zf)
                if pkl is None:
                    return False
                data = zf.read(pkl)
        else:
            with open(path, "rb") as f:
                data = f.read(1 << 20)
            if not data.startswith(_LEGACY_HEADER):
                return False
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError):
        return False
    return re.search(rb"yolov6\.(models|layers)\b", data) is not None


# --------------------------------------------------------------------- state dict


def _module_state(root: StandIn, source: str) -> tuple[dict[str, torch.Tensor], dict]:
    """``state_dict()`` of a stand-in module tree: parameters and persistent buffers, dotted names."""
    state: dict[str, torch.Tensor] = {}
    classes: set[str] = set()
    bn_eps: set[float] = set()

    def walk(module: Any, prefix: str, depth: int) -> None:
        if not isinstance(module, StandIn):
            raise CheckpointError(f"{source}: {prefix or 'model'} is a {type(module).__name__}, not a module")
        if depth > 100:
            raise CheckpointError(f"{source}: module tree too deep (cycle?)")
        classes.add(module.qualname)
        attrs = module.__dict__
        if module.qualname.endswith("BatchNorm2d") and isinstance(attrs.get("eps"), float):
            bn_eps.add(attrs["eps"])
        skip = attrs.get("_non_persistent_buffers_set") or set()
        for table in ("_parameters", "_buffers"):
            for name, tensor in (attrs.get(table) or {}).items():
                if tensor is None or (table == "_buffers" and name in skip):
                    continue
                if not isinstance(tensor, torch.Tensor):
                    raise CheckpointError(f"{source}: {prefix}{name} is not a tensor")
                state[f"{prefix}{name}"] = tensor
        for name, child in (attrs.get("_modules") or {}).items():
            if child is not None:
                walk(child, f"{prefix}{name}.", depth + 1)

    walk(root, "", 0)
    return state, {"classes": sorted(classes), "bn_eps": sorted(bn_eps)}


def read_official_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read an official checkpoint's weights without running code from it.

    Returns ``(state_dict, info)``: official key names (training form), float tensors as
    float32; ``info`` has ``source`` (``'ema'`` or ``'model'``), ``epoch``, ``format``,
    ``classes`` (pickled class paths) and ``bn_eps``.
    """
    path = Path(path)
    obj = load_torch_file(path)
    if isinstance(obj, StandIn):  # a bare pickled model
        obj = {"model": obj}
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not an official YOLOv6 checkpoint (top level is {type(obj).__name__})")
    source = "ema" if obj.get("ema") is not None else "model"
    root = obj.get(source)
    if root is None:
        raise CheckpointError(f"{path}: no 'model' or 'ema' entry (keys: {sorted(map(str, obj))[:8]})")
    if isinstance(root, StandIn):
        raw, info = _module_state(root, str(path))
    elif isinstance(root, dict) and root and all(isinstance(v, torch.Tensor) for v in root.values()):
        raw, info = dict(root), {"classes": [], "bn_eps": []}
    else:
        raise CheckpointError(f"{path}: '{source}' holds a {type(root).__name__}, not a model")
    if not raw:
        raise CheckpointError(f"{path}: the '{source}' model holds no weights")
    state = {k: v.to(torch.float32, copy=True) if v.is_floating_point() else v.clone() for k, v in raw.items()}
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in raw.values() if v.is_floating_point()})
    epoch = obj.get("epoch")
    info.update(source=source, epoch=epoch if isinstance(epoch, int) else None, dtypes=dtypes,
                format="zip" if zipfile.is_zipfile(path) else "legacy")
    if any(abs(e - 1e-3) > 1e-9 for e in info["bn_eps"]):
        LOGGER.warning("%s: BatchNorm eps %s differ from repyolo's 1e-3; outputs may differ slightly",
                       path, info["bn_eps"])
    return state, info


def to_repyolo_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official keys to repyolo's: ``.block.conv.`` -> ``.conv.``, ``.block.bn.`` -> ``.bn.`` (idempotent)."""
    return {_WRAPPED_CONV.sub(r"\1\2.", k): v for k, v in state.items()}


# ------------------------------------------------------------------ architecture


def _shape_of(state: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def model_signature(cfg: dict, nc: int) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of the training-form model ``cfg`` describes (built on the meta device)."""
    from repyolo.nn.model import YOLOv6

    with torch.device("meta"):
        model = YOLOv6(cfg, nc)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _children(shapes: dict, prefix: str) -> list[str]:
    """Distinct names directly below ``prefix`` (``'a.b.'``), in key order."""
    seen: dict[str, None] = {}
    for k in shapes:
        if k.startswith(prefix):
            seen.setdefault(k[len(prefix):].split(".", 1)[0], None)
    return list(seen)


def _out_channels(shapes: dict, prefix: str) -> int:
    """Output channels of a stage/block at ``prefix`` (RepBlock, BepC3, RepVGG or Conv block)."""
    for suffix in ("cv3.conv.weight", "conv1.rbr_dense.conv.weight", "conv1.conv.weight",
                   "conv1.conv1.rbr_dense.conv.weight", "conv1.conv1.conv.weight",
                   "rbr_dense.conv.weight", "conv.weight"):
        if prefix + suffix in shapes:
            return shapes[prefix + suffix][0]
    raise CheckpointError(f"cannot read the width of {prefix.rstrip('.')}")


def _stage_units(shapes: dict, prefix: str) -> tuple[int, tuple[int, int] | None]:
    """``(repeats n, (hidden, out) for a BepC3 stage or None)`` of the stage at ``prefix``."""
    if prefix + "cv1.conv.weight" in shapes:
        units = 1 + len(_children(shapes, prefix + "m.block."))
        return 2 * units, (shapes[prefix + "cv1.conv.weight"][0], shapes[prefix + "cv3.conv.weight"][0])
    return 1 + len(_children(shapes, prefix + "block.")), None


def _aux_branches(shapes: dict, nc: int) -> dict:
    """The head's training-only branches present in the file: ``aux_anchor`` (anchors), ``aux_dist``."""
    ab = shapes.get("detect.cls_preds_ab.0.weight")
    return {"aux_anchor": ab[0] // nc if ab else 0, "aux_dist": "detect.reg_preds_dist.0.weight" in shapes}


def describe_architecture(shapes: dict[str, tuple[int, ...]]) -> dict:
    """Read the architecture off repyolo-named keys and shapes (see :func:`_describe`)."""
    try:
        return _describe(shapes)
    except KeyError as exc:
        raise CheckpointError(f"not a known YOLOv6 layout: no {exc.args[0]!r} weights") from None


def _describe(shapes: dict[str, tuple[int, ...]]) -> dict:
    """Read the architecture off repyolo-named keys and shapes.

    Returns a dict: ``p6``, ``fusion`` (``'bic'`` v3 / ``'concat'`` v2), ``block``, ``act``,
    ``cspsppf``, ``backbone_channels`` / ``backbone_repeats``, ``neck_channels`` / ``neck_repeats``
    (unscaled, as built), ``csp`` (list of ``(hidden, out)`` per BepC3, empty for RepBlock
    stages), ``head`` (``use_dfl``, ``reg_max``, ``aux_anchor``, ``aux_dist``), ``nl``, ``nc``,
    and ``width`` (stem channels / 64).
    """
    if any(".rbr_reparam." in k for k in shapes) or ("backbone.stem.conv.bias" in shapes
                                                      and "backbone.stem.bn.weight" not in shapes):
        raise CheckpointError("a deploy (re-parameterized) checkpoint; import the training-form file "
                              "(the released .pt files are in training form)")
    if "backbone.stem.rbr_dense.conv.weight" in shapes:
        block, stem = "repvgg", shapes["backbone.stem.rbr_dense.conv.weight"]
    elif "backbone.stem.conv.weight" in shapes:
        block, stem = "conv", shapes["backbone.stem.conv.weight"]
    else:
        raise CheckpointError("no backbone.stem weights: not a YOLOv6 detector")
    n_stages = len([c for c in _children(shapes, "backbone.") if c.startswith("ERBlock_")])
    if n_stages not in (4, 5):
        raise CheckpointError(f"unexpected backbone with {n_stages} stages")
    b_channels, b_repeats, csp = [stem[0]], [1], []
    for i in range(2, n_stages + 2):
        pre = f"backbone.ERBlock_{i}."
        b_channels.append(_out_channels(shapes, pre + "0."))
        n, hidden = _stage_units(shapes, pre + "1.")
        b_repeats.append(n)
        csp += [hidden] if hidden else []
    last = f"backbone.ERBlock_{n_stages + 1}.2."
    cspsppf = any(k.startswith(last + "cspsppf.") for k in shapes)
    if not cspsppf and not any(k.startswith(last + "sppf.") for k in shapes):
        raise CheckpointError("no SPPF / CSPSPPF block after the last backbone stage")
    if any(k.startswith("neck.Bifusion0.") for k in shapes):
        fusion = "bic"
    elif any(k.startswith("neck.upsample0.") for k in shapes):
        fusion = "concat"
    else:
        raise CheckpointError("unknown neck (neither BiC fusion nor up-sample + concat)")
    k = n_stages - 2
    top = n_stages + 1
    td = [f"neck.Rep_p{top - 1 - i}." for i in range(k)]
    bu = [f"neck.Rep_n{j}." for j in ([3, 4] if k == 2 else [4, 5, 6])]
    n_channels = [shapes[f"neck.reduce_layer{i}.conv.weight"][0] for i in range(k)]
    n_repeats = []
    for i in range(k):
        n_channels += [shapes[f"neck.downsample{2 - i}.conv.weight"][0], _out_channels(shapes, bu[i])]
    for pre in td + bu:
        n, hidden = _stage_units(shapes, pre)
        n_repeats.append(n)
        csp += [hidden] if hidden else []
    nl = len(_children(shapes, "detect.cls_preds."))
    if nl != k + 1 or "detect.cls_preds.0.weight" not in shapes:
        raise CheckpointError(f"head with {nl} levels does not fit a neck with {k + 1} outputs")
    nc = shapes["detect.cls_preds.0.weight"][0]
    reg_max = shapes["detect.proj"][0] - 1 if "detect.proj" in shapes else 16
    n_reg = shapes["detect.reg_preds.0.weight"][0]
    if n_reg not in (4, 4 * (reg_max + 1)):
        raise CheckpointError(f"reg_preds has {n_reg} outputs: expected 4 or 4 x {reg_max + 1} (DFL)")
    return {
        "p6": n_stages == 5, "fusion": fusion, "block": block, "act": "silu" if block == "conv" else "relu",
        "cspsppf": cspsppf, "backbone_channels": b_channels, "backbone_repeats": b_repeats,
        "neck_channels": n_channels, "neck_repeats": n_repeats, "csp": csp,
        "head": {"use_dfl": n_reg != 4, "reg_max": reg_max, **_aux_branches(shapes, nc)},
        "nl": nl, "nc": nc, "width": stem[0] / 64,
    }


def _csp_ratio(pairs: list[tuple[int, int]]) -> float | None:
    """A BepC3 hidden ratio ``e`` with ``int(out * e) == hidden`` for every ``(hidden, out)``."""
    if not pairs:
        return None
    h, o = pairs[0]
    for e in (0.5, 0.666667, 0.75, round(h / o, 6), round(h / o, 6) + 1e-6):
        if all(int(out * e) == hid for hid, out in pairs):
            return e
    raise CheckpointError(f"BepC3 blocks with inconsistent hidden widths {pairs[:4]}")


def _with_head(cfg: dict, arch: dict) -> dict:
    """``cfg`` with the head (DFL, training-only branches) the file has."""
    return {**cfg, "head": {**cfg.get("head", {}), **arch["head"]}}


def _literal_config(arch: dict) -> dict:
    """A config that builds exactly these channels and repeats (multipliers 1.0)."""
    p6 = arch["p6"]
    return {
        "name": f"imported{'-p6' if p6 else ''}{'-v2' if arch['fusion'] == 'concat' else ''}",
        "description": "architecture read from an official YOLOv6 checkpoint",
        "depth_multiple": 1.0, "width_multiple": 1.0, "block": arch["block"], "act": arch["act"],
        "csp_e": _csp_ratio(arch["csp"]),
        "backbone": {"repeats": arch["backbone_repeats"], "channels": arch["backbone_channels"],
                     "cspsppf": arch["cspsppf"]},
        "neck": {"repeats": arch["neck_repeats"], "channels": arch["neck_channels"], "fusion": arch["fusion"]},
        "head": {"act": "silu", **arch["head"]},
        "strides": [8 * 2 ** i for i in range(arch["nl"])],
        "img_size": 1280 if p6 else 640,
        "loss": {"iou_type": "giou"},
        "atss_warmup_epochs": 4 if p6 or arch["fusion"] == "concat" else 0,
    }


def _bundled_candidates(arch: dict) -> list[dict]:
    from repyolo.nn.model import available_models, load_model_config, scale_width

    out = []
    for name in available_models():
        cfg = load_model_config(name)
        b, n = cfg["backbone"], cfg["neck"]
        if (len(b["channels"]) == 6) != arch["p6"] or n.get("fusion", "bic") != arch["fusion"]:
            continue
        if cfg.get("block", "repvgg") != arch["block"] or bool(b.get("cspsppf")) != arch["cspsppf"]:
            continue
        if (cfg.get("csp_e") is None) != (not arch["csp"]):
            continue
        if scale_width(b["channels"][0], float(cfg.get("width_multiple", 1.0))) != arch["backbone_channels"][0]:
            continue
        out.append(_with_head(cfg, arch))
    return out


def _differences(expected: dict, found: dict, limit: int = 5) -> str:
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    shape = [f"{k}: file {found[k]} vs model {expected[k]}" for k in expected if k in found and found[k] != expected[k]]
    parts = []
    if missing:
        parts.append(f"{len(missing)} model keys not in the file (e.g. {', '.join(missing[:limit])})")
    if extra:
        parts.append(f"{len(extra)} file keys not in the model (e.g. {', '.join(extra[:limit])})")
    if shape:
        parts.append(f"{len(shape)} shape mismatches (e.g. {'; '.join(shape[:limit])})")
    return "; ".join(parts)


def _fits(expected: dict, shapes: dict) -> bool:
    """The file's keys/shapes equal the model's, allowing only the constant DFL keys to be absent."""
    return all(shapes.get(k) == s for k, s in expected.items() if k in shapes) and set(shapes) <= set(expected) \
        and all(k in shapes or k in _CONSTANT_KEYS for k in expected)


def infer_config(state_dict: dict[str, torch.Tensor]) -> tuple[dict, int]:
    """The model config whose build has exactly these keys and shapes, and the number of classes.

    ``state_dict`` may use official or repyolo key names. A bundled config (``yolov6n`` ...,
    with the head's training-only branches and ``nc`` set from the keys) is preferred; otherwise
    a config with the literal channels and repeats is constructed. Raises
    :class:`CheckpointError` when neither reproduces the file.
    """
    shapes = _shape_of(to_repyolo_keys(state_dict))
    arch = describe_architecture(shapes)
    nc = arch["nc"]
    for cfg in _bundled_candidates(arch):
        try:
            if _fits(model_signature(cfg, nc), shapes):
                return {**cfg, "nc": nc}, nc
        except ConfigError:
            continue
    cfg = _literal_config(arch)
    try:
        expected = model_signature(cfg, nc)
    except ConfigError as exc:
        raise CheckpointError(f"cannot build a model for these weights: {exc}") from None
    if not _fits(expected, shapes):
        raise CheckpointError(f"no model config reproduces these weights: {_differences(expected, shapes)}")
    return {**cfg, "nc": nc}, nc


def config_for(model: str | Path | dict, state_dict: dict[str, torch.Tensor]) -> tuple[dict, int]:
    """A given config (bundled name, YAML or dict) with ``nc`` and the head's training-only
    branches taken from ``state_dict``; raises :class:`CheckpointError` if it does not fit."""
    from repyolo.nn.model import load_model_config

    shapes = _shape_of(to_repyolo_keys(state_dict))
    cfg = load_model_config(model)
    nc = shapes["detect.cls_preds.0.weight"][0] if "detect.cls_preds.0.weight" in shapes else 80
    cfg = {**cfg, "head": {**cfg.get("head", {}), **_aux_branches(shapes, nc)}, "nc": nc}
    expected = model_signature(cfg, nc)
    if not _fits(expected, shapes):
        raise CheckpointError(f"model {cfg.get('name', model)!r} does not fit these weights: "
                              f"{_differences(expected, shapes)}")
    return cfg, nc


# --------------------------------------------------------------------- conversion


def _summary(cfg: dict, arch: dict, n_params: int) -> dict:
    head = cfg.get("head", {})
    aux = [n for n, on in (("anchor-aided", head.get("aux_anchor")), ("DLD", head.get("aux_dist"))) if on]
    return {
        "model": cfg.get("name", "?"),
        "family": ("P6" if arch["p6"] else "P5") + (" v2" if arch["fusion"] == "concat" else " v3"),
        "nc": cfg["nc"], "width_multiple": cfg.get("width_multiple"), "depth_multiple": cfg.get("depth_multiple"),
        "stem_channels": arch["backbone_channels"][0], "block": cfg.get("block"), "act": cfg.get("act"),
        "csp_e": cfg.get("csp_e"), "sppf": ("Sim" if cfg.get("act") == "relu" else "") + ("CSPSPPF" if arch["cspsppf"] else "SPPF"),
        "dfl": bool(head.get("use_dfl")), "aux_branches": aux, "params": n_params,
    }


def convert_official(path: str | Path, keep_aux: bool = True, model: str | Path | dict | None = None) -> dict:
    """Convert an official YOLOv6 checkpoint into a repyolo checkpoint dict (not written).

    Args:
        path: the official ``.pt`` file.
        keep_aux: keep the training-only head branches (anchor-aided ``*_ab``, DLD
            ``reg_preds_dist``) so fine-tuning and distillation can use them; ``model.fuse()``
            drops them for deployment. ``False`` drops them now.
        model: force this config (bundled name, YAML path or dict) instead of inferring it.
    Returns:
        ``{"format", "version", "model_cfg", "names", "fused": False, "model": state_dict (float32),
        "ema": None, "epoch": -1, "args": {"imported_from": ..., "import": summary}, ...}``,
        ready for :func:`repyolo.engine.checkpoint.save_checkpoint`.
    Raises:
        CheckpointError: unsafe or unreadable file, or weights that do not fit the model exactly.
    """
    from repyolo.engine.checkpoint import FORMAT, VERSION

    path = Path(path)
    official, info = read_official_state_dict(path)
    state = to_repyolo_keys(official)
    if len(state) != len(official):
        raise CheckpointError(f"{path}: two official keys map to the same repyolo key")
    try:
        cfg, nc = config_for(model, state) if model is not None else infer_config(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    expected = model_signature(cfg, nc)
    shapes = _shape_of(state)
    if not _fits(expected, shapes):  # every official tensor lands on a model tensor of its shape, none left over
        raise CheckpointError(f"{path}: weights do not fit model {cfg.get('name')!r}: "
                              f"{_differences(expected, shapes)}")
    defaults = [k for k in expected if k not in state]
    if defaults:
        reg_max = cfg.get("head", {}).get("reg_max", 16)
        proj = torch.linspace(0, reg_max, reg_max + 1)
        constants = {"detect.proj": proj, "detect.proj_conv.weight": proj.view(1, -1, 1, 1)}
        state.update({k: constants[k].clone() for k in defaults})
        LOGGER.info("%s: filled the constant DFL keys %s", path, defaults)
    state = {k: state[k] for k in expected}  # repyolo's key order
    n_params = sum(v.numel() for k, v in state.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked", "detect.proj")))
    try:
        summary = _summary(cfg, describe_architecture(shapes), n_params)
    except CheckpointError:  # a forced config for a layout the describer does not know
        summary = {"model": cfg.get("name", "?"), "nc": nc, "params": n_params}
    summary.update(source=info["source"], tensors=len(official), dtypes=info["dtypes"], format=info["format"],
                   aux_kept=keep_aux)
    if not keep_aux:
        state = {k: v for k, v in state.items() if not k.startswith(AUX_PREFIXES)}
        cfg = {**cfg, "head": {**cfg["head"], "aux_anchor": 0, "aux_dist": False}}
    LOGGER.info("%s: official YOLOv6 %s, %d classes, %d tensors from '%s'", path, cfg.get("name"), nc,
                len(official), info["source"])
    return {
        "format": FORMAT, "version": VERSION,
        "model_cfg": cfg,
        "names": list(COCO_NAMES) if nc == 80 else [f"class{i}" for i in range(nc)],
        "fused": False,
        "model": state,
        "ema": None, "ema_updates": 0,
        "optimizer": None, "scheduler": None, "scaler": None,
        "epoch": -1, "step": 0,
        "args": {"imported_from": str(path), "official_epoch": info["epoch"], "import": summary},
        "metrics": {}, "best_fitness": 0.0,
    }
