"""Acceptance 2: boxes map back to the same original pixels whatever the letterbox, and a
batch gives what single images give."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_helpers import BoxBackend, gray_content_box, scene, white_box

from repyolo.engine.predictor import Predictor
from repyolo.ops.postprocess import scale_boxes


@pytest.mark.parametrize("img_size", [128, 256, 320])
@pytest.mark.parametrize("rect", [False, True])
def test_known_box_maps_back(img_size, rect):
    box = (70, 40, 150, 110)
    img = scene(200, 300, box)
    pred = Predictor(BoxBackend(white_box), img_size=img_size, rect=rect, conf_thres=0.5)
    r = pred(img)[0]
    assert r.orig_shape == (200, 300) and r.class_ids.tolist() == [1] and r.names == ["b"]
    np.testing.assert_allclose(r.boxes[0], box, atol=1.0)


def test_rescaled_and_padded_variants_agree():
    """The same scene as the original, resized, and with borders added: every prediction maps to
    the object's place in that variant (checked in the original frame within 1 px). The fake
    detector finds the object to +-0.5 input pixel, so inputs are not shrunk (img 640)."""
    import cv2

    box = np.array([70, 40, 150, 110], dtype=np.float64)
    img = scene(200, 300, tuple(int(v) for v in box))
    pred = Predictor(BoxBackend(white_box), img_size=640, conf_thres=0.5)
    got = pred(img)[0].boxes[0]
    np.testing.assert_allclose(got, box, atol=1.0)
    for s in (0.7, 1.6, 2.3):  # resized variants: predictions / s land on the original box
        big = cv2.resize(img, (round(300 * s), round(200 * s)), interpolation=cv2.INTER_NEAREST)
        b = pred(big)[0].boxes[0] / np.array([big.shape[1] / 300, big.shape[0] / 200] * 2)
        np.testing.assert_allclose(b, box, atol=1.0)
    for top, left in ((0, 100), (90, 0), (37, 211)):  # padded variants: shifted by the border
        padded = cv2.copyMakeBorder(img, top, 13, left, 29, cv2.BORDER_CONSTANT, value=(20, 20, 20))
        b = pred(padded)[0].boxes[0] - np.array([left, top, left, top])
        np.testing.assert_allclose(b, box, atol=1.0)


@pytest.mark.parametrize("rect", [False, True])
def test_batch_equals_single(rect):
    shapes = [(200, 300), (333, 120), (64, 64), (480, 640), (97, 211)]
    imgs = [scene(h, w, (w // 4, h // 3, w // 2, 2 * h // 3), seed=i) for i, (h, w) in enumerate(shapes)]
    single = Predictor(BoxBackend(white_box), img_size=192, rect=rect, conf_thres=0.5)
    batched = Predictor(BoxBackend(white_box), img_size=192, rect=rect, conf_thres=0.5, batch_size=3)
    one = [single(im)[0] for im in imgs]
    many = batched(imgs)
    assert len(many) == len(one) == 5
    for a, b in zip(one, many):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        assert a.orig_shape == b.orig_shape
    assert max(s[0] for s in batched.backend.calls) == 3  # really ran batches of 3


def test_full_image_content_maps_to_image_bounds():
    """The non-padding region of the network input maps back to exactly ``[0, 0, w0, h0]``."""
    for h, w in ((200, 300), (301, 97), (640, 480), (15, 700)):
        img = np.random.default_rng(h).integers(0, 100, (h, w, 3), dtype=np.uint8)
        r = Predictor(BoxBackend(gray_content_box), img_size=224, conf_thres=0.5)(img)[0]
        np.testing.assert_allclose(r.boxes[0], [0, 0, w, h], atol=1e-3)


def test_fixed_input_and_batch_backend():
    """A runtime with a fixed input (e.g. a static ONNX model): letterbox to it, pad the batch."""
    backend = BoxBackend(white_box, img_size=(160, 160), batch=4)
    img = scene(200, 300, (70, 40, 150, 110))
    res = Predictor(backend, img_size=640, conf_thres=0.5, batch_size=2)([img, img])
    assert backend.calls == [(4, 3, 160, 160)]
    for r in res:
        np.testing.assert_allclose(r.boxes[0], (70, 40, 150, 110), atol=1.0)


def test_scale_boxes_inverts_the_letterbox():
    from repyolo.data.augment import letterbox

    rng = np.random.default_rng(0)
    for _ in range(20):
        h0, w0 = (int(v) for v in rng.integers(20, 900, 2))
        img = np.zeros((h0, w0, 3), np.uint8)
        out, geom = letterbox(img, int(rng.choice([128, 320, 640])), auto=bool(rng.integers(2)))
        (nw, nh), pad = geom.size, geom.pad[:2]
        assert geom.meta() == {"orig_shape": (h0, w0), "ratio": (nw / w0, nh / h0), "pad": pad}
        xy = rng.uniform(0, 1, (10, 4)) * [w0, h0, w0, h0]
        boxes = np.concatenate((np.minimum(xy[:, :2], xy[:, 2:]), np.maximum(xy[:, :2], xy[:, 2:])), 1)
        gain = np.array([nw / w0, nh / h0] * 2)
        inp = boxes * gain + np.array([pad[0], pad[1]] * 2)
        meta = {"orig_shape": (h0, w0), "ratio": (nw / w0, nh / h0), "pad": pad}
        np.testing.assert_allclose(scale_boxes(inp.astype(np.float32), meta), boxes, atol=1e-2)
        # (a scalar ratio alone is off by up to ~0.5 / r px because the resized size is rounded:
        # the geometry therefore carries per-axis gains)
        back = scale_boxes(torch.as_tensor(inp), meta).numpy()
        np.testing.assert_allclose(back, boxes, atol=1e-2)
    # clipping to the original image
    meta = {"orig_shape": (100, 200), "ratio": 0.5, "pad": (0, 10)}
    out = scale_boxes(torch.tensor([[-5.0, 0.0, 150.0, 80.0, 0.9, 2.0]]), meta)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, 200.0, 100.0, 0.9, 2.0]]))


def test_end_to_end_backend_maps_back():
    from eval_helpers import EndToEndBackend

    img = scene(200, 300, (70, 40, 150, 110))
    backend = EndToEndBackend(white_box)
    r = Predictor(backend, img_size=256, conf_thres=0.5, classes=[1])(img)[0]
    np.testing.assert_allclose(r.boxes[0], (70, 40, 150, 110), atol=1.0)
    assert Predictor(backend, img_size=256, conf_thres=0.5, classes=[0])(img)[0].boxes.shape == (0, 4)
