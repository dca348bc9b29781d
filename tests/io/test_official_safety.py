"""A checkpoint that references any global outside the allow-list is refused before anything runs.

Each payload would create a marker file if executed; the tests assert the marker never appears
and that the :class:`CheckpointError` names the offending global.
"""
from __future__ import annotations

import os
import pickle
import shutil
import zipfile

import pytest

import repyolo
from repyolo.errors import CheckpointError
from repyolo.io.official import convert_official, looks_official, read_official_state_dict
from repyolo.io.torchfile import load_torch_file


def _text(s: str) -> bytes:
    data = s.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


def _call(module: str, name: str, arg: bytes) -> bytes:
    """Protocol-2 opcodes that push ``module.name(arg)`` (GLOBAL + TUPLE1 + REDUCE)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n" + arg + b"\x85R"


def _payloads(marker) -> dict[str, bytes]:
    """global name -> opcodes calling it in a way that creates ``marker``."""
    touch = f"touch {marker}"
    return {
        "os.system": _call("os", "system", _text(touch)),
        "posix.system": _call("posix", "system", _text(touch)),
        "builtins.eval": _call("builtins", "eval", _text(f"open({str(marker)!r}, 'w').close()")),
        "builtins.exec": _call("__builtin__", "exec", _text(f"open({str(marker)!r}, 'w').close()")),
        "subprocess.Popen": _call("subprocess", "Popen", b"(" + _text("touch") + _text(str(marker)) + b"l"),
    }


def _pickle_dict(entries: bytes) -> bytes:
    """``{...}`` with the given ``key value`` opcode pairs, protocol 2."""
    return b"\x80\x02}(" + entries + b"u."


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_payload_would_run_under_plain_pickle(tmp_path):
    """Control: the marker technique detects execution (plain pickle runs the payload)."""
    marker = tmp_path / "ran"
    pickle.loads(_pickle_dict(_text("model") + _payloads(marker)["os.system"]))
    assert marker.exists()


def _write_zip(path, data_pkl: bytes, template=None) -> None:
    """A torch-style zip: ``archive/data.pkl`` = ``data_pkl`` plus the other records of ``template``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        if template is None:
            out.writestr("archive/data.pkl", data_pkl)
            out.writestr("archive/byteorder", "little")
            out.writestr("archive/version", "3\n")
            return
        with zipfile.ZipFile(template) as src:
            for info in src.infolist():
                out.writestr(info.filename, data_pkl if info.filename.endswith("/data.pkl") else src.read(info))


@pytest.mark.parametrize("name", ["os.system", "posix.system", "builtins.eval", "builtins.exec", "subprocess.Popen"])
def test_refused_in_plain_zip(tmp_path, name):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    _write_zip(path, _pickle_dict(_text("model") + _payloads(marker)[name]))
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_torch_file(path)
    with pytest.raises(CheckpointError):
        repyolo.load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_refused_inside_a_valid_official_checkpoint(tmp_path, official_yolov6n, name, where):
    """The payload rides in an otherwise valid official file (real module tree and storages)."""
    path, _ = official_yolov6n
    with zipfile.ZipFile(path) as zf:
        legit = zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))
    assert legit.startswith(b"\x80\x02}") and legit.endswith(b"u.")
    marker = tmp_path / "ran"
    entry = _text("evil") + _payloads(marker)[name]
    if where == "after":  # set one more item on the top-level dict after the whole model
        data = legit[:-1] + entry + b"s."
    else:  # first entry of the top-level dict, before the model
        data = legit[:3] + b"(" + entry + b"u" + legit[3:]
    evil = tmp_path / "yolov6n.pt"
    _write_zip(evil, data, template=path)
    assert looks_official(evil)
    for load in (read_official_state_dict, convert_official, repyolo.load_model):
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")) as err:
            load(evil)
        assert "nothing from the file was run" in str(err.value)
    assert not marker.exists()


def test_refused_with_protocol_4_stack_global(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    _write_zip(path, pickle.dumps({"model": _Evil(marker)}, protocol=4))
    with pytest.raises(CheckpointError, match=r"posix\.system"):
        load_torch_file(path)
    assert not marker.exists()


def test_refused_in_legacy_format(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil_legacy.pt"
    header = b"".join(pickle.dumps(x, protocol=2) for x in (
        0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}))
    path.write_bytes(header + _pickle_dict(_text("model") + _payloads(marker)["os.system"])
                     + pickle.dumps([], protocol=2))
    with pytest.raises(CheckpointError, match=r"os\.system"):
        load_torch_file(path)
    assert not marker.exists()


def test_refused_global_never_imports_its_module(tmp_path, monkeypatch):
    """A refused module is not even imported (no import side effects)."""
    pkg = tmp_path / "pkgs"
    pkg.mkdir()
    marker = tmp_path / "imported"
    (pkg / "sideeffect_mod.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef f(*a):\n    pass\n")
    monkeypatch.syspath_prepend(str(pkg))
    path = tmp_path / "evil.pt"
    _write_zip(path, _pickle_dict(_text("model") + _call("sideeffect_mod", "f", _text("x"))))
    with pytest.raises(CheckpointError, match=r"sideeffect_mod\.f"):
        load_torch_file(path)
    assert not marker.exists()
    shutil.rmtree(pkg)


def test_bad_storage_records_are_errors(tmp_path):
    path = tmp_path / "bad.pt"
    # a tensor record pointing past its storage
    rebuild = b"ctorch._utils\n_rebuild_tensor_v2\n(" + b"(" + _text("storage") + b"ctorch\nHalfStorage\n" \
        + _text("0") + _text("cpu") + b"K\x04tQ" + b"K\x00" + b"K\x10\x85" + b"K\x01\x85" + b"\x89" \
        + b"ccollections\nOrderedDict\n)R" + b"tR"
    _write_zip(path, _pickle_dict(_text("w") + rebuild))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("archive/data/0", b"\x00" * 8)
    with pytest.raises(CheckpointError, match=r"bad\.pt: corrupt or truncated checkpoint"):
        load_torch_file(path)
