"""DetectionDataset + loader: collate contract, determinism/resume, DDP shards, rect batches,
close-mosaic switch, RAM cache, and boxes that stay tight on the content through the full
training pipeline."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from repyolo.data import DetectionDataset, build_dataloader, collate_fn, generate_synthetic, set_loader_epoch
from repyolo.data.config import load_data_config

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("synth"), n_train=12, n_val=5, img_size=96, seed=1)


@pytest.fixture(scope="module")
def rects(tmp_path_factory) -> Path:
    """Images of various aspects, each with 1-2 solid rectangles whose class = colour index."""
    root = tmp_path_factory.mktemp("rects")
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for i in range(10):
        h, w = int(rng.integers(60, 140)), int(rng.integers(60, 140))
        img = np.zeros((h, w, 3), np.uint8)
        lines = []
        for half in range(int(rng.integers(1, 3))):  # second box in the right half, first in the left
            c = int(rng.integers(0, 6))
            lo, hi = (0, w // 2) if half == 0 else (w // 2, w)
            x1, y1 = int(rng.integers(lo, hi - 12)), int(rng.integers(0, h - 20))
            x2, y2 = x1 + int(rng.integers(12, hi - x1 + 1)), y1 + int(rng.integers(12, h - y1 + 1))
            img[y1:y2, x1:x2] = COLOURS[c]
            lines.append(f"{c} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}")
        cv2.imwrite(str(root / "images" / f"{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        (root / "labels" / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    return root / "images"


def test_getitem_and_collate_contract(synth):
    cfg = load_data_config(synth)
    ds = cfg.dataset("train", img_size=96, augment=True)
    img, labels, path, meta = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 96, 96)
    assert labels.dtype == torch.float32 and labels.shape[1] == 5
    assert isinstance(path, str) and set(meta) >= {"orig_shape", "ratio", "pad"}
    imgs, targets, paths, metas = collate_fn([ds[i] for i in range(4)])
    assert imgs.shape == (4, 3, 96, 96) and imgs.dtype == torch.uint8
    assert targets.dtype == torch.float32 and targets.shape[1] == 6
    assert set(targets[:, 0].long().tolist()) <= {0, 1, 2, 3}
    assert len(paths) == len(metas) == 4
    # different-size images are padded right/bottom
    a = (torch.zeros(3, 32, 40, dtype=torch.uint8), torch.zeros(0, 5), "a", {})
    b = (torch.zeros(3, 48, 32, dtype=torch.uint8), torch.ones(2, 5), "b", {})
    imgs, targets, _, _ = collate_fn([a, b])
    assert imgs.shape == (2, 3, 48, 40) and (imgs[0, :, 32:] == 114).all() and targets[:, 0].tolist() == [1, 1]


def _epoch(loader, epoch):
    set_loader_epoch(loader, epoch)
    return [(imgs.clone(), targets.clone(), paths) for imgs, targets, paths, _ in loader]


def _same(a, b):
    return len(a) == len(b) and all(x[2] == y[2] and torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
                                    for x, y in zip(a, b))


def test_deterministic_per_seed_and_epoch_whatever_the_workers(synth):
    cfg = load_data_config(synth)
    make = lambda: cfg.dataset("train", img_size=64, augment=True, hyp={"mixup": 0.5, "degrees": 5})  # noqa: E731
    l0 = build_dataloader(make(), batch_size=4, workers=0, seed=3)
    l2 = build_dataloader(make(), batch_size=4, workers=2, seed=3)
    e1_a, e1_b = _epoch(l0, 1), _epoch(l2, 1)
    assert _same(e1_a, e1_b)  # 0 vs 2 workers: identical batches
    assert not _same(e1_a, _epoch(l0, 2))  # another epoch: another order/augmentation
    resumed = build_dataloader(make(), batch_size=4, workers=0, seed=3)
    assert _same(_epoch(resumed, 1), e1_a)  # a fresh loader at the same epoch = exact resume
    other_seed = build_dataloader(make(), batch_size=4, workers=0, seed=4)
    assert not _same(_epoch(other_seed, 1), e1_a)


def test_distributed_shards_are_disjoint(synth):
    ds = load_data_config(synth).dataset("train", img_size=64)
    seen = []
    for rank in range(2):
        loader = build_dataloader(ds, batch_size=2, workers=0, seed=0, rank=rank, world_size=2)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        set_loader_epoch(loader, 0)
        seen.append([p for _, _, paths, _ in loader for p in paths])
    assert not set(seen[0]) & set(seen[1]) and len(seen[0]) + len(seen[1]) == len(ds)


def test_rect_batches_and_metas_map_back_to_original_pixels(rects):
    ds = DetectionDataset(rects, img_size=128, rect=True, batch_size=4, stride=32, names=[str(i) for i in range(6)])
    ar = ds.shapes[:, 0] / ds.shapes[:, 1]
    assert (np.diff(ar) >= 0).all()  # sorted by aspect
    assert ds.batch_shapes.shape == (3, 2) and (ds.batch_shapes % 32 == 0).all()
    loader = build_dataloader(ds, batch_size=4, workers=0, shuffle=True)  # shuffle ignored for rect
    k = 0
    for b, (imgs, targets, paths, metas) in enumerate(loader):
        assert tuple(imgs.shape[2:]) == tuple(ds.batch_shapes[b])
        for j, meta in enumerate(metas):
            i = k + j
            assert paths[j] == ds.im_files[i] and meta["orig_shape"] == tuple(ds.shapes[i])
            t = targets[targets[:, 0] == j, 2:].numpy()
            pad = np.array(meta["pad"] * 2, np.float32)
            back = (t - pad) / meta["ratio"]
            np.testing.assert_allclose(back, ds.labels[i][:, 1:], atol=1.0)
            # content check: the box sits on its colour in the network input
            img = imgs[j].permute(1, 2, 0).numpy()
            for c, (x1, y1, x2, y2) in zip(targets[targets[:, 0] == j, 1].long().tolist(), t):
                patch = img[int(y1) + 2:int(y2) - 2, int(x1) + 2:int(x2) - 2].reshape(-1, 3)
                if len(patch):
                    assert (np.abs(patch.astype(int) - COLOURS[c]).max(-1) < 40).mean() > 0.3
        k += len(paths)
    assert k == len(ds)


def test_training_pipeline_boxes_tight_on_content(rects):
    hyp = dict(hsv_h=0, hsv_s=0, hsv_v=0, degrees=10, shear=3, mosaic=1.0, mixup=0.0, flipud=0.5)
    ds = DetectionDataset(rects, img_size=128, augment=True, hyp=hyp, names=[str(i) for i in range(6)])
    n_boxes = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            img, labels, _, meta = ds[i]
            assert meta["mosaic"]
            img = img.permute(1, 2, 0).numpy()
            lab = labels.numpy()
            assert np.isfinite(lab).all() and (lab[:, 3] > lab[:, 1]).all() and (lab[:, 4] > lab[:, 2]).all()
            assert (lab[:, 1:] >= 0).all() and (lab[:, 1:] <= 128).all()
            for c, x1, y1, x2, y2 in lab:
                x1i, y1i, x2i, y2i = int(np.floor(x1)), int(np.floor(y1)), int(np.ceil(x2)), int(np.ceil(y2))
                region = np.abs(img[y1i:y2i, x1i:x2i].astype(int) - COLOURS[int(c)]).max(-1) < 40
                ys, xs = np.nonzero(region)
                assert len(xs), "box on no pixel of its colour"
                got = np.array([xs.min() + x1i, ys.min() + y1i, xs.max() + 1 + x1i, ys.max() + 1 + y1i])
                if min(x2 - x1, y2 - y1) >= 6:  # slivers at a border are all anti-aliased edge
                    np.testing.assert_allclose(got, [x1, y1, x2, y2], atol=3.0)
                    n_boxes += 1
    assert n_boxes > 20


def test_close_mosaic_switch(synth):
    ds = load_data_config(synth).dataset("train", img_size=64, augment=True)
    ds.set_epoch(7)
    assert ds.hyp["mosaic"] == 1.0
    assert any(ds[i][3]["mosaic"] for i in range(4))
    ds.set_epoch(8, strong_aug=False)
    assert ds.hyp["mosaic"] == 0.0 and ds.hyp["mixup"] == 0.0
    assert not any(ds[i][3]["mosaic"] for i in range(len(ds)))
    ds.set_epoch(3)  # a resume before the switch turns it back on
    assert ds.hyp["mosaic"] == 1.0


def test_recipe_decides_close_mosaic():
    """The recipe is the one place that decides how many final epochs run without mosaic."""
    from repyolo.cfg.settings import Hyp
    from repyolo.engine.recipe import resolve_recipe

    assert resolve_recipe(Hyp(recipe="yolov6"), 32, 100, 300).close_mosaic == 15
    assert resolve_recipe(Hyp(recipe="small"), 32, 10, 20).close_mosaic == 4  # at most ~1/5 of a short run
    assert resolve_recipe(Hyp(recipe="small", close_mosaic=2), 32, 10, 20).close_mosaic == 2


def test_ram_cache_gives_the_same_samples(synth):
    cfg = load_data_config(synth)
    a = cfg.dataset("val", img_size=64, augment=True)
    b = cfg.dataset("val", img_size=64, augment=True, cache="ram")
    assert b.ims is not None and len(b.ims) == len(b)
    for i in range(len(a)):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])
    # same size as stored, no mosaic, identity affine: the cached array itself reaches the HSV step
    c = cfg.dataset("val", img_size=96, augment=True, cache="ram",
                    hyp=dict(mosaic=0, translate=0, scale=0, fliplr=0))
    before = [im.copy() for im in c.ims]
    first = c[0][0]
    assert all((x == y).all() for x, y in zip(before, c.ims)) and torch.equal(first, c[0][0])


def test_image_ids_and_coco_gt(synth, rects):
    ds = load_data_config(synth).dataset("val")
    assert ds.image_ids == list(range(len(ds)))  # non-numeric stems: index
    gt = ds.coco_gt()
    assert [im["id"] for im in gt["images"]] == ds.image_ids
    assert len(gt["annotations"]) == sum(len(lab) for lab in ds.labels)
    assert [c["id"] for c in gt["categories"]] == ds.category_ids == [0, 1, 2, 3, 4]
    a = gt["annotations"][0]
    lab = ds.labels[0][0]
    assert a["bbox"] == pytest.approx([lab[1], lab[2], lab[3] - lab[1], lab[4] - lab[2]])
    assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])
    rect_ds = DetectionDataset(rects, names=[str(i) for i in range(6)], rect=True, batch_size=4)
    assert sorted(rect_ds.image_ids) == list(range(10))  # numeric stems, kept through the rect re-order
    assert all(int(Path(f).stem) == i for f, i in zip(rect_ds.im_files, rect_ds.image_ids))
