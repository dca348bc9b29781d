"""Detection metrics on COCO-style dicts.

* :func:`coco_map` - COCO box AP through ``faster-coco-eval`` (checked against pycocotools'
  COCOeval by the tests): mAP@0.5:0.95, mAP@0.5, mAP@0.75, AP small/medium/large, per-class AP and
  AP50, and COCO's interpolated precision-recall curve at IoU 0.5 (101 recall points).
  Classes without ground truth get AP ``NaN`` and are left out of the means, as COCOeval does.
* :func:`threshold_stats` - precision, recall and F1 of the detections scoring at least
  ``conf_thres`` (one-to-one matching at IoU >= 0.5), and the confusion matrix.

Inputs are plain data: the ground truth as a COCO dict (``images``, ``annotations``,
``categories``) and detections as COCO results (``image_id``, ``category_id``,
``bbox`` = ``[x, y, w, h]`` original pixels, ``score``).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch

from repyolo.errors import DataError
from repyolo.ops.iou import pairwise_iou
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

AREA_RANGES = {"small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e10)}


def _nan_if_negative(x: float) -> float:
    return float("nan") if x < 0 else float(x)


def category_order(coco_gt: dict) -> list[int]:
    """COCO category ids sorted ascending: position ``k`` is class index ``k``."""
    return sorted(int(c["id"]) for c in coco_gt.get("categories", []))


def category_names(coco_gt: dict, names: Sequence[str] | None = None) -> list[str]:
    """Class names in :func:`category_order` (``names`` wins when it has one name per category)."""
    cats = sorted(coco_gt.get("categories", []), key=lambda c: int(c["id"]))
    if names is not None and len(names) == len(cats):
        return [str(n) for n in names]
    return [str(c.get("name", c["id"])) for c in cats]


def normalize_gt(coco_gt: dict) -> dict:
    """A shallow-copied GT dict with the fields COCOeval needs (``iscrowd``, ``area``, ``id``) filled in."""
    if not isinstance(coco_gt, dict) or not all(k in coco_gt for k in ("images", "annotations", "categories")):
        raise DataError("ground truth is not a COCO dict (needs 'images', 'annotations' and 'categories')")
    anns = []
    for i, a in enumerate(coco_gt["annotations"]):
        a = dict(a)
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
        a.setdefault("id", i + 1)
        anns.append(a)
    out = {k: v for k, v in coco_gt.items() if k not in ("annotations",)}
    out["annotations"] = anns
    out.setdefault("info", {})
    out.setdefault("licenses", [])
    return out


def check_detections(detections: Sequence[dict], coco_gt: dict, where: str = "predictions") -> list[dict]:
    """Validate COCO results against the GT: returns clean copies; unknown categories are dropped
    with a warning, unknown image ids or malformed entries raise :class:`DataError`."""
    if not isinstance(detections, (list, tuple)):
        raise DataError(f"{where}: expected a JSON list of detections, got {type(detections).__name__}")
    img_ids = {img["id"] for img in coco_gt["images"]}
    cat_ids = {int(c["id"]) for c in coco_gt["categories"]}
    out, bad_cat = [], 0
    for i, d in enumerate(detections):
        try:
            img_id, cat, score = d["image_id"], int(d["category_id"]), float(d["score"])
            x, y, w, h = (float(v) for v in d["bbox"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: entry {i} is not a detection "
                            f"(needs image_id, category_id, bbox [x, y, w, h], score): {str(d)[:120]}") from None
        if img_id not in img_ids:
            raise DataError(f"{where}: entry {i} has image_id {img_id!r}, which is not in the ground truth "
                            f"(ids must be the data set's COCO image ids)")
        if cat not in cat_ids:
            bad_cat += 1
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h, score)):
            raise DataError(f"{where}: entry {i} has a non-finite box or score")
        out.append({"image_id": img_id, "category_id": cat, "bbox": [x, y, w, h], "score": score})
    if bad_cat:
        LOGGER.warning("%s: %d detections with a category id not in the ground truth were ignored", where, bad_cat)
    return out


def faster_cocoeval(gt: dict, dets: list[dict]):
    """COCOeval (evaluate + accumulate + summarize) by ``faster-coco-eval``, quietly; returns the
    eval object (``stats``, ``eval['precision']``, ``params`` as pycocotools' COCOeval has them)."""
    from faster_coco_eval import COCO, COCOeval_faster

    coco_gt = COCO(copy.deepcopy(gt))
    coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=LOGGER.debug)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


def _empty_result(gt: dict, cat_ids: list[int]) -> dict:
    """What COCOeval reports for zero detections: 0 where ground truth exists, NaN elsewhere."""
    has = {r: set() for r in ("all", *AREA_RANGES)}
    for a in gt["annotations"]:
        if a.get("iscrowd", 0):
            continue
        has["all"].add(int(a["category_id"]))
        for r, (lo, hi) in AREA_RANGES.items():
            if lo <= float(a["area"]) <= hi:
                has[r].add(int(a["category_id"]))
    val = {r: (0.0 if has[r] else float("nan")) for r in has}
    per = np.array([0.0 if c in has["all"] else float("nan") for c in cat_ids])
    return {"map": val["all"], "map50": val["all"], "map75": val["all"], "map_small": val["small"],
            "map_medium": val["medium"], "map_large": val["large"], "ap": per, "ap50": per.copy(),
            "pr_curve": np.where(np.isnan(per)[:, None], np.nan, 0.0) * np.ones((1, 101))}


def coco_map(coco_gt: dict, detections: Sequence[dict], cocoeval=faster_cocoeval) -> dict:
    """COCO box AP of ``detections`` against ``coco_gt``.

    Args:
        coco_gt: COCO ground-truth dict; ``detections``: COCO results (already checked with
            :func:`check_detections`).
        cocoeval: ``(gt, dets) -> evaluated COCOeval object``; ``faster-coco-eval`` by default (the
            tests check it against pycocotools' reference COCOeval through this argument).
    Returns:
        ``{"map", "map50", "map75", "map_small", "map_medium", "map_large"}`` floats in 0..1
        (NaN when undefined), ``"ap"`` / ``"ap50"`` ``(K,)`` per class in :func:`category_order`
        (NaN for classes without ground truth), ``"pr_curve"`` ``(K, 101)`` precision at the recall
        points ``0, 0.01, ..., 1`` (IoU 0.5, all areas, 100 detections per image).
    """
    gt = normalize_gt(coco_gt)
    cat_ids = category_order(gt)
    if not detections:
        return _empty_result(gt, cat_ids)
    ev = cocoeval(gt, list(detections))
    stats = [float(s) for s in ev.stats[:6]]
    prec = np.asarray(ev.eval["precision"])  # (T, R, K, A, M); -1 = undefined
    eval_cats = [int(c) for c in ev.params.catIds]
    k_of = {c: k for k, c in enumerate(eval_cats)}
    area_all = list(ev.params.areaRngLbl).index("all")
    m_last = len(ev.params.maxDets) - 1
    ap, ap50 = np.full(len(cat_ids), np.nan), np.full(len(cat_ids), np.nan)
    curve = np.full((len(cat_ids), prec.shape[1]), np.nan)
    for i, c in enumerate(cat_ids):
        k = k_of.get(c)
        if k is None:
            continue
        p = prec[:, :, k, area_all, m_last]
        if (p > -1).any():
            ap[i] = p[p > -1].mean()
            p50 = p[0]
            ap50[i] = p50[p50 > -1].mean() if (p50 > -1).any() else np.nan
            curve[i] = np.where(p50 > -1, p50, np.nan)
    return {"map": _nan_if_negative(stats[0]), "map50": _nan_if_negative(stats[1]),
            "map75": _nan_if_negative(stats[2]), "map_small": _nan_if_negative(stats[3]),
            "map_medium": _nan_if_negative(stats[4]), "map_large": _nan_if_negative(stats[5]),
            "ap": ap, "ap50": ap50, "pr_curve": curve}


# ----------------------------------------------------------------------------------------------
# precision / recall / F1 at a score threshold, and the confusion matrix


def _xywh2xyxy(b: np.ndarray) -> np.ndarray:
    return np.concatenate((b[:, :2], b[:, :2] + b[:, 2:4]), 1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n, 4)`` x ``(m, 4)`` xyxy -> ``(n, m)`` IoU (float64)."""
    return pairwise_iou(torch.from_numpy(a.astype(np.float64)), torch.from_numpy(b.astype(np.float64))).numpy()


def _match(iou: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching: candidate pairs ``valid`` taken by decreasing IoU, each GT row and each
    detection column at most once. Returns matched ``(gt_idx, det_idx)``."""
    gi, di = np.nonzero(valid)
    if gi.size == 0:
        return gi, di
    order = np.argsort(-iou[gi, di], kind="stable")
    gi, di = gi[order], di[order]
    _, first = np.unique(di, return_index=True)  # best pair of each detection
    first = np.sort(first)
    gi, di = gi[first], di[first]
    _, first = np.unique(gi, return_index=True)  # then best pair of each GT
    first = np.sort(first)
    return gi[first], di[first]


def _group(image_ids: list, keys: np.ndarray) -> dict:
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    bounds = np.flatnonzero(np.diff(sk)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(sk)]))
    return {image_ids[int(sk[s])]: order[s:e] for s, e in zip(starts, ends)} if len(sk) else {}


def threshold_stats(coco_gt: dict, detections: Sequence[dict], conf_thres: float = 0.25,
                    iou_thres: float = 0.5) -> dict:
    """Precision / recall / F1 at a score threshold and the confusion matrix.

    Detections with ``score >= conf_thres`` are matched one-to-one to non-crowd GT boxes of the same
    class with IoU >= ``iou_thres`` (pairs by decreasing IoU). ``precision = TP / detections``,
    ``recall = TP / GT boxes``, pooled over all classes (``per_class_*`` per class, NaN when
    undefined). The confusion matrix matches regardless of class: ``(K + 1, K + 1)`` with rows =
    predicted class, columns = true class, index ``K`` = background (missed GT in the last row,
    false detections in the last column).
    """
    gt = normalize_gt(coco_gt)
    cat_ids = category_order(gt)
    k_of = {c: k for k, c in enumerate(cat_ids)}
    nk = len(cat_ids)
    img_list = [img["id"] for img in gt["images"]]
    img_index = {i: n for n, i in enumerate(img_list)}
    anns = [a for a in gt["annotations"] if not a.get("iscrowd", 0) and int(a["category_id"]) in k_of]
    g_img = np.array([img_index[a["image_id"]] for a in anns if a["image_id"] in img_index], dtype=np.int64)
    anns = [a for a in anns if a["image_id"] in img_index]
    g_box = _xywh2xyxy(np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4))
    g_cls = np.array([k_of[int(a["category_id"])] for a in anns], dtype=np.int64)
    dets = [d for d in detections if d["score"] >= conf_thres and int(d["category_id"]) in k_of]
    d_img = np.array([img_index[d["image_id"]] for d in dets], dtype=np.int64)
    d_box = _xywh2xyxy(np.array([d["bbox"] for d in dets], dtype=np.float64).reshape(-1, 4))
    d_cls = np.array([k_of[int(d["category_id"])] for d in dets], dtype=np.int64)

    tp = np.zeros(nk, np.int64)
    confusion = np.zeros((nk + 1, nk + 1), np.int64)
    g_by, d_by = _group(list(range(len(img_list))), g_img), _group(list(range(len(img_list))), d_img)
    empty = np.zeros(0, np.int64)
    for n in set(g_by) | set(d_by):
        gi, di = g_by.get(n, empty), d_by.get(n, empty)
        gc, dc = g_cls[gi], d_cls[di]
        iou = _iou(g_box[gi], d_box[di]) if gi.size and di.size else np.zeros((gi.size, di.size))
        over = iou >= iou_thres
        mg, md = _match(iou, over & (gc[:, None] == dc[None, :]))
        np.add.at(tp, gc[mg], 1)
        mg, md = _match(iou, over)
        np.add.at(confusion, (dc[md], gc[mg]), 1)
        missed = np.ones(gi.size, bool)
        missed[mg] = False
        np.add.at(confusion, (nk, gc[missed]), 1)
        false = np.ones(di.size, bool)
        false[md] = False
        np.add.at(confusion, (dc[false], nk), 1)
    n_gt = np.bincount(g_cls, minlength=nk)
    n_det = np.bincount(d_cls, minlength=nk)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_cls = np.where(n_det > 0, tp / np.maximum(n_det, 1), np.nan)
        r_cls = np.where(n_gt > 0, tp / np.maximum(n_gt, 1), np.nan)
    p = float(tp.sum() / n_det.sum()) if n_det.sum() else 0.0
    r = float(tp.sum() / n_gt.sum()) if n_gt.sum() else float("nan")
    f1 = 2 * p * r / (p + r) if (p + r) > 0 else 0.0
    images_per_class = np.zeros(nk, np.int64)
    if g_img.size:
        pairs = np.unique(np.stack((g_img, g_cls), 1), axis=0)
        images_per_class = np.bincount(pairs[:, 1], minlength=nk)
    return {"precision": p, "recall": r, "f1": float(f1), "tp": tp, "n_gt": n_gt, "n_det": n_det,
            "per_class_precision": p_cls, "per_class_recall": r_cls, "images_per_class": images_per_class,
            "confusion": confusion, "conf_thres": float(conf_thres), "iou_thres": float(iou_thres)}


def nan_to_none(x):
    """Recursively turn NaN floats into ``None`` (JSON ``null``), numpy scalars into Python numbers."""
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    if isinstance(x, np.ndarray):
        return nan_to_none(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x
