"""The cached ONNX Runtime export of ``.pt`` checkpoints (repyolo.export.cache): key, reuse,
invalidation, parity guard and fall-backs."""
from __future__ import annotations

import pytest
import torch
from export_helpers import perturb, save_model

from repyolo.export import cache as rc
from repyolo.nn.model import build_model


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = perturb(build_model("yolov6n", num_classes=3, width_multiple=0.0625, depth_multiple=0.1), seed=0)
    model.names = ["a", "b", "c"]
    return save_model(model, tmp_path_factory.mktemp("w") / "tiny.pt")


VERSIONS = {"repyolo": "1", "torch": "2", "onnx": "3", "onnxruntime": "4"}


def test_key_is_a_pure_function_of_its_inputs():
    k, fields = rc.cache_key("ab" * 32, (640, 640), VERSIONS)
    assert k == rc.cache_key("ab" * 32, (640, 640), dict(reversed(list(VERSIONS.items()))))[0]
    assert fields["img_size"] == [640, 640] and fields["dynamic"] is True
    assert k != rc.cache_key("cd" * 32, (640, 640), VERSIONS)[0]                      # other weights
    assert k != rc.cache_key("ab" * 32, (320, 320), VERSIONS)[0]                      # other size
    assert k != rc.cache_key("ab" * 32, (640, 640), {**VERSIONS, "onnxruntime": "5"})[0]  # upgraded package
    assert k != rc.cache_key("ab" * 32, (640, 640), VERSIONS, opset=18)[0]


def test_export_once_then_reuse_and_invalidate(tiny_ckpt, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    size = (128, 128)
    # few frames: not worth an export, PyTorch runs and nothing is written
    b = rc.open_fast_backend(tiny_ckpt, img_size=size, n_frames=2, min_frames=16, folder=folder)
    assert b.kind == "torch" and not folder.exists()
    # enough frames: exported, parity-checked, used
    b = rc.open_fast_backend(tiny_ckpt, img_size=size, n_frames=100, folder=folder)
    assert b.kind == "onnx" and len(list(folder.glob("*.onnx"))) == 1 and len(list(folder.glob("*.json"))) == 1
    x = torch.rand(2, 3, 96, 128)
    ref = rc.load_backend(tiny_ckpt)(x)
    assert (b(x) - ref).abs().max() < 1e-3
    # a cache hit is used even for one frame, without exporting again
    monkeypatch.setattr(rc, "_export", lambda *a, **k: pytest.fail("exported twice"))
    assert rc.open_fast_backend(tiny_ckpt, img_size=size, n_frames=1, folder=folder).kind == "onnx"
    assert rc.open_fast_backend(tiny_ckpt, img_size=size, runtime="torch", folder=folder).kind == "torch"
    monkeypatch.undo()
    # changed weights: a new key, a new entry (the old one is never reused for them)
    changed = tmp_path / "changed.pt"
    ck = torch.load(tiny_ckpt, weights_only=False)
    ck["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ck["model"].items()}
    torch.save(ck, changed)
    assert rc.open_fast_backend(changed, img_size=size, n_frames=100, folder=folder).kind == "onnx"
    assert len(list(folder.glob("*.onnx"))) == 2


def test_damaged_entry_is_removed_and_pytorch_runs(tiny_ckpt, tmp_path):
    folder = tmp_path / "cache"
    assert rc.open_fast_backend(tiny_ckpt, img_size=(128, 128), runtime="onnx", folder=folder).kind == "onnx"
    (path,) = folder.glob("*.onnx")
    path.write_bytes(b"garbage")
    assert rc.open_fast_backend(tiny_ckpt, img_size=(128, 128), runtime="onnx", folder=folder).kind == "torch"
    assert not path.exists()


def test_parity_failure_rejects_the_entry(tiny_ckpt, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setattr(rc, "_parity", lambda *a: (5.0, 0.0))
    assert rc.open_fast_backend(tiny_ckpt, img_size=(128, 128), runtime="onnx", folder=folder).kind == "torch"
    assert len(list(folder.glob("*.rejected"))) == 1 and not list(folder.glob("*.onnx"))
    monkeypatch.undo()  # a rejected key is not retried
    assert rc.open_fast_backend(tiny_ckpt, img_size=(128, 128), runtime="onnx", folder=folder).kind == "torch"


def test_non_checkpoints_open_as_they_are(tmp_path):
    with pytest.raises(Exception, match="not found"):
        rc.open_fast_backend(tmp_path / "missing.pt", folder=tmp_path)
    with pytest.raises(ValueError, match="runtime"):
        rc.open_fast_backend(tmp_path / "missing.pt", runtime="tensorrt", folder=tmp_path)


def test_api_predict_runs_the_cached_export_with_the_same_detections(tiny_ckpt, tmp_path, monkeypatch):
    """YOLO.predict (the CLI's code path): runtime='onnx' uses the cached export, finds what PyTorch
    finds, and keeps the backend for the next call; 'torch' and unknown runtimes behave."""
    import numpy as np

    from repyolo.api import YOLO
    from repyolo.errors import RepyoloError

    monkeypatch.setenv("REPYOLO_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(3)]
    m = YOLO(tiny_ckpt)
    ref = m.predict(images, img=128, conf=0.01, runtime="torch")
    got = m.predict(images, img=128, conf=0.01, runtime="onnx")
    assert m._fast is not None and m._fast[1].kind == "onnx"
    assert list(tmp_path.glob("cache/runtime/*.onnx"))
    assert sum(len(r.boxes) for r in ref) > 0
    for a, b in zip(ref, got):
        assert len(a.boxes) == len(b.boxes)
        assert np.abs(a.boxes - b.boxes).max(initial=0) <= 1.0 and np.abs(a.scores - b.scores).max(initial=0) <= 1e-3
    assert m._predict_backend(images, 128, "auto", False, None) is m._fast[1]
    with pytest.raises(RepyoloError, match="runtime"):
        m.predict(images, runtime="tensorrt")
