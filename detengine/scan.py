"""Dataset scan: every GT of a project under a config and its assigner, in one pass, Qt-free.

The window's Dataset scan runs :func:`scan_project` on its worker thread and ``detengine scan``
prints the same result, so both list the same GTs with too few positives.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .image_trace import ImageTracer
from .project_eval import model_label_map

__all__ = ["ScanItem", "ScanResult", "scan_items", "scan_project", "prior_shapes"]


@dataclass(frozen=True)
class ScanItem:
    """One image as the scan needs it (taken from the project on the caller's thread)."""

    index: int
    height: int
    width: int
    boxes: list  # [(x1, y1, x2, y2)] original pixels
    category_ids: list[int]
    iscrowd: list[int]
    box_ids: list[int]
    image_path: str


@dataclass
class ScanResult:
    """Per GT of the project: ``rows`` (N, 4) = best IoU, positives, w, h (input px); ``where``
    (N, 2) = image index, box id; the prior shapes (w, h) per level of the first image; whether
    the priors are points; whether the assigner weighs the predictions, and the model that made
    them (None: a freshly initialised head)."""

    rows: np.ndarray
    where: np.ndarray
    shapes: list[np.ndarray] = field(default_factory=list)
    images: int = 0
    is_point: bool = False
    uses_predictions: bool = False
    model: str | None = None
    cancelled: bool = False

    def weak(self, k: int = 1) -> np.ndarray:
        """Indices of the GTs with fewer than ``k`` positives, fewest (then worst IoU) first."""
        rows = self.rows
        weak = np.flatnonzero(rows[:, 1] < k)
        return weak[np.lexsort((rows[weak, 0], rows[weak, 1]))]


def scan_items(project, size_of: Callable | None = None) -> list[ScanItem]:
    """Every image of ``project`` with a known size (``size_of(path) -> (w, h) | None`` fills
    missing sizes; images it cannot size are left out)."""
    out = []
    for i, record in enumerate(project.images):
        if record.width is None or record.height is None:
            size = size_of(project.image_path(i)) if size_of else None
            if size is None:
                continue
            record.width, record.height = size
        boxes = list(record.boxes)
        out.append(ScanItem(i, record.height, record.width, [b.xyxy for b in boxes], [b.category_id for b in boxes],
                            [b.iscrowd for b in boxes], [b.id for b in boxes], str(project.image_path(i))))
    return out


def prior_shapes(priors) -> list[np.ndarray]:
    """Per level, the (w, h) of each base prior (those of the first cell)."""
    out = []
    for level in range(priors.num_levels):
        idx = priors.cell_indices(level, 0, 0)
        boxes = priors.boxes[idx].numpy()
        out.append(np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1))
    return out


def scan_project(items: list[ScanItem], cfg: dict, categories, *, loaded=None, checkpoint: str | None = None,
                 model_overrides: dict | None = None, read_rgb: Callable | None = None,
                 cancel: threading.Event | None = None, progress: Callable | None = None) -> ScanResult:
    """Scan ``items`` under config ``cfg`` (a full config dict) and ``model_overrides``.

    ``loaded``: a :class:`detengine.api.LoadedModel` whose predictions the assigner weighs (RTMDet's
    DSL: every image is read with ``read_rgb(path) -> RGB array | None`` and run through it); None:
    targets only, from the image sizes (a prediction-weighing assigner then sees a freshly
    initialised head). Boxes of categories the model does not know are left out (``checkpoint``'s
    class names map categories by name). ``progress(done, total)`` is called every 10 images."""
    read_rgb = read_rgb or _read_or_none
    num_classes = max(1, len(categories))
    model = loaded.model if loaded is not None else None
    tracer = ImageTracer(cfg if model is None else {**cfg, "model": model.model_cfg},
                         num_classes=loaded.num_classes if loaded is not None else num_classes, model=model,
                         model_name=loaded.name if loaded is not None else None)
    label_map = model_label_map(checkpoint, categories)
    rows, where, shapes, is_point, cancelled = [], [], None, False, False
    for n, item in enumerate(items):
        if cancel is not None and cancel.is_set():
            cancelled = True
            break
        keep, labels = label_map.encode(item.category_ids)
        boxes = [item.boxes[k] for k in keep]
        crowd, ids = [item.iscrowd[k] for k in keep], [item.box_ids[k] for k in keep]
        if model is None:
            cov, kept, priors = tracer.coverage_of(item.height, item.width, boxes, labels, crowd,
                                                   model_overrides=model_overrides)
        else:
            image = read_rgb(item.image_path)
            if image is None:  # unreadable: skipped, as the image list shows it
                continue
            cov, kept, priors = tracer.coverage_with_model((item.index, item.image_path), image, boxes, labels, crowd,
                                                           model_overrides=model_overrides)
        rows.append(cov)
        where += [(item.index, ids[k]) for k in kept]
        if shapes is None:
            shapes, is_point = prior_shapes(priors), priors.is_point
        if progress is not None and (n % 10 == 0 or n == len(items) - 1):
            progress(n + 1, len(items))
    return ScanResult(np.concatenate(rows) if rows else np.zeros((0, 4)), np.asarray(where, np.int64).reshape(-1, 2),
                      shapes or [], len(items), is_point, tracer.assigner_uses_predictions(model_overrides),
                      loaded.name if loaded is not None else None, cancelled)


def _read_or_none(path):
    from .data.errors import ImageReadError
    from .data.folder import read_image
    try:
        return read_image(Path(path))
    except ImageReadError:  # the scan skips it, as the image list marks it unreadable
        return None
