"""Property tests of the geometric augmentations: boxes stay inside the image, match what is
drawn (a filled rectangle's box equals its pixels' extent), and are never NaN or negative."""
from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from repyolo.data.augment import (
    augment_hsv,
    clipped_quad_boxes,
    fliplr,
    flipud,
    letterbox,
    letterbox_geometry,
    mixup,
    mosaic4,
    random_affine,
    random_flip,
    scale_labels,
)

SETTINGS = settings(max_examples=30, deadline=None)
WHITE = 255


def _rect_image(h, w, box, colour=(WHITE, WHITE, WHITE), background=0):
    img = np.full((h, w, 3), background, np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = colour
    return img


def _mask_box(img, colour=(WHITE, WHITE, WHITE), thr=60, outside=False):
    """Extent ``[x1, y1, x2, y2]`` (pixel edges) of pixels close to ``colour`` (``outside``: at least
    ``thr`` away from it), or None."""
    d = np.abs(img.astype(np.int32) - np.array(colour)).max(-1)
    ys, xs = np.nonzero(d >= thr if outside else d < thr)
    if not len(xs):
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _check_boxes(labels, shape):
    assert labels.dtype == np.float32 and labels.ndim == 2 and labels.shape[1] == 5
    assert np.isfinite(labels).all()
    h, w = shape[:2]
    b = labels[:, 1:]
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    assert (b >= 0).all() and (b[:, [0, 2]] <= w).all() and (b[:, [1, 3]] <= h).all()


@st.composite
def image_with_rect(draw, min_side=16, max_side=160, min_rect=3):
    """``(h, w, (x1, y1, x2, y2))``: an image size and a rectangle at least ``min_rect`` px wide and high."""
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    x1 = draw(st.integers(0, w - min_rect))
    y1 = draw(st.integers(0, h - min_rect))
    x2 = draw(st.integers(x1 + min_rect, w))
    y2 = draw(st.integers(y1 + min_rect, h))
    return h, w, (x1, y1, x2, y2)


@SETTINGS
@given(image_with_rect(), st.integers(16, 200), st.integers(16, 200), st.booleans(), st.booleans(), st.booleans())
def test_letterbox_boxes_follow_content(spec, H, W, auto, scaleup, center):
    h, w, box = spec
    img = _rect_image(h, w, box)
    out, g = letterbox(img, (H, W), auto=auto, scaleup=scaleup, center=center, stride=8)
    assert g == letterbox_geometry((h, w), (H, W), auto=auto, scaleup=scaleup, stride=8, center=center)
    (nw, nh), (left, top), r = g.size, g.pad[:2], g.ratio
    assert out.shape == (nh + g.pad[1] + g.pad[3], nw + g.pad[0] + g.pad[2], 3)
    if not auto:
        assert out.shape[:2] == (H, W)
    else:
        assert out.shape[0] - nh < 8 and out.shape[1] - nw < 8
    if left or top:  # the border is gray 114
        assert (out[top:top + 1, :left] == 114).all() and (out[:top, left:left + 1] == 114).all()
    labels = scale_labels(np.array([[0, *box]], np.float32), g.ratio_xy, (left, top))
    _check_boxes(labels, out.shape)
    seen = _mask_box(out, thr=100)
    if seen is not None and (labels[0, 3] - labels[0, 1]) >= 2 and (labels[0, 4] - labels[0, 2]) >= 2:
        np.testing.assert_allclose(seen, labels[0, 1:], atol=1.0 + 0.5 * max(r, 1.0))  # edges blur over 1 src px
    back = (labels[0, 1:].reshape(2, 2) - (left, top)) / g.ratio_xy  # original pixels again (exact gains)
    np.testing.assert_allclose(back.ravel(), box, atol=1e-3)


def test_letterbox_stretch_trick():
    img = np.zeros((470, 641, 3), np.uint8)  # nearly the 480x640 target aspect
    out, g = letterbox(img, (480, 640))
    assert out.shape == (480, 640, 3) and g.pad[:2] == (0, 5) and not g.stretched  # padded by default
    out, g = letterbox(img, (480, 640), stretch_tol=0.03)
    assert out.shape == (480, 640, 3) and g.pad[:2] == (0, 0) and abs(g.ratio - 640 / 641) < 1e-9 and g.stretched
    out, g = letterbox(np.zeros((300, 640, 3), np.uint8), (480, 640), stretch_tol=0.03)  # other aspect: pads
    assert g.pad[:2] == (0, 90) and g.ratio == 1.0


@SETTINGS
@given(image_with_rect(32, 160, min_rect=8), st.floats(0, 45), st.floats(0, 0.3), st.floats(0, 0.6), st.floats(0, 10),
       st.integers(0, 2 ** 31), st.sampled_from([None, (96, 128)]))
def test_random_affine_box_matches_rectangle(spec, degrees, translate, scale, shear, seed, out_shape):
    h, w, box = spec
    img = _rect_image(h, w, box, background=114)  # same gray as the border: every touched pixel shows
    labels = np.array([[3, *box]], np.float32)
    out, new = random_affine(img, labels, degrees, translate, scale, shear, out_shape=out_shape,
                             rng=np.random.default_rng(seed))
    assert out.shape[:2] == (out_shape or (h, w))
    _check_boxes(new, out.shape)
    seen = _mask_box(out, (114, 114, 114), thr=6, outside=True)  # pixels with any of the rectangle
    if len(new):
        assert new[0, 0] == 3
        assert seen is not None
        np.testing.assert_allclose(seen, new[0, 1:], atol=2.5)  # bilinear blur: up to 1 source px (scaled)
    else:  # dropped: little or nothing of it is left, or it became a sliver
        if seen is not None:
            sw, sh = seen[2] - seen[0], seen[3] - seen[1]
            small = sw * sh < 0.2 * (box[2] - box[0]) * (box[3] - box[1]) * (1 + scale) ** 2
            assert small or sw <= 4 or sh <= 4 or max(sw / sh, sh / sw) > 12


@SETTINGS
@given(image_with_rect(), st.booleans(), st.booleans())
def test_flips_box_matches_rectangle(spec, lr, ud):
    h, w, box = spec
    img = _rect_image(h, w, box)
    labels = np.array([[1, *box]], np.float32)
    out, new = img, labels
    if lr:
        out, new = fliplr(out, new)
    if ud:
        out, new = flipud(out, new)
    _check_boxes(new, out.shape)
    np.testing.assert_allclose(_mask_box(out), new[0, 1:], atol=1e-4)
    back_img, back = out, new
    if ud:
        back_img, back = flipud(back_img, back)
    if lr:
        back_img, back = fliplr(back_img, back)
    assert (back_img == img).all()
    np.testing.assert_allclose(back, labels)
    out, new = random_flip(img, labels, 1.0, 1.0, np.random.default_rng(0))  # both certainly
    np.testing.assert_allclose(_mask_box(out), new[0, 1:], atol=1e-4)


COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


@SETTINGS
@given(st.lists(image_with_rect(8, 64), min_size=4, max_size=4), st.integers(0, 2 ** 31), st.integers(16, 64))
def test_mosaic_boxes_match_tiles(specs, seed, size):
    imgs, labels = [], []
    for k, (h, w, box) in enumerate(specs):
        imgs.append(_rect_image(h, w, box, COLOURS[k]))
        labels.append(np.array([[k, *box]], np.float32))
    canvas, out = mosaic4(imgs, labels, size, np.random.default_rng(seed))
    assert canvas.shape == (2 * size, 2 * size, 3)
    _check_boxes(out, canvas.shape)
    assert len(set(out[:, 0].tolist())) == len(out)  # at most one box per tile
    for row in out:
        seen = _mask_box(canvas, COLOURS[int(row[0])], thr=1)
        np.testing.assert_allclose(seen, row[1:], atol=1e-4)
    for k in set(range(4)) - set(out[:, 0].astype(int).tolist()):  # dropped: (almost) not visible
        seen = _mask_box(canvas, COLOURS[k], thr=1)
        h, w, box = specs[k]
        area = (box[2] - box[0]) * (box[3] - box[1])
        assert seen is None or (seen[2] - seen[0]) * (seen[3] - seen[1]) < 0.1 * area + 1e-6


@SETTINGS
@given(image_with_rect(16, 64), image_with_rect(16, 64), st.integers(0, 2 ** 31))
def test_mixup_keeps_both_boxes(a, b, seed):
    h, w = 64, 64
    img1 = _rect_image(h, w, a[2][:2] + tuple(min(v, 64) for v in a[2][2:]))
    img2 = _rect_image(h, w, b[2][:2] + tuple(min(v, 64) for v in b[2][2:]))
    l1 = np.array([[0, *a[2]]], np.float32).clip(0, 64)
    l2 = np.array([[1, *b[2]]], np.float32).clip(0, 64)
    l1 = l1[(l1[:, 3] > l1[:, 1]) & (l1[:, 4] > l1[:, 2])]
    l2 = l2[(l2[:, 3] > l2[:, 1]) & (l2[:, 4] > l2[:, 2])]
    out, lab = mixup(img1, l1, img2, l2, np.random.default_rng(seed))
    assert out.shape == img1.shape and out.dtype == np.uint8
    assert len(lab) == len(l1) + len(l2)
    _check_boxes(lab, out.shape)
    lo = np.minimum(img1, img2).astype(int)
    hi = np.maximum(img1, img2).astype(int)
    assert ((out >= lo - 1) & (out <= hi + 1)).all()  # a convex blend of the two


@SETTINGS
@given(st.integers(0, 255), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.integers(0, 2 ** 31))
def test_hsv_keeps_gray_gray_and_shape(level, hg, sg, vg, seed):
    img = np.full((8, 8, 3), level, np.uint8)
    out = augment_hsv(img.copy(), hg, sg, vg, np.random.default_rng(seed))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert int(out.max(-1).max()) - int(out.min(-1).min()) <= 2  # no hue appears out of gray
    same = augment_hsv(img.copy(), 0, 0, 0, np.random.default_rng(seed))
    assert (same == img).all()


def test_degenerate_quad_edge_warns_nothing():
    """An edge shorter than any normal float (what a strong shear can produce) is no border crossing:
    no numpy overflow warning in the training log, and the box is the other corners'."""
    quad = np.array([[[0, 5], [1e-310, 5], [20, 20], [0, 20]]], np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clipped_quad_boxes(quad, 64, 64).tolist() == [[0, 5, 20, 20]]
