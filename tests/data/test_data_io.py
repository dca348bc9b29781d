"""Image decoding: EXIF orientation, grayscale, RGBA, 16-bit, very large images, clear errors."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from repyolo.data import DetectionDataset, read_image
from repyolo.errors import DataError


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :10] = (255, 0, 0)  # red stripe on the left of the stored pixels
    exif = Image.Exif()
    exif[274] = 6  # display rotated 90 degrees clockwise
    Image.fromarray(a).save(tmp_path / "r.jpg", exif=exif, quality=95)
    img = read_image(tmp_path / "r.jpg")
    assert img.shape == (40, 20, 3)  # displayed size
    assert img[:10, :, 0].mean() > 200 and img[:10, :, 1].mean() < 60  # stripe now on top, red (RGB order)
    # a label written for the displayed image lands on the stripe
    (tmp_path / "r.txt").write_text("0 0.5 0.125 1.0 0.25\n")
    ds = DetectionDataset(tmp_path / "r.jpg", names=["stripe"], img_size=40, label_cache=False)
    assert tuple(ds.shapes[0]) == (40, 20)
    np.testing.assert_allclose(ds.labels[0], [[0, 0, 0, 20, 10]])


def test_gray_rgba_16bit_become_rgb_uint8(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.full((5, 6), 77, np.uint8))
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 2] = 200  # red in BGRA order
    rgba[..., 3] = 0  # fully transparent: colour is kept, alpha dropped
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    cv2.imwrite(str(tmp_path / "d.png"), np.full((5, 6, 3), 40000, np.uint16))
    cv2.imwrite(str(tmp_path / "d1.tif"), np.full((5, 6), 65535, np.uint16))
    g, a, d, d1 = (read_image(tmp_path / n) for n in ("g.png", "a.png", "d.png", "d1.tif"))
    for im in (g, a, d, d1):
        assert im.dtype == np.uint8 and im.shape == (5, 6, 3)
    assert (g == 77).all()
    assert (a[..., 0] == 200).all() and (a[..., 1:] == 0).all()
    assert (d == 40000 >> 8).all() and (d1 == 255).all()


def test_very_large_jpeg_is_decoded_reduced(tmp_path, monkeypatch):
    big = np.zeros((4000, 6000, 3), np.uint8)
    big[1000:3000, 1500:4500] = 255
    cv2.imwrite(str(tmp_path / "big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 50])
    (tmp_path / "big.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    ds = DetectionDataset(tmp_path / "big.jpg", names=["sq"], img_size=320, label_cache=False)
    assert tuple(ds.shapes[0]) == (4000, 6000)
    import repyolo.data.dataset as dataset_mod

    calls = []
    real = dataset_mod.decode_image
    monkeypatch.setattr(dataset_mod, "decode_image", lambda p, reduce=1: calls.append(reduce) or real(p, reduce))
    img, labels, _, meta = ds[0]
    assert calls == [8]  # the JPEG decoder shrinks it 8x (750x500) before the resize to 320
    assert img.shape == (3, 320, 320) and meta["ratio"] == pytest.approx(320 / 6000)
    ry, top = 213 / 4000, (320 - 213) // 2  # 6000x4000 -> 320x213, centred
    assert meta["pad"] == (0, top)
    np.testing.assert_allclose(labels[0, 1:].numpy(), [80, 1000 * ry + top, 240, 3000 * ry + top], atol=1e-3)
    x1, y1, x2, y2 = labels[0, 1:].int().tolist()
    assert img[:, y1 + 2:y2 - 2, x1 + 2:x2 - 2].float().mean() > 240


@pytest.mark.parametrize("content, match", [
    (b"", "empty image file"),
    (b"plain text, not an image", "cannot decode image"),
])
def test_read_image_errors_name_the_file(tmp_path, content, match):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(DataError, match=match) as exc:
        read_image(p)
    assert str(p) in str(exc.value)
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="unsupported image format"):
        read_image(tmp_path / "x.heic")
