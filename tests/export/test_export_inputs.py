"""What goes into an export: non-fused checkpoints are fused, auxiliary branches dropped,
corrupt or foreign files refused with a one-line error (CLI exit code 2)."""
from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch
import yaml
from export_helpers import perturb, save_model
from onnx import numpy_helper

from repyolo.cli import main
from repyolo.errors import CheckpointError
from repyolo.export import export_model
from repyolo.io.checkpoint import deploy_checkpoint, save_checkpoint
from repyolo.nn.model import build_model, load_model_config
from repyolo.runtime import load_backend


def onnx_param_count(path) -> int:
    """Elements of all initializers and Constant tensors of an ONNX graph."""
    proto = onnx.load(str(path))
    n = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    for node in proto.graph.node:
        if node.op_type == "Constant":
            n += sum(numpy_helper.to_array(a.t).size for a in node.attribute if a.name == "value")
    return n


def test_non_fused_checkpoint_is_fused_on_export(yolov6n_model, yolov6n_ckpt, tmp_path):
    from repyolo.io.checkpoint import read_checkpoint

    assert read_checkpoint(yolov6n_ckpt)["fused"] is False
    path = export_model(yolov6n_ckpt, "onnx", img_size=128, output=tmp_path / "a.onnx")
    fused = copy.deepcopy(yolov6n_model).fuse()
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = fused(x)
    assert torch.allclose(load_backend(path)(x), ref, atol=1e-3 * ref.abs().max().item())
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "BatchNormalization" not in ops, "BN must be folded into the convs"
    # the deploy checkpoint (already fused) exports to the same graph size
    deploy = tmp_path / "deploy.pt"
    save_checkpoint(deploy_checkpoint(copy.deepcopy(yolov6n_model)), deploy)
    path2 = export_model(deploy, "onnx", img_size=128, output=tmp_path / "b.onnx")
    assert onnx_param_count(path2) == onnx_param_count(path)
    assert torch.allclose(load_backend(path2)(x), ref, atol=1e-3 * ref.abs().max().item())


@pytest.mark.parametrize("aux", [{"aux_anchor": 3, "aux_dist": True}])
def test_auxiliary_branches_are_dropped(aux, tmp_path):
    head = {**load_model_config("yolov6n")["head"], **aux}
    torch.manual_seed(0)
    model = perturb(build_model("yolov6n", num_classes=20, head=head), seed=0)
    assert model.detect.cls_preds_ab is not None or model.detect.reg_preds_dist is not None
    plain = build_model("yolov6n", num_classes=20)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and unexpected  # the aux model has extra (training-only) weights
    ckpt = save_model(model, tmp_path / "aux.pt")
    a = export_model(ckpt, "onnx", img_size=128, output=tmp_path / "aux.onnx")
    b = export_model(plain.eval(), "onnx", img_size=128, output=tmp_path / "plain.onnx")
    assert onnx_param_count(a) == onnx_param_count(b)
    ga, gb = onnx.load(str(a)).graph, onnx.load(str(b)).graph
    assert [o.name for o in ga.output] == [o.name for o in gb.output] == ["outputs"]
    assert ga.output[0].type == gb.output[0].type
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    ya, yb = load_backend(a)(x), load_backend(b)(x)
    assert torch.allclose(ya, yb, atol=1e-4 * yb.abs().max().item())


@pytest.fixture
def bad_files(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "random.pt").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (tmp_path / "notes.pt").write_text("these are not weights\n")
    torch.save({"state": torch.zeros(3)}, tmp_path / "foreign.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled_module.pt")  # needs code to unpickle: refused
    (tmp_path / "empty.pt").write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize("name", ["random.pt", "notes.pt", "foreign.pt", "pickled_module.pt", "empty.pt", "missing.pt"])
def test_bad_weights_give_exit_code_2(bad_files, name):
    path = bad_files / name
    with pytest.raises(CheckpointError) as err:
        export_model(path, "onnx", img_size=64, output=bad_files / "out.onnx")
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert main(["export", "--weights", str(path), "--format", "onnx", "--img", "64",
                 "--output", str(bad_files / "out.onnx")]) == 2
    assert not (bad_files / "out.onnx").exists()


def test_cli_prints_one_line_error(bad_files):
    proc = subprocess.run([sys.executable, "-m", "repyolo.cli", "export", "--weights", str(bad_files / "random.pt"),
                           "--format", "openvino"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "random.pt" in lines[0] and "Traceback" not in proc.stderr


def test_bad_exported_files_give_checkpoint_error(tmp_path, yolov6n_model):
    rng = np.random.default_rng(1)
    (tmp_path / "random.onnx").write_bytes(rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
    foreign = tmp_path / "foreign.onnx"  # a valid ONNX model that repyolo did not write
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy exporter deprecation notice
        torch.onnx.export(torch.nn.Conv2d(3, 4, 1), (torch.zeros(1, 3, 8, 8),), str(foreign), dynamo=False)
    (tmp_path / "random.torchscript").write_bytes(b"PK\x03\x04 not really a zip")
    ov_empty = tmp_path / "empty_openvino_model"
    ov_empty.mkdir()
    ov_bad = tmp_path / "bad_openvino_model"
    ov_bad.mkdir()
    (ov_bad / "m.xml").write_text("<net><broken")
    (ov_bad / "m.bin").write_bytes(b"\0" * 16)
    for path, match in ((tmp_path / "random.onnx", "not a loadable ONNX"), (foreign, "not a repyolo export"),
                        (tmp_path / "random.torchscript", "not a loadable TorchScript"),
                        (ov_empty, "expected one OpenVINO .xml"), (ov_bad, "not a loadable OpenVINO")):
        with pytest.raises(CheckpointError, match=match) as err:
            load_backend(path)
        assert "\n" not in str(err.value)


def test_cli_export_writes_each_format(yolov6n_ckpt, tmp_path, capsys):
    for fmt, out in (("onnx", tmp_path / "m.onnx"), ("torchscript", tmp_path / "m.torchscript"),
                     ("openvino", tmp_path / "m_openvino_model")):
        assert main(["export", "--weights", yolov6n_ckpt, "--format", fmt, "--img", "96", "128",
                     "--output", str(out)]) == 0
        assert capsys.readouterr().out.strip() == str(out)
        backend = load_backend(out)
        assert backend.names[:2] == ["class0", "class1"]
        assert backend(torch.rand(1, 3, 96, 128)).shape == (1, (12 * 16) + (6 * 8) + (3 * 4), 84)


def test_cli_rejects_bad_options(yolov6n_ckpt, tmp_path):
    base = ["export", "--weights", yolov6n_ckpt, "--output", str(tmp_path / "x.onnx")]
    assert main(base + ["--img", "100"]) == 2  # not a multiple of the stride
    assert main(base + ["--opset", "11"]) == 2
    assert main(base + ["--opset", "40"]) == 2
    assert main(base + ["--format", "openvino", "--int8"]) == 2  # done by `repyolo quantize`
    assert main(base + ["--format", "torchscript", "--nms"]) == 2
    assert main(base + ["--nms", "--iou", "0"]) == 2


def test_int8_export_to_openvino(coco128, yolov6n_ckpt, tmp_path):
    """``--int8 --data``: calibrated QDQ model from the quantization stage, converted to an OpenVINO IR."""
    names = (coco128 / "classes.txt").read_text().split("\n")
    data = tmp_path / "coco128.yaml"
    data.write_text(yaml.safe_dump({"path": str(coco128), "train": "images/train", "val": "images/val",
                                    "names": [n for n in names if n]}))
    out = tmp_path / "q_openvino_model"
    assert main(["export", "--weights", yolov6n_ckpt, "--format", "openvino", "--int8", "--data", str(data),
                 "--calib", "4", "--img", "128", "--output", str(out)]) == 0
    backend = load_backend(out, threads=2)
    assert "quantization" in backend.metadata and backend.names[0] == "class0"
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    y, ref = backend(x), load_backend(yolov6n_ckpt)(x)
    assert y.shape == ref.shape
    cos = torch.nn.functional.cosine_similarity(y.flatten(1), ref.flatten(1)).min()
    assert cos > 0.99, f"INT8 output should stay close to FP32 (cosine {cos:.4f})"
