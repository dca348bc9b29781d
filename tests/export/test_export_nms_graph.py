"""The end-to-end (``--nms``) graph gives the detections of the Python post-processing."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from repyolo.export import export_model
from repyolo.export.nms_graph import End2End
from repyolo.runtime import load_backend

IMG = 320


def _load_batch(folder) -> torch.Tensor:
    """The demo photos, letterboxed to IMG (gray 114 border), as a float batch in 0..1."""
    from repyolo.data.augment import letterbox
    from repyolo.data.io import read_image

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert paths, f"no images in {folder}"
    imgs = [letterbox(read_image(p), IMG)[0] for p in paths]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div(255.0)


def _reference(raw: torch.Tensor, conf: float, iou: float, max_det: int, multi_label: bool) -> list[torch.Tensor]:
    from repyolo.ops.postprocess import non_max_suppression

    return non_max_suppression(raw, conf, iou, multi_label=multi_label, max_det=max_det)


def _pick_conf(raw: torch.Tensor, iou: float, max_det: int, multi_label: bool) -> float:
    """A score threshold giving between 3 and max_det - 1 detections on every image (the random
    model's score scale depends on its initialization, so the threshold is read off its scores)."""
    best = raw[..., 4:].amax(-1).flatten()
    for q in (0.99, 0.995, 0.98, 0.998, 0.97, 0.999, 0.95):
        conf = round(float(best.quantile(q)), 4)
        counts = [len(r) for r in _reference(raw, conf, iou, max_det, multi_label)]
        if min(counts) >= 3 and max(counts) < max_det:
            return conf
    pytest.fail("no threshold gives a usable number of detections")


def assert_same_detections(got: torch.Tensor, ref: torch.Tensor, conf: float) -> None:
    """Same set of detections: every reference box has a partner of the same class within 1 px
    (and the same score), and vice versa. Boxes whose score is within 1e-5 of the threshold
    may be on either side of it."""
    def unmatched(a, b):
        if len(a) == 0:
            return a
        if len(b) == 0:
            return a
        same_cls = a[:, None, 5] == b[None, :, 5]
        close = (a[:, None, :4] - b[None, :, :4]).abs().amax(-1) <= 1.0
        same_score = (a[:, None, 4] - b[None, :, 4]).abs() <= 1e-4
        return a[~(same_cls & close & same_score).any(1)]

    for extra in (unmatched(got, ref), unmatched(ref, got)):
        assert bool(((extra[:, 4] - conf).abs() <= 1e-5).all()), f"unmatched detections:\n{extra}"


@pytest.fixture
def demo_batch(demo_images) -> torch.Tensor:
    return _load_batch(demo_images)


@pytest.mark.parametrize("multi_label", [False, True])
def test_onnx_nms_graph_matches_python_postprocess(demo_batch, yolov6n_model, tmp_path, multi_label):
    iou, max_det = 0.45, 100
    fused = copy.deepcopy(yolov6n_model).fuse()
    with torch.no_grad():
        raw = fused(demo_batch)
    conf = _pick_conf(raw, iou, max_det, multi_label)  # 3 .. max_det - 1 detections per image
    ref = _reference(raw, conf, iou, max_det, multi_label)
    assert any(len(r[:, 5].unique()) > 1 for r in ref), "several classes are needed to test class-awareness"

    path = export_model(yolov6n_model, "onnx", img_size=IMG, batch=len(ref), nms=True, conf=conf, iou=iou,
                        max_det=max_det, multi_label=multi_label, output=tmp_path / "e2e.onnx")
    backend = load_backend(path, threads=2)
    assert backend.end2end and backend.metadata["nms"] == {"max_det": max_det, "conf": conf, "iou": iou,
                                                           "multi_label": multi_label}
    raw_out = backend.session.run(None, {"images": demo_batch.numpy()})
    num_dets, boxes, scores, classes = raw_out
    assert num_dets.shape == (len(ref), 1) and num_dets.dtype == np.int32
    assert boxes.shape == (len(ref), max_det, 4) and scores.shape == (len(ref), max_det)
    assert classes.shape == (len(ref), max_det) and classes.dtype == np.int32
    for i in range(len(ref)):  # padding rows past num_dets: score 0, box 0, class -1
        k = int(num_dets[i, 0])
        assert (scores[i, k:] == 0).all() and (boxes[i, k:] == 0).all() and (classes[i, k:] == -1).all()
        assert (np.diff(scores[i, :k]) <= 0).all(), "detections sorted by score"
    for got, r in zip(backend.detect(demo_batch), ref):
        assert_same_detections(got, r, conf)


def test_nms_graph_caps_at_max_det_and_runs_in_openvino(demo_batch, yolov6n_model, tmp_path):
    """A low threshold floods the NMS: the output keeps the max_det best; OpenVINO runs the same graph."""
    iou, max_det = 0.6, 20
    x = demo_batch[:2]
    with torch.no_grad():
        raw = copy.deepcopy(yolov6n_model).fuse()(x)
    conf = round(float(raw[..., 4:].amax(-1).flatten().quantile(0.9)), 4)
    ref = _reference(raw, conf, iou, 10_000, False)
    assert all(len(r) > max_det for r in ref)
    ov_dir = export_model(yolov6n_model, "openvino", img_size=IMG, dynamic=True, nms=True, conf=conf, iou=iou,
                          max_det=max_det, output=tmp_path / "e2e_openvino_model")
    backend = load_backend(ov_dir, threads=2)
    assert backend.end2end
    for got, r in zip(backend.detect(x), ref):
        assert len(got) == max_det
        # the top max_det of the full NMS result (ties at the cut may swap: compare scores)
        assert torch.allclose(got[:, 4], r[:max_det, 4], atol=1e-4)
        assert_same_detections(got[:-3], r[:max_det - 3], conf)


def test_end2end_module_runs_eagerly(demo_batch, yolov6n_model):
    """Without exporting, the module computes the same thing in PyTorch (reference NMS)."""
    fused = copy.deepcopy(yolov6n_model).fuse()
    x = demo_batch[:2]
    with torch.no_grad():
        raw = fused(x)
        conf = _pick_conf(raw, 0.45, 100, False)
        num, boxes, scores, classes = End2End(fused, max_det=100, conf=conf, iou=0.45)(x)
    ref = _reference(raw, conf, 0.45, 100, False)
    for i, r in enumerate(ref):
        k = int(num[i, 0])
        got = torch.cat((boxes[i, :k], scores[i, :k, None], classes[i, :k, None].float()), 1)
        assert_same_detections(got, r, conf)


def test_raw_call_on_end2end_model_is_a_clear_error(yolov6n_model, tmp_path):
    from repyolo.errors import RepyoloError

    path = export_model(yolov6n_model, "onnx", img_size=128, nms=True, output=tmp_path / "e.onnx")
    with pytest.raises(RepyoloError, match="backend.detect"):
        load_backend(path)(torch.zeros(1, 3, 128, 128))
