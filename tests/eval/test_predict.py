"""``repyolo predict`` and the Python API: outputs, sources, and bad input (acceptance 4)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from eval_helpers import BoxBackend, scene, white_box, write_image

from repyolo.cli import main
from repyolo.data.media import resolve_sources


def _images(folder, n=2):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(write_image(folder / f"img{i}.png", scene(60 + 20 * i, 90, (10, 10, 40, 40), seed=i)))
    return paths


def _video(path, frames=4, size=(96, 64)):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    for i in range(frames):
        w.write(np.full((size[1], size[0], 3), 30 * i, np.uint8))
    w.release()
    return path


def _predict(*args):
    return main(["predict", *map(str, args)])


# ------------------------------------------------------------------ outputs


def test_predict_writes_images_txt_json(tmp_path, tiny_weights, repyolo_log):
    _images(tmp_path / "src", 2)
    code = _predict("--weights", tiny_weights, "--source", tmp_path / "src", "--img", 64, "--conf", 0.001,
                    "--max-det", 5, "--save-txt", "--save-json", "--project", tmp_path / "runs", "--name", "a")
    assert code == 0
    out = tmp_path / "runs" / "a"
    assert (out / "img0.png").exists() and (out / "img1.png").exists()
    rows = [ln.split() for ln in (out / "labels" / "img1.txt").read_text().splitlines()]
    assert 0 < len(rows) <= 5 and all(len(r) == 6 for r in rows)
    vals = np.array(rows, dtype=float)
    assert (vals[:, 1:5] >= 0).all() and (vals[:, 1:5] <= 1).all() and set(vals[:, 0]) <= {0, 1, 2}
    dets = json.loads((out / "predictions.json").read_text())
    assert {"image_id", "category_id", "bbox", "score", "file_name"} <= set(dets[0])
    assert len(dets) == sum(len(ln.splitlines()) for ln in
                            (f.read_text() for f in (out / "labels").glob("*.txt")))
    # a second run gets a new folder
    assert _predict("--weights", tiny_weights, "--source", tmp_path / "src" / "img0.png", "--img", 64,
                    "--project", tmp_path / "runs", "--name", "a") == 0
    assert (tmp_path / "runs" / "a2" / "img0.png").exists()
    assert "2 images/frames processed" in repyolo_log.text(0)


def test_predict_video_and_list_and_glob(tmp_path, tiny_weights):
    imgs = _images(tmp_path / "src", 2)
    video = _video(tmp_path / "clip.mp4")
    lst = tmp_path / "list.txt"
    lst.write_text(f"{imgs[0]}\nsrc/{imgs[1].name}\n")
    code = _predict("--weights", tiny_weights, "--source", video, lst, str(tmp_path / "src" / "*.png"),
                    "--img", 64, "--save-txt", "--conf", 0.001, "--max-det", 2, "--project", tmp_path, "--name", "r")
    assert code == 0
    out = tmp_path / "r"
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()
    assert len(list((out / "labels").glob("clip_*.txt"))) == 4
    assert (out / "img0.png").exists() and (out / "img0_2.png").exists()  # listed twice: two outputs


def test_resolve_sources_kinds(tmp_path):
    imgs = _images(tmp_path / "src", 2)
    entries = resolve_sources([str(imgs[0]), tmp_path / "src", "0", np.zeros((4, 4, 3), np.uint8)])
    assert [e.kind for e in entries] == ["image", "image", "image", "stream", "array"]
    assert entries[3].target == 0


# ------------------------------------------------------------------ bad input (acceptance 4)


def test_missing_weights(tmp_path, repyolo_log):
    _images(tmp_path / "src", 1)
    assert _predict("--weights", tmp_path / "nope.pt", "--source", tmp_path / "src", "--project", tmp_path) == 2
    msg = repyolo_log.text()
    assert "nope.pt" in msg and "not found" in msg and len(msg.splitlines()) == 1


def test_weights_not_a_checkpoint(tmp_path, repyolo_log):
    _images(tmp_path / "src", 1)
    bad = tmp_path / "bad.pt"
    bad.write_text("this is not a checkpoint")
    assert _predict("--weights", bad, "--source", tmp_path / "src", "--project", tmp_path) == 2
    msg = repyolo_log.text()
    assert "bad.pt" in msg and "checkpoint" in msg and len(msg.splitlines()) == 1
    # the same for val
    data = tmp_path / "d.yaml"
    data.write_text(f"path: {tmp_path}\ntrain: src\nval: src\nnames: [a, b, c]\n")
    assert main(["val", "--weights", str(bad), "--data", str(data), "--img", "64"]) == 2


def test_unreadable_image_among_good_ones(tmp_path, tiny_weights, repyolo_log):
    _images(tmp_path / "src", 2)
    (tmp_path / "src" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "src" / "empty.png").write_bytes(b"")
    code = _predict("--weights", tiny_weights, "--source", tmp_path / "src", "--img", 64,
                    "--project", tmp_path, "--name", "r")
    assert code == 0
    warn = repyolo_log.text()
    assert "broken.jpg" in warn and "empty.png" in warn
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["img0.png", "img1.png"]


def test_empty_folder(tmp_path, tiny_weights, repyolo_log):
    (tmp_path / "empty").mkdir()
    assert _predict("--weights", tiny_weights, "--source", tmp_path / "empty", "--project", tmp_path) == 2
    assert "no images or videos found" in repyolo_log.text()
    assert not (tmp_path / "exp").exists()  # nothing written


def test_video_that_cannot_be_opened(tmp_path, tiny_weights, repyolo_log):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x01garbage" * 100)
    assert _predict("--weights", tiny_weights, "--source", bad, "--project", tmp_path, "--img", 64) == 2
    assert "bad.mp4" in repyolo_log.text() and "cannot open video" in repyolo_log.text()
    # next to a good image: a warning, and the image is processed
    img = _images(tmp_path / "src", 1)[0]
    assert _predict("--weights", tiny_weights, "--source", bad, img, "--project", tmp_path, "--img", 64,
                    "--name", "ok") == 0
    assert (tmp_path / "ok" / "img0.png").exists()


def test_missing_source_path(tmp_path, tiny_weights, repyolo_log):
    assert _predict("--weights", tiny_weights, "--source", tmp_path / "nothing.jpg", "--project", tmp_path) == 2
    assert "nothing.jpg" in repyolo_log.text() and "no such file" in repyolo_log.text()


# ------------------------------------------------------------------ Python API


def test_detector_api_inputs_and_result(tmp_path):
    from repyolo.api import Detector

    det = Detector(BoxBackend(white_box, names=["a", "b", "c"]), img_size=256, conf=0.5)
    arr = scene(120, 200, (20, 30, 80, 90))
    path = write_image(tmp_path / "x.png", arr)
    res = det([arr, str(path)])
    assert len(res) == 2
    for r in res:
        assert r.orig_shape == (120, 200) and r.names == ["b"] and r.class_ids.tolist() == [1]
        np.testing.assert_allclose(r.boxes[0], (20, 30, 80, 90), atol=1.0)
        assert r.scores.dtype == np.float32 and r.boxes.shape == (1, 4)
    assert res[0].path is None and res[1].path == str(path)
    coco = res[1].to_coco(7, category_ids=[1, 5, 9])
    assert coco[0]["image_id"] == 7 and coco[0]["category_id"] == 5 and len(coco[0]["bbox"]) == 4
    canvas = res[0].plot()
    assert canvas.shape == arr.shape and canvas.dtype == np.uint8 and not np.array_equal(canvas, arr)
    assert det(path)[0].summary() == "1 b"
    with pytest.raises(Exception, match="no such file"):
        det(str(tmp_path / "missing.png"))


def test_predict_to_dir(tmp_path):
    from repyolo.engine.predictor import predict_to_dir

    imgs = _images(tmp_path / "src", 2)
    out = predict_to_dir(BoxBackend(white_box), [str(p) for p in imgs], tmp_path / "pred", img_size=128,
                         conf=0.5, save_txt=True, save_json=True)
    assert out == tmp_path / "pred"
    assert sorted(p.name for p in out.glob("*.png")) == ["img0.png", "img1.png"]
    dets = json.loads((out / "predictions.json").read_text())
    assert [d["image_id"] for d in dets] == ["img0", "img1"] and all(d["category_id"] == 1 for d in dets)
    row = (out / "labels" / "img0.txt").read_text().split()
    assert row[0] == "1" and len(row) == 6
    np.testing.assert_allclose([float(v) for v in row[1:5]], [25 / 90, 25 / 60, 30 / 90, 30 / 60], atol=0.02)


@pytest.mark.parametrize("shape", [(200, 300), (333, 120), (480, 640), (97, 211), (256, 256), (150, 500)])
def test_rect_letterbox_maps_boxes_back_like_the_square_one(shape):
    """The minimal-padding letterbox (the default) only changes where the image sits in the input:
    a box found in the input maps back to the same original pixels (<= 1 px) as with the square
    letterbox, and the input is never larger than the square one."""
    from repyolo.engine.predictor import Predictor

    h, w = shape
    box = (w // 5, h // 4, w // 5 + max(w // 3, 4), h // 4 + max(h // 3, 4))
    img = scene(h, w, box, seed=3)
    results = {}
    for rect in (True, False):
        backend = BoxBackend(white_box)
        p = Predictor(backend, img_size=320, conf_thres=0.5, rect=rect)
        (dets,), _ = p.predict_arrays([img])
        assert len(dets) == 1
        results[rect] = (dets[0, :4], backend.calls[0])
    (rect_box, rect_shape), (square_box, square_shape) = results[True], results[False]
    assert np.abs(rect_box - square_box).max() <= 1.0
    assert np.abs(rect_box - np.array(box)).max() <= 1.0 + max(h, w) / 320  # resize rounding
    assert square_shape[2:] == (320, 320) and all(r <= s for r, s in zip(rect_shape[2:], square_shape[2:]))
    assert all(v % 32 == 0 for v in rect_shape[2:])


def test_prefetching_keeps_order_and_reports_unreadable_files(tmp_path):
    from repyolo.engine.predictor import Predictor

    paths = _images(tmp_path / "src", 5)
    (tmp_path / "src" / "img9.png").write_bytes(b"not an image")
    warnings = []
    got = [f.path for f, _ in Predictor(BoxBackend(white_box), img_size=96).stream(tmp_path / "src", warn=warnings)]
    assert got == [str(p) for p in paths]
    assert len(warnings) == 1 and "img9.png" in warnings[0]


def test_background_writer_writes_everything_in_order(tmp_path):
    from repyolo.engine.predictor import Predictor
    from repyolo.engine.results import PredictionWriter

    paths = _images(tmp_path / "src", 6)
    writer = PredictionWriter(tmp_path / "out", save_txt=True, save_json=True, background=True)
    try:
        for frame, result in Predictor(BoxBackend(white_box), img_size=96, conf_thres=0.5).stream(tmp_path / "src"):
            writer.add(frame, result)
    finally:
        writer.close()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted(p.name for p in paths)
    names = [d["file_name"] for d in json.loads((tmp_path / "out" / "predictions.json").read_text())]
    assert names == [str(p) for p in paths]
