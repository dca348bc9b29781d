"""Pictures of detections and of evaluation results.

* :func:`draw_detections` - boxes and ``name score`` labels on an RGB image (OpenCV).
* :func:`plot_pr_curve` - per-class and mean precision-recall curves (matplotlib, Agg canvas).
* :func:`plot_confusion_matrix` - the ``(K + 1, K + 1)`` confusion matrix as an image.

Matplotlib is used through its object API on an Agg canvas: no global backend switch, no window.
"""
from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def class_color(c: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour for class ``c`` (golden-ratio hue steps)."""
    h = (int(c) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(img: np.ndarray, boxes, scores=None, class_ids=None, names: Sequence[str] | None = None,
                    line_width: int | None = None, hide_labels: bool = False, hide_conf: bool = False) -> np.ndarray:
    """Draw boxes on a copy of ``img``.

    Args:
        img: uint8 ``(H, W, 3)`` RGB.
        boxes: ``(N, 4)`` xyxy in ``img`` pixels; ``scores`` ``(N,)``; ``class_ids`` ``(N,)``.
        names: class names (index = class id).
        line_width: box thickness (default scales with the image size).
    Returns:
        uint8 ``(H, W, 3)`` RGB image.
    """
    out = np.ascontiguousarray(img.copy())
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    scores = np.ones(n) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    class_ids = np.zeros(n, np.int64) if class_ids is None else np.asarray(class_ids).reshape(-1).astype(np.int64)
    lw = line_width or max(round(sum(out.shape[:2]) / 2 * 0.003), 2)
    font_scale = lw / 3
    thick = max(lw - 1, 1)
    for (x1, y1, x2, y2), s, c in zip(boxes, scores, class_ids):
        color = class_color(c)
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(out, p1, p2, color, thickness=lw, lineType=cv2.LINE_AA)
        if hide_labels:
            continue
        name = names[c] if names is not None and 0 <= c < len(names) else str(int(c))
        label = name if hide_conf else f"{name} {s:.2f}"
        (tw, th), base = cv2.getTextSize(label, 0, font_scale, thick)
        above = p1[1] - th - base - 3 >= 0
        top = p1[1] - th - base - 3 if above else p1[1]
        cv2.rectangle(out, (p1[0], top), (p1[0] + tw + 2, top + th + base + 3), color, -1, cv2.LINE_AA)
        text_color = (0, 0, 0) if sum(color) > 382 else (255, 255, 255)
        cv2.putText(out, label, (p1[0] + 1, top + th + 1), 0, font_scale, text_color, thick, cv2.LINE_AA)
    return out


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, tight_layout=True)
    FigureCanvasAgg(fig)
    return fig


def plot_pr_curve(curves: np.ndarray, names: Sequence[str], path: str | Path, ap50: np.ndarray | None = None,
                  recall: np.ndarray | None = None) -> Path:
    """Precision-recall curves.

    Args:
        curves: ``(K, R)`` precision at ``recall`` points (NaN rows = classes without ground truth).
        names: ``K`` class names; ``ap50``: ``(K,)`` AP at IoU 0.5 for the legend.
        recall: ``(R,)`` recall points (default ``linspace(0, 1, R)``).
    Returns:
        the written PNG path.
    """
    curves = np.asarray(curves, dtype=np.float64).reshape(len(names), -1)
    recall = np.linspace(0, 1, curves.shape[1]) if recall is None else np.asarray(recall)
    fig = _figure(9, 6)
    ax = fig.add_subplot(1, 1, 1)
    valid = ~np.isnan(curves).all(1)
    few = valid.sum() <= 20
    for k in np.flatnonzero(valid):
        label = f"{names[k]} {ap50[k]:.3f}" if (few and ap50 is not None) else None
        ax.plot(recall, np.nan_to_num(curves[k]), linewidth=1, alpha=0.6 if few else 0.3, label=label,
                color=None if few else "grey")
    if valid.any():
        mean = np.nanmean(curves[valid], 0)
        mean_ap = float(np.nanmean(ap50[valid])) if ap50 is not None else float(mean.mean())
        ax.plot(recall, mean, linewidth=3, color="blue", label=f"all classes {mean_ap:.3f} mAP@0.5")
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title("Precision-recall curve (COCO interpolation, IoU 0.5)")
    if valid.any():
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: str | Path, normalize: bool = True,
                          max_classes: int = 100) -> Path:
    """The ``(K + 1, K + 1)`` confusion matrix (rows predicted, columns true, last = background).

    With ``normalize`` each column (true class) sums to 1. Classes that never appear (no GT and no
    detection) are left out when there are more than ``max_classes`` / 2 of them, to keep it readable.
    """
    m = np.asarray(matrix, dtype=np.float64)
    k = m.shape[0] - 1
    labels = list(names)[:k] + ["background"]
    used = (m.sum(0) + m.sum(1)) > 0
    used[-1] = True
    if k > max_classes // 2 or not used.all():
        idx = np.flatnonzero(used)
        m, labels = m[np.ix_(idx, idx)], [labels[i] for i in idx]
    if normalize:
        m = m / np.maximum(m.sum(0, keepdims=True), 1e-9)
    n = len(labels)
    size = min(max(6, 0.3 * n + 3), 30)
    fig = _figure(size, size * 0.85)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    fs = 8 if n <= 30 else 5
    ax.set_xticklabels(labels, rotation=90, fontsize=fs)
    ax.set_yticklabels(labels, fontsize=fs)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if m[i, j] > 0.005:
                    ax.text(j, i, f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}", ha="center", va="center",
                            fontsize=6, color="white" if m[i, j] > 0.5 * (m.max() or 1) else "black")
    ax.set_xlabel("True")
    ax.set_ylabel("Predicted")
    ax.set_title("Confusion matrix" + (" (normalized per true class)" if normalize else ""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
