"""The PNG plots a run folder keeps: loss curves, AP per epoch, PR curves, confusion matrix.

matplotlib is imported on the first plot, never with ``detengine``, and only its Agg canvas is
used: a ``Figure`` with a ``FigureCanvasAgg`` needs no display and does not set pyplot's global
backend (the same process may hold a window's Qt canvas). Each PNG is written atomically.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from ..io import atomic_write_bytes

__all__ = ["plot_loss_curves", "plot_ap_curves", "plot_pr_curves", "plot_confusion_matrix"]

RECALL_POINTS = np.linspace(0.0, 1.0, 101)   # COCOeval's recThrs
MAX_LEGEND = 20                              # more classes: no legend (Ultralytics draws none past 20)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)  # no layout engine: savefig's tight box is 2x cheaper
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.1)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each point's ``window`` (clipped at the ends: no shift, no shrinking)."""
    kernel = np.ones(window)
    return np.convolve(values, kernel, "same") / np.convolve(np.ones_like(values), kernel, "same")


def plot_loss_curves(path, curves: dict[str, tuple[list[int], list[float]]]) -> Path:
    """One panel per loss term: ``curves`` name -> (global steps, values), with a running mean
    over 2% of the points when there are more than 50."""
    cols = min(3, max(1, len(curves)))
    rows = max(1, math.ceil(len(curves) / cols))
    fig = _figure(4.0 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw={"hspace": 0.45, "wspace": 0.3}).ravel()
    for ax, (name, (steps, values)) in zip(axes, curves.items()):
        values = np.asarray(values, np.float64)
        ax.plot(steps, values, lw=0.8, alpha=0.6 if len(values) > 50 else 1.0, label=name)
        if len(values) > 50:
            ax.plot(steps, _running_mean(values, max(3, len(values) // 50)), lw=1.5, label="running mean")
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    for ax in axes[len(curves):]:
        ax.set_visible(False)
    return _save(fig, path)


def plot_ap_curves(path, epochs: list[int], ap: list[float], ap50: list[float]) -> Path:
    """COCO AP (IoU 0.5:0.95) and AP50 after each validation, against the epoch."""
    fig = _figure(6.0, 4.0)
    ax = fig.subplots()
    ax.plot(epochs, ap, marker="o", label="AP")
    ax.plot(epochs, ap50, marker="o", label="AP50")
    ax.set_xlabel("epoch")
    ax.set_ylabel("COCO bbox")
    ax.set_ylim(0.0, max(1e-3, *ap, *ap50) * 1.1)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_pr_curves(path, curves: dict[str, np.ndarray]) -> Path:
    """Precision against recall per class at IoU 0.5 (COCOeval's ``precision[0, :, k, 0, -1]``:
    area all, 100 detections; a class without GT, all -1, is left out) and their mean; the
    legend gives each class's AP50 (the mean precision over the 101 recall points)."""
    fig = _figure(7.0, 5.0)
    ax = fig.subplots()
    valid = {name: np.asarray(p, np.float64) for name, p in curves.items() if np.any(np.asarray(p) > -1)}
    for name, precision in valid.items():
        ax.plot(RECALL_POINTS, precision, lw=1, label=f"{name} {precision.mean():.3f}")
    if valid:
        mean = np.mean(list(valid.values()), axis=0)
        ax.plot(RECALL_POINTS, mean, lw=3, color="black", label=f"all classes {mean.mean():.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("PR curves at IoU 0.5 (legend: AP50)")
    ax.grid(alpha=0.3)
    if valid and len(valid) <= MAX_LEGEND:
        ax.legend(fontsize="small", loc="lower left")
    return _save(fig, path)


def plot_confusion_matrix(path, matrix: np.ndarray, class_names: list[str], title: str = "confusion matrix") -> Path:
    """matrix (C + 1, C + 1): rows predicted, columns true, last background (see
    :mod:`detengine.confusion`). Colour: the share of each true class's column; the counts are
    written in the cells up to 30 classes."""
    names = [*class_names, "background"]
    size = min(20.0, max(5.0, 0.45 * len(names) + 2.5))
    fig = _figure(size + 1.0, size)
    ax = fig.subplots()
    totals = matrix.sum(axis=0, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, np.float64), where=totals > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    if len(names) <= 30:
        for (p, t), count in np.ndenumerate(matrix):
            if count:
                ax.text(t, p, str(count), ha="center", va="center", fontsize="small",
                        color="white" if share[p, t] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    return _save(fig, path)
