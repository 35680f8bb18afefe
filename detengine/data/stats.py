"""What a dataset holds, as numbers a report prints and a window plots.

:func:`dataset_stats` reads an :class:`~detengine.data.project.AnnotationProject` (any format it
opens) into a :class:`DatasetStats`: counts per class, one row per box (its class, width, height
and aspect ratio in original pixels, crowd or not), histograms of those, COCO's size buckets,
the images without boxes, the boxes reaching outside their image and the problems found when
the dataset was opened. Nothing here draws: :meth:`DatasetStats.summary` gives text bars,
:meth:`DatasetStats.to_json_dict` a JSON-able dict, and the arrays are there to plot.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["DatasetStats", "Histogram", "dataset_stats", "ASPECT_EDGES", "COCO_AREA_EDGES", "text_bars"]

#: aspect ratio (width / height) bin edges, a factor 2 apart; below the first and above the last: open bins
ASPECT_EDGES = (1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0)
#: COCO's small / medium / large boxes: area below 32^2, below 96^2, above
COCO_AREA_EDGES = (32.0 ** 2, 96.0 ** 2)
_OUTSIDE_PX = 1e-3      # a box reaching beyond its image by more than this counts as outside


@dataclass(frozen=True)
class Histogram:
    """``counts[k]`` values fell in bin ``k`` named ``labels[k]``; ``edges`` (K+1,) bound the bins
    (the first / last may be ``-inf`` / ``inf`` for open bins)."""

    edges: np.ndarray
    counts: np.ndarray
    labels: tuple[str, ...]

    def to_json_dict(self) -> dict:
        return {"edges": [float(e) if np.isfinite(e) else None for e in self.edges],
                "counts": [int(c) for c in self.counts], "labels": list(self.labels)}


@dataclass
class DatasetStats:
    """One dataset's numbers. Per box (N rows): ``box_labels`` (index into ``class_names``),
    ``widths``, ``heights``, ``aspect_ratios`` (w / h), ``crowd`` (bool). ``boxes_per_class``
    and ``images_per_class`` align with ``class_names`` (categories in the project's order)."""

    kind: str
    source: str
    num_images: int
    class_names: list[str]
    boxes_per_class: list[int]
    images_per_class: list[int]
    box_labels: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    aspect_ratios: np.ndarray
    crowd: np.ndarray
    width_hist: Histogram
    height_hist: Histogram
    aspect_hist: Histogram
    size_buckets: dict[str, int]
    images_without_boxes: list[str] = field(default_factory=list)
    images_without_size: list[str] = field(default_factory=list)
    boxes_outside: list[tuple[str, int]] = field(default_factory=list)     # (file name, box id)
    problems: list[str] = field(default_factory=list)

    @property
    def num_boxes(self) -> int:
        return int(len(self.widths))

    def __repr__(self) -> str:
        return (f"DatasetStats(kind={self.kind!r}, images={self.num_images}, boxes={self.num_boxes}, "
                f"classes={len(self.class_names)}, widths={self.widths.shape}, problems={len(self.problems)})")

    def to_json_dict(self) -> dict:
        """Counts, histograms and lists (not the per-box arrays)."""
        return {"kind": self.kind, "source": self.source, "images": self.num_images, "boxes": self.num_boxes,
                "classes": len(self.class_names), "crowd_boxes": int(self.crowd.sum()),
                "boxes_per_class": dict(zip(self.class_names, self.boxes_per_class)),
                "images_per_class": dict(zip(self.class_names, self.images_per_class)),
                "width_px": self.width_hist.to_json_dict(), "height_px": self.height_hist.to_json_dict(),
                "aspect_ratio": self.aspect_hist.to_json_dict(), "coco_size": dict(self.size_buckets),
                "images_without_boxes": list(self.images_without_boxes),
                "images_without_size": list(self.images_without_size),
                "boxes_outside_image": [{"file_name": f, "box_id": b} for f, b in self.boxes_outside],
                "problems": list(self.problems)}

    def summary(self, bar_width: int = 40, max_listed: int = 20) -> str:
        """A text report with ``#`` bars; at most ``max_listed`` of each list is printed."""
        lines = [f"{self.kind} dataset {self.source}",
                 f"images: {self.num_images} ({len(self.images_without_boxes)} without boxes)   boxes: "
                 f"{self.num_boxes} ({int(self.crowd.sum())} crowd / difficult)   classes: {len(self.class_names)}",
                 "boxes per class (images):"]
        labels = [f"{name} ({n})" for name, n in zip(self.class_names, self.images_per_class)]
        lines += text_bars(labels, self.boxes_per_class, bar_width)
        for title, hist in (("box width (px)", self.width_hist), ("box height (px)", self.height_hist),
                            ("aspect ratio (w/h)", self.aspect_hist)):
            lines += [f"{title}:", *text_bars(hist.labels, hist.counts, bar_width)]
        lines += ["COCO size (area):", *text_bars(list(self.size_buckets), list(self.size_buckets.values()), bar_width)]
        lines += _listed("images without boxes", self.images_without_boxes, max_listed)
        lines += _listed("images of unknown size", self.images_without_size, max_listed)
        lines += _listed("boxes outside their image", [f"{f} box {b}" for f, b in self.boxes_outside], max_listed)
        lines += _listed("problems", self.problems, max_listed)
        return "\n".join(lines)


def _listed(title: str, items: list[str], limit: int) -> list[str]:
    lines = [f"{title}: {len(items)}"] + [f"  {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return lines


def text_bars(labels, counts, width: int = 40) -> list[str]:
    """``label  count ####`` lines, the largest count ``width`` characters long."""
    counts = [int(c) for c in counts]
    top = max(counts, default=0)
    pad = max((len(str(label)) for label in labels), default=0)
    digits = max((len(str(c)) for c in counts), default=1)
    return [f"  {str(label):<{pad}}  {c:>{digits}} {'#' * (round(width * c / top) if top else 0)}".rstrip()
            for label, c in zip(labels, counts)]


# --------------------------------------------------------------------------- computing


def dataset_stats(project, bins: int = 10, *, source=None) -> DatasetStats:
    """The numbers of ``project`` (an :class:`~detengine.data.project.AnnotationProject`);
    ``bins`` equal bins from 0 to the largest width / height; ``source``: what was opened, for
    the report (default: the project's file, else its image folder)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    label_of = {c.id: k for k, c in enumerate(project.categories)}
    rows = _box_rows(project, label_of)                       # (N, 4): label, w, h, crowd
    labels, widths, heights = rows[:, 0].astype(np.int64), rows[:, 1], rows[:, 2]
    ratios = np.divide(widths, heights, out=np.full_like(widths, np.inf), where=heights > 0)
    num_classes = len(project.categories)
    return DatasetStats(
        kind=project.kind, source=str(source or project.path or project.image_root), num_images=len(project.images),
        class_names=[c.name for c in project.categories],
        boxes_per_class=np.bincount(labels[labels >= 0], minlength=num_classes).tolist()[:num_classes],
        images_per_class=_images_per_class(project, label_of, num_classes),
        box_labels=labels, widths=widths, heights=heights, aspect_ratios=ratios, crowd=rows[:, 3] > 0,
        width_hist=_even_histogram(widths, bins), height_hist=_even_histogram(heights, bins),
        aspect_hist=_open_histogram(ratios, ASPECT_EDGES), size_buckets=_size_buckets(widths * heights),
        images_without_boxes=[im.file_name for im in project.images if not im.boxes],
        images_without_size=[im.file_name for im in project.images if im.width is None or im.height is None],
        boxes_outside=_boxes_outside(project), problems=[str(p) for p in project.problems])


def _box_rows(project, label_of: dict) -> np.ndarray:
    """(N, 4) float64: class index (-1: a category the project does not list), w, h, crowd."""
    rows = [(label_of.get(box.category_id, -1), box.width, box.height, box.iscrowd)
            for im in project.images for box in im.boxes]
    return np.asarray(rows, np.float64).reshape(-1, 4)


def _images_per_class(project, label_of: dict, num_classes: int) -> list[int]:
    counts = [0] * num_classes
    for im in project.images:
        for k in {label_of.get(box.category_id, -1) for box in im.boxes} - {-1}:
            counts[k] += 1
    return counts


def _even_histogram(values: np.ndarray, bins: int) -> Histogram:
    top = float(values.max()) if len(values) else 1.0
    counts, edges = np.histogram(values, bins=bins, range=(0.0, top if top > 0 else 1.0))
    labels = tuple(f"{edges[k]:.4g}-{edges[k + 1]:.4g}" for k in range(bins))
    return Histogram(edges, counts, labels)


def _open_histogram(values: np.ndarray, inner_edges) -> Histogram:
    """Bins ``[-inf, e0), [e0, e1), ..., [eK, inf]``."""
    inner = np.asarray(inner_edges, np.float64)
    counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(inner) + 1)
    names = [_ratio_text(e) for e in inner]
    labels = (f"< {names[0]}", *(f"{a}-{b}" for a, b in zip(names, names[1:])), f">= {names[-1]}")
    return Histogram(np.concatenate([[-np.inf], inner, [np.inf]]), counts, labels)


def _ratio_text(value: float) -> str:
    return f"{value:g}" if value >= 1 else f"1/{1 / value:g}"


def _size_buckets(areas: np.ndarray) -> dict[str, int]:
    small, large = COCO_AREA_EDGES
    return {"small (< 32^2)": int((areas < small).sum()), "medium": int(((areas >= small) & (areas < large)).sum()),
            "large (>= 96^2)": int((areas >= large).sum())}


def _boxes_outside(project) -> list[tuple[str, int]]:
    out = []
    for im in project.images:
        if im.width is None or im.height is None:
            continue
        for box in im.boxes:
            if (box.x1 < -_OUTSIDE_PX or box.y1 < -_OUTSIDE_PX or box.x2 > im.width + _OUTSIDE_PX
                    or box.y2 > im.height + _OUTSIDE_PX):
                out.append((im.file_name, box.id))
    return out
