"""Reading ``torch.save`` files without running code from them, and naming what a file is.

Every torch file is read with ``torch.load(weights_only=True)``: PyTorch's restricted unpickler,
which only rebuilds tensors, containers and allow-listed classes, and never calls anything else.
Before it runs, the file's pickle is scanned (without executing it) for the globals it
references: module classes under :data:`STANDIN_PREFIXES` (the pickled module tree of an official
YOLOv6 checkpoint) are mapped to inert :class:`StandIn` classes that only keep their attribute
dict; any other global outside torch's allow-list (``os.system``, ``builtins.eval``,
``subprocess.Popen`` ...) makes :func:`load_torch_file` refuse the file with a one-line
:class:`~repyolo.errors.CheckpointError` naming it, so nothing from the file ever runs.

Why not our own unpickler: it did the same job in ~330 lines of security-critical code of ours
(storage slicing, tensor rebuild, bounds checks); PyTorch's is maintained and audited upstream.
The one thing it cannot read is the legacy (pre-1.6, non-zip) format when modules were pickled
(their source travels as persistent records the restricted unpickler rejects): such files are
still scanned and refused by name when unsafe, else reported as unsupported. Official YOLOv6
releases are all zip files (torch >= 1.6).
"""
from __future__ import annotations

import _compat_pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any
from zlib import error as zlib_error

import torch

from repyolo.errors import CheckpointError, one_line

# class-path prefixes whose classes become inert stand-ins (the module tree of an official checkpoint)
STANDIN_PREFIXES = ("yolov6.", "torch.nn.modules.")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
# tensor / container rebuilders torch's weights-only unpickler allows (never reported, never refused)
_TORCH_SAFE = re.compile(
    r"^(torch\.[A-Za-z0-9]*Storage|torch\._utils\._rebuild_(tensor|tensor_v2|tensor_v3|parameter|parameter_with_state)|"
    r"torch\._tensor\._rebuild_from_type_v2|torch\.(Size|device|Tensor|float16|float32|float64|bfloat16|half|float|"
    r"double|int8|int16|int32|int64|uint8|bool|long|int|short|complex64|complex128)|torch\._tensor\.Tensor|"
    r"torch\.nn\.parameter\.Parameter|collections\.OrderedDict|builtins\.(set|frozenset|slice|complex|bytearray)|"
    r"_codecs\.encode)$")


class StandIn:
    """Inert stand-in for a pickled class: keeps the pickled attribute dict, runs nothing.

    ``qualname`` (class attribute) is the original class path, e.g. ``yolov6.layers.common.RepVGGBlock``.
    """

    qualname = "?"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update({k: v for k, v in state.items() if isinstance(k, str)})

    def __repr__(self) -> str:
        return f"<stand-in {self.qualname}>"


_STANDIN_CLASSES: dict[str, type] = {}


def standin_class(qualname: str) -> type:
    """The (cached) stand-in class for ``module.Name``."""
    cls = _STANDIN_CLASSES.get(qualname)
    if cls is None:
        name = qualname.rsplit(".", 1)[1]
        cls = type(name, (StandIn,), {"qualname": qualname, "__module__": __name__})
        _STANDIN_CLASSES[qualname] = cls
    return cls


def is_standin_name(qualname: str) -> bool:
    """A plain class path under :data:`STANDIN_PREFIXES` (no dunders, identifiers only)."""
    module, _, name = qualname.rpartition(".")
    return (qualname.startswith(STANDIN_PREFIXES) and bool(_IDENT.fullmatch(name)) and not name.startswith("__")
            and all(_IDENT.fullmatch(part) for part in module.split(".")))


def _modern_name(qualname: str) -> str:
    """``__builtin__.exec`` -> ``builtins.exec`` (Python 2 names of protocol-2 pickles)."""
    module, _, name = qualname.rpartition(".")
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


# ----------------------------------------------------------------------------------------- what is it


_MAGIC = [
    (b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"), (b"RIFF", "a RIFF (WebP/AVI) file"), (b"7767517", "an NCNN .param graph"),
    (b"\x1f\x8b", "a gzip archive"), (b"%PDF", "a PDF document"), (b"<?xml", "an XML file (an OpenVINO .xml?)"),
]


def describe_file(path: str | Path) -> str:
    """A short phrase saying what ``path`` holds, from its first bytes: ``'a JPEG image'``,
    ``'a torch zip file'``, ``'a pickle'``, ``'a TorchScript archive'``, ``'an ONNX model'``,
    ``'a text file'``, ``'an empty file'`` ... (``'binary data'`` when unknown)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "a truncated or corrupt zip file"
        if any(n.endswith("constants.pkl") for n in names):
            return "a TorchScript archive"
        if any(n.endswith("data.pkl") for n in names):
            return "a torch zip file"
        return "a zip archive (not a torch file)"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a legacy torch file" if _legacy_magic_ok(path) else "a pickle"
    if path.suffix.lower() == ".onnx" or _looks_onnx(head):
        return "an ONNX model"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    return "a text file" if all(c.isprintable() or c in "\t\r\n" for c in text) else "binary data"


def _looks_onnx(head: bytes) -> bool:
    """An ONNX ``ModelProto``: field 1 ``ir_version`` (a small varint), then producer name, graph or opsets."""
    return (len(head) > 3 and head[0] == 0x08 and 1 <= head[1] <= 20
            and head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42))


def _legacy_magic_ok(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            ops = pickletools.genops(f)
            return any(op.name in ("LONG1", "LONG4") and arg == _LEGACY_MAGIC for op, arg, _ in ops)
    except Exception:  # noqa: BLE001 - a malformed pickle is simply not a legacy torch file
        return False


# ----------------------------------------------------------------------------------------- scanning


def _scan_pickle(data, names: set[str]) -> None:
    """Add the globals one pickle (bytes or a file positioned at it) references to ``names``,
    without executing it. ``STACK_GLOBAL`` (protocol 4+) takes the module and name strings from a
    light model of the pushes and the memo. (Only for naming and refusing early: the safety gate
    is torch's restricted unpickler, which refuses whatever this scan might misname.)"""
    pushed: list[str | None] = []  # recent pushes: the string, or None for anything else
    memo: dict[int, str | None] = {}
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name == "GLOBAL":
            names.add(arg.replace(" ", "."))
            pushed.append(None)
        elif name == "STACK_GLOBAL":
            module, attr = (pushed[-2], pushed[-1]) if len(pushed) >= 2 else (None, None)
            names.add(f"{module}.{attr}" if isinstance(module, str) and isinstance(attr, str) else "?.?")
            pushed.append(None)
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = pushed[-1] if pushed else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(int(arg)))
        elif isinstance(arg, str) and name.endswith(("UNICODE", "STRING", "BINUNICODE8")):
            pushed.append(arg)
        elif name not in ("PROTO", "FRAME", "STOP"):
            pushed.append(None)


def referenced_globals(path: str | Path) -> list[str]:
    """The globals (``module.name``) a torch file's pickle references, outside the tensor/container
    rebuilders torch's weights-only loader allows, found without unpickling (zip and legacy
    formats). Raises a one-line CheckpointError for a corrupt or truncated file."""
    path = Path(path)
    names: set[str] = set()
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                pkl = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
                if len(pkl) != 1:
                    raise CheckpointError(f"{path}: a zip file, but not a torch checkpoint (no single data.pkl)")
                _scan_pickle(zf.read(pkl[0]), names)
        else:
            with open(path, "rb") as f:
                for _ in range(4):  # legacy format: magic, protocol, sys info, the object
                    _scan_pickle(f, names)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile / pickletools on damaged bytes raise many types
        raise CheckpointError(f"{path}: corrupt or truncated file ({one_line(exc)})") from None
    return sorted(n for n in {_modern_name(n) for n in names} if not _TORCH_SAFE.match(n))


def check_globals(path: str | Path, names: list[str]) -> list[str]:
    """Refuse ``path`` (CheckpointError naming the global) when a referenced global is neither
    allow-listed nor a stand-in class path; returns the stand-in class paths."""
    bad = [n for n in names if not is_standin_name(n)]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CheckpointError(f"{path}: refusing to load: the file references {bad[0]!r}{more}, which is not a "
                              "tensor, a container or a YOLOv6/torch.nn module class (nothing from the file was run)")
    return names


def load_torch_file(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` of ``path`` on the CPU, with YOLOv6 / ``torch.nn`` module
    classes read as inert :class:`StandIn` objects and any other non-tensor global refused by name
    before anything is unpickled. Raises a one-line CheckpointError for a missing, foreign,
    corrupt, truncated or unsafe file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    what = describe_file(path)
    if what not in ("a torch zip file", "a legacy torch file"):
        if what == "a truncated or corrupt zip file":
            raise CheckpointError(f"{path}: corrupt or truncated checkpoint (the zip archive is incomplete)")
        if what == "a pickle":
            _refuse_plain_pickle(path)
        raise CheckpointError(f"{path}: not a checkpoint: {what}")
    if what == "a torch zip file":
        _check_zip_crc(path)
    standins = check_globals(path, referenced_globals(path))
    if what == "a legacy torch file" and any(n.startswith(STANDIN_PREFIXES) for n in standins):
        raise CheckpointError(f"{path}: legacy (pre-1.6) torch format with pickled modules: not readable safely; "
                              "re-save it with a current torch (torch.save(torch.load(f), f2)) where you trust it")
    pairs = [(standin_class(n), n) for n in standins]
    try:
        with torch.serialization.safe_globals(pairs):
            return torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except (EOFError, zipfile.BadZipFile, RuntimeError, OSError, ValueError) as exc:
        if "weights only load failed" in str(exc).lower() or "weights_only" in str(exc):
            raise CheckpointError(f"{path}: refusing to load: the file holds objects the safe loader does not "
                                  "allow (nothing from the file was run)") from None
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({_reason(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - the unpickler on damaged data raises many types
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    """A foreign exception quoted in one line, without any advice to turn the safe loader off."""
    text = one_line(exc)
    cut = text.lower().find("weights_only")
    if cut >= 0:
        text = text[:cut].rsplit(".", 1)[0].rstrip() or type(exc).__name__
    return text


def _check_zip_crc(path: Path) -> None:
    """Every member of a torch zip must match its CRC-32 (torch itself does not check: a file
    damaged in the middle would load with wrong weights)."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib_error) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({_reason(exc)})") from None
    if bad is not None:
        raise CheckpointError(f"{path}: corrupt checkpoint: the entry {bad!r} fails its checksum "
                              "(damaged in copying or on disk)")


def _refuse_plain_pickle(path: Path) -> None:
    """A plain pickle is never a checkpoint; when it references code, say so (nothing is run)."""
    names: set[str] = set()
    try:
        with open(path, "rb") as f:
            _scan_pickle(f, names)
    except Exception:  # noqa: BLE001 - a malformed pickle is reported as a plain pickle
        return
    bad = sorted(n for n in {_modern_name(n) for n in names} if not _TORCH_SAFE.match(n))
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CheckpointError(f"{path}: refusing to load: a plain pickle, not a checkpoint, that references "
                              f"{bad[0]!r}{more} (nothing from the file was run)")


__all__ = ["STANDIN_PREFIXES", "StandIn", "check_globals", "describe_file", "is_standin_name", "load_torch_file",
           "referenced_globals", "standin_class"]
