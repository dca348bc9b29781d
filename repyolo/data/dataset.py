"""The detection data set: checked samples, training augmentation, evaluation letterbox.

``DetectionDataset(sources, ...)[i]`` returns ``(img, labels, path, meta)``:

* ``img``: uint8 ``(3, H, W)`` RGB tensor, the network input;
* ``labels``: float32 ``(n, 5)`` ``[class, x1, y1, x2, y2]`` in network-input pixels;
* ``meta``: ``orig_shape (h0, w0)``, ``ratio`` (gain applied), ``pad (left, top)`` so that
  original pixels are ``(xy - pad) / ratio``, plus ``shape`` ``(H, W)`` and ``mosaic``.

Training (``augment=True``): mosaic (probability ``hyp['mosaic']``) + random affine, or a
letterbox + random affine; then mixup, HSV jitter and flips. Each sample's randomness is
drawn from a generator seeded with ``(seed, epoch, index)``, so the augmentation of an epoch
is the same whatever the number of workers and after a resume.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from repyolo.cfg.settings import Hyp
from repyolo.data.augment import augment_hsv, letterbox, mixup, mosaic4, random_affine, random_flip, scale_labels
from repyolo.data.check import check_samples, default_cache_path
from repyolo.data.io import decode_image
from repyolo.data.sources import collect_samples
from repyolo.errors import DataError
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


class DetectionDataset(torch.utils.data.Dataset):
    """Images and boxes of one or more sources (folders, list files, COCO json files).

    Args:
        sources: a path or list of paths (see :func:`repyolo.data.sources.collect_samples`).
        img_size: network input size (long side; square for training).
        augment: training augmentation with ``hyp`` (the augmentation keys of
            :class:`~repyolo.cfg.settings.Hyp`; missing keys take its defaults).
        rect: rectangular evaluation batches (images sorted by aspect, one shape per batch of
            ``batch_size``, a multiple of ``stride`` with ``pad`` strides of margin).
        cache: ``'ram'`` keeps the resized images in memory.
        names: class names (``nc = len(names)``); taken from the json for COCO sources.
        workers: threads for checking / caching.
        image_root: folder COCO ``file_name``s resolve against; root: data set root for list files.
        seed: augmentation seed (the loader sets it); stretch_tol: see :func:`letterbox`
            (evaluation trick, off by default).
        reduced_decode: let the JPEG decoder shrink a large photo by 2, 4 or 8 while decoding (fast)
            before the final resize; ``False`` decodes at full size and resizes with INTER_AREA only
            (slower; the pixels most deployment pipelines, e.g. the official YOLOv6 ones, feed).
        label_cache: read/write the check cache.
    Attributes:
        im_files, labels (float32 ``(n, 5)`` original pixels), shapes ``(N, 2)`` ``(h, w)``,
        names, nc, image_ids, category_ids, batch_shapes (rect), report (:class:`CheckReport`).
    """

    def __init__(self, sources, img_size: int = 640, augment: bool = False, hyp: dict | None = None,
                 rect: bool = False, batch_size: int = 16, stride: int = 32, pad: float = 0.5, cache=None,
                 names: list[str] | None = None, prefix: str = "", workers: int | None = None,
                 image_root=None, root=None, seed: int = 0, stretch_tol: float = 0.0,
                 label_cache: bool = True, reduced_decode: bool = True):
        self.img_size = int(img_size)
        self.augment = bool(augment)
        self.stride = int(stride)
        self.prefix = prefix
        self.seed = int(seed)
        self.epoch = 0
        self.stretch_tol = float(stretch_tol)
        self.reduced_decode = bool(reduced_decode)
        base = Hyp().augmentation()
        if hyp:
            base.update({k: float(v) for k, v in hyp.items() if k in base})
        self._hyp_base = base
        self.hyp = dict(base)
        if rect and augment:
            LOGGER.warning("%srect=True is for evaluation; mosaic is not used with it", prefix)
        self.rect = bool(rect)
        self.sources = sources

        sample_list = collect_samples(sources, image_root=image_root, root=root)
        if not sample_list.samples and not sample_list.issues:
            raise DataError(f"{prefix}no images found in {_fmt_sources(sources)}")
        names, category_ids = self._resolve_classes(sample_list, names)
        nc = len(names) if names is not None else None
        cache_path = default_cache_path(sources) if label_cache else None
        results, report = check_samples(sample_list, nc, names, workers=workers, cache_path=cache_path,
                                        prefix=prefix)
        report.log(LOGGER)
        self.report = report
        self.names = report.names
        self.nc = len(self.names)
        self.category_ids = category_ids if category_ids is not None else list(range(self.nc))

        keep = [i for i, r in enumerate(results) if r.ok]
        samples = [sample_list.samples[i] for i in keep]
        results = [results[i] for i in keep]
        self.im_files = [s.im_file for s in samples]
        self.labels = [r.labels for r in results]
        self.areas = [r.areas for r in results]
        self.crowd = [r.crowd for r in results]
        self.shapes = np.array([r.shape for r in results], dtype=np.int64).reshape(-1, 2)
        self.image_ids = _image_ids(samples)
        self.file_names = _file_names(samples)

        self.batch_shapes = None
        self.batch_index = None
        if self.rect:
            self._sort_by_aspect(batch_size, pad)
        self.ims = None
        if cache in ("ram", True):
            self._cache_ram(workers)
        elif cache not in (None, False, "", "none"):
            raise DataError(f"unknown cache mode {cache!r} (use 'ram' or None)")

    # ------------------------------------------------------------------ construction helpers

    def _resolve_classes(self, sample_list, names):
        """Names and COCO category ids; checks that json categories agree with ``names``."""
        category_ids = None
        cocos = sample_list.coco_files
        if cocos:
            first = cocos[0]
            for other in cocos[1:]:
                if other.category_ids != first.category_ids:
                    raise DataError(f"{other.path}: categories differ from those of {first.path}")
            category_ids = first.category_ids
            if names is None:
                names = first.names
            elif len(names) != len(category_ids):
                raise DataError(f"{first.path}: {len(category_ids)} categories but the data set names "
                                f"{len(names)} classes")
        return (list(names) if names is not None else None), category_ids

    def _sort_by_aspect(self, batch_size: int, pad: float) -> None:
        ar = self.shapes[:, 0] / np.maximum(self.shapes[:, 1], 1)  # h / w
        order = np.argsort(ar, kind="stable")
        for attr in ("im_files", "labels", "areas", "crowd", "image_ids", "file_names"):
            values = getattr(self, attr)
            setattr(self, attr, [values[i] for i in order])
        self.shapes = self.shapes[order]
        ar = ar[order]
        n = len(ar)
        self.batch_index = np.arange(n) // max(int(batch_size), 1)
        nb = int(self.batch_index[-1]) + 1 if n else 0
        rel = np.ones((nb, 2))
        for b in range(nb):
            a = ar[self.batch_index == b]
            if a.max() < 1:
                rel[b] = [a.max(), 1]
            elif a.min() > 1:
                rel[b] = [1, 1 / a.min()]
        self.batch_shapes = (np.ceil(rel * self.img_size / self.stride + pad).astype(np.int64) * self.stride)

    def _cache_ram(self, workers) -> None:
        n = len(self.im_files)
        threads = max(1, min(workers or os.cpu_count() or 1, 8))
        with ThreadPoolExecutor(threads) as pool:
            self.ims = list(pool.map(self._read_resized, range(n)))
        gb = sum(im.nbytes for im in self.ims) / 1e9
        LOGGER.info("%scached %d images in RAM (%.2f GB)", self.prefix, n, gb)

    def ram_bytes(self) -> int:
        """Bytes the resized images of ``cache='ram'`` take (long side ``img_size``, 3 channels)."""
        if not len(self.shapes):
            return 0
        h, w = self.shapes[:, 0].astype(np.float64), self.shapes[:, 1].astype(np.float64)
        r = self.img_size / np.maximum(np.maximum(h, w), 1)
        return int((np.maximum(np.round(h * r), 1) * np.maximum(np.round(w * r), 1) * 3).sum())

    def cache_images(self, budget_bytes: int, workers: int | None = None) -> bool:
        """Cache the resized images in RAM (as ``cache='ram'``) when they need at most
        ``budget_bytes``; returns whether the images are cached now. Samples are unchanged."""
        if self.ims is not None:
            return True
        if self.ram_bytes() > budget_bytes:
            LOGGER.info("%s%d images need %.2f GB: not cached in RAM", self.prefix, len(self), self.ram_bytes() / 1e9)
            return False
        self._cache_ram(workers)
        return True

    # ------------------------------------------------------------------ epoch control

    def set_epoch(self, epoch: int, strong_aug: bool = True) -> None:
        """Set the epoch (it seeds augmentation) and whether mosaic / mixup are on: the trainer
        turns them off for the last epochs of its recipe (``Recipe.close_mosaic``)."""
        self.epoch = int(epoch)
        on = bool(strong_aug)
        if not on and (self.hyp["mosaic"] or self.hyp["mixup"]):
            LOGGER.info("%sclosing mosaic and mixup", self.prefix)
        self.hyp["mosaic"] = self._hyp_base["mosaic"] if on else 0.0
        self.hyp["mixup"] = self._hyp_base["mixup"] if on else 0.0

    # ------------------------------------------------------------------ loading

    def __len__(self) -> int:
        return len(self.im_files)

    def _read_resized(self, i: int) -> np.ndarray:
        """Image ``i`` resized so its long side is ``img_size`` (aspect kept)."""
        h0, w0 = (int(v) for v in self.shapes[i])
        r = self.img_size / max(h0, w0)
        reduce = 1
        if self.reduced_decode and self.im_files[i].lower().endswith((".jpg", ".jpeg")):
            while reduce < 8 and max(h0, w0) / (reduce * 2) >= self.img_size:
                reduce *= 2
        img = decode_image(self.im_files[i], reduce=reduce)
        size = (max(1, int(round(w0 * r))), max(1, int(round(h0 * r))))
        if (img.shape[1], img.shape[0]) != size:
            interp = cv2.INTER_AREA if (r < 1 and not self.augment) else cv2.INTER_LINEAR
            img = cv2.resize(img, size, interpolation=interp)
        return img

    def load_image(self, i: int) -> tuple[np.ndarray, tuple[int, int], tuple[float, float]]:
        """Image ``i`` with long side ``img_size``; returns ``(img, (h0, w0), (rx, ry))`` gains."""
        img = self.ims[i] if self.ims is not None else self._read_resized(i)
        h0, w0 = (int(v) for v in self.shapes[i])
        return img, (h0, w0), (img.shape[1] / w0, img.shape[0] / h0)

    def _load_mosaic(self, index: int, rng: np.random.Generator):
        s = self.img_size
        indices = [index] + rng.integers(0, len(self), 3).tolist()
        rng.shuffle(indices)
        imgs, labels = [], []
        for i in indices:
            img, _, gain = self.load_image(i)
            imgs.append(img)
            labels.append(scale_labels(self.labels[i], gain))
        canvas, lab = mosaic4(imgs, labels, s, rng)
        h = self.hyp
        return random_affine(canvas, lab, h["degrees"], h["translate"], h["scale"], h["shear"],
                             out_shape=(s, s), rng=rng)

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        h = self.hyp
        h0, w0 = (int(v) for v in self.shapes[index])
        use_mosaic = self.augment and not self.rect and h["mosaic"] > 0 and rng.random() < h["mosaic"]
        if use_mosaic:
            img, labels = self._load_mosaic(index, rng)
            if h["mixup"] > 0 and rng.random() < h["mixup"]:
                img2, labels2 = self._load_mosaic(int(rng.integers(0, len(self))), rng)
                img, labels = mixup(img, labels, img2, labels2, rng)
            ratio, ratio_xy, pad = 1.0, (1.0, 1.0), (0, 0)
        else:
            img, _, gain = self.load_image(index)
            shape = tuple(self.batch_shapes[self.batch_index[index]]) if self.rect else (self.img_size,) * 2
            tol = 0.0 if self.augment else self.stretch_tol
            img, geom = letterbox(img, shape, auto=False, scaleup=self.augment, stride=self.stride, stretch_tol=tol)
            pad = geom.pad[:2]
            ratio_xy = (gain[0] * geom.ratio_xy[0], gain[1] * geom.ratio_xy[1])
            # the long side's gain is exact (it is resized to img_size), so report that one
            ratio = ratio_xy[0] if (w0 >= h0 or geom.stretched) else ratio_xy[1]
            labels = scale_labels(self.labels[index], ratio_xy, pad)
            labels[:, [1, 3]] = labels[:, [1, 3]].clip(0, img.shape[1])
            labels[:, [2, 4]] = labels[:, [2, 4]].clip(0, img.shape[0])
            if self.augment:
                img, labels = random_affine(img, labels, h["degrees"], h["translate"], h["scale"], h["shear"],
                                            rng=rng)
        if self.augment:
            if self.ims is not None and img is self.ims[index]:
                img = img.copy()  # HSV works in place: never on the RAM cache
            augment_hsv(img, h["hsv_h"], h["hsv_s"], h["hsv_v"], rng)
            img, labels = random_flip(img, labels, h["fliplr"], h["flipud"], rng)
        meta = {"orig_shape": (h0, w0), "ratio": float(ratio), "ratio_xy": tuple(map(float, ratio_xy)),
                "pad": tuple(int(p) for p in pad), "shape": tuple(img.shape[:2]), "mosaic": bool(use_mosaic),
                "image_id": self.image_ids[index]}
        chw = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        return chw, torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32)).reshape(-1, 5), \
            self.im_files[index], meta

    # ------------------------------------------------------------------ evaluation ground truth

    def coco_gt(self, include_crowd: bool = True) -> dict:
        """Ground truth as a COCO detection dict (boxes ``xywh`` in original pixels).

        Image ids are :attr:`image_ids`, category ids :attr:`category_ids`; COCO json sources
        keep their ``area`` values and (``include_crowd``) their ``iscrowd=1`` boxes.
        """
        images, anns = [], []
        for i, (iid, fname) in enumerate(zip(self.image_ids, self.file_names)):
            h0, w0 = (int(v) for v in self.shapes[i])
            images.append({"id": iid, "file_name": fname, "width": w0, "height": h0})
            rows = [(lab, area, 0) for lab, area in zip(self.labels[i].tolist(), self.areas[i].tolist())]
            if include_crowd:
                rows += [(lab, (lab[3] - lab[1]) * (lab[4] - lab[2]), 1) for lab in self.crowd[i].tolist()]
            for (c, x1, y1, x2, y2), area, crowd in rows:
                anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": self.category_ids[int(c)],
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(area), "iscrowd": crowd})
        cats = [{"id": cid, "name": name, "supercategory": ""} for cid, name in zip(self.category_ids, self.names)]
        return {"info": {"description": "repyolo ground truth"}, "images": images, "annotations": anns,
                "categories": cats}


def _fmt_sources(sources) -> str:
    if isinstance(sources, (list, tuple)):
        return ", ".join(str(s) for s in sources)
    return str(sources)


def _image_ids(samples) -> list[int]:
    """COCO entries keep their json id; YOLO images get their numeric stem when every stem is a
    distinct number, else their index (shifted past the json ids when those exist)."""
    coco_ids = {s.coco.id for s in samples if s.coco is not None}
    yolo = [i for i, s in enumerate(samples) if s.coco is None]
    stems = [Path(samples[i].im_file).stem for i in yolo]
    numeric = all(st.isdigit() for st in stems) and len(set(int(st) for st in stems)) == len(stems)
    if numeric and not coco_ids & {int(st) for st in stems}:
        yolo_ids = [int(st) for st in stems]
    else:
        offset = (max(coco_ids) + 1) if coco_ids else 0
        yolo_ids = [offset + i for i in yolo]
    ids = [s.coco.id if s.coco is not None else 0 for s in samples]
    for i, v in zip(yolo, yolo_ids):
        ids[i] = v
    return ids


def _file_names(samples) -> list[str]:
    """``file_name`` for COCO output: relative to the common folder of the images."""
    files = [s.im_file for s in samples if s.coco is None]
    rel = files
    if files:
        try:
            common = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
            rel = [os.path.relpath(os.path.abspath(f), common) for f in files]
        except ValueError:  # different drives
            pass
    it = iter(rel)
    return [s.coco.file_name if s.coco is not None else next(it) for s in samples]
