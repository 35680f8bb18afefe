"""Anchors fitted to a dataset: search the anchor generator's settings that cover the project's
boxes best, then measure before and after under the config's real assigner.

What mmdetection's ``tools/analysis_tools/optimize_anchors.py`` does for YOLO (k-means or
differential evolution on the boxes' widths and heights), done for the generators of SSD
(``SSDAnchorGenerator``: per-level ``min_sizes`` / ``max_sizes`` and the aspect ratios) and
RetinaNet-style heads (``AnchorGenerator``: ``octave_base_scale`` and the ratios).

The search works on shapes (every GT and every base anchor centred on one point, as the k-means
of optimize_anchors does): it maximises the share of GTs whose best shape IoU reaches the
assigner's positive threshold plus their mean best IoU, with SciPy's differential evolution
(seeded). The verdict is not the proxy's: both settings are scanned with the dataset scan
(:func:`detengine.scan.scan_project`: real prior positions, the real assigner), and fitted
settings that cover fewer GTs than the starting ones are not offered.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .config import merge_dicts
from .priors import AnchorGenerator, SSDAnchorGenerator
from .scan import ScanResult, scan_project

__all__ = ["AnchorFit", "Coverage", "fit_anchors", "anchor_settings", "shape_best_iou", "grid_best_iou",
           "base_shapes", "base_levels", "gt_boxes_in_input"]

MAX_SEARCH_GTS = 4000        # the shape search samples this many GTs (seeded); the verdict scans all


@dataclass(frozen=True)
class Coverage:
    """Under the real assigner: GTs scanned, those whose best prior IoU reaches ``threshold``,
    their mean best IoU, and the GTs with no positive prior at all."""

    gts: int
    covered: int
    mean_best_iou: float
    zero_positives: int
    threshold: float

    @property
    def share(self) -> float:
        return self.covered / self.gts if self.gts else 0.0

    @classmethod
    def of_scan(cls, scan: ScanResult, threshold: float) -> Coverage:
        rows = scan.rows
        return cls(len(rows), int((rows[:, 0] >= threshold).sum()), float(rows[:, 0].mean()) if len(rows) else 0.0,
                   int((rows[:, 1] < 1).sum()), threshold)


@dataclass(frozen=True)
class AnchorFit:
    """The starting and fitted ``anchor_generator`` settings, their coverage under the real
    assigner, whether the fitted ones are offered (``improved``), and ``snippet``: the config
    lines to paste (the starting ones when nothing better was found)."""

    kind: str
    before: dict
    after: dict
    before_coverage: Coverage
    after_coverage: Coverage
    improved: bool
    shapes_before: list
    shapes_after: list
    gt_wh: np.ndarray

    @property
    def snippet(self) -> str:
        settings = self.after if self.improved else self.before
        items = ", ".join(f"{k}={_py(v)}" for k, v in settings.items())
        return f"model = dict(bbox_head=dict(anchor_generator=dict({items})))"

    def table(self) -> str:
        rows = [("", "before", "after"),
                ("GTs", str(self.before_coverage.gts), str(self.after_coverage.gts)),
                (f"best IoU >= {self.before_coverage.threshold:g}", _share(self.before_coverage),
                 _share(self.after_coverage)),
                ("mean best IoU", f"{self.before_coverage.mean_best_iou:.3f}", f"{self.after_coverage.mean_best_iou:.3f}"),
                ("GTs with no positive", str(self.before_coverage.zero_positives),
                 str(self.after_coverage.zero_positives))]
        width = max(len(r[0]) for r in rows)
        return "\n".join(f"{a:<{width}}  {b:>16}  {c:>16}" for a, b, c in rows)


def _share(c: Coverage) -> str:
    return f"{c.covered} ({100 * c.share:.1f}%)"


def _py(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_py(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    return repr(value)


# --------------------------------------------------------------------------- shapes


def anchor_settings(model_cfg: dict) -> tuple[str, dict]:
    """("ssd" | "anchor", the head's ``anchor_generator`` dict); a ValueError for heads whose
    priors this cannot fit (points, d2l's multibox priors)."""
    gen = dict((model_cfg.get("bbox_head") or {}).get("anchor_generator") or {})
    kind = gen.get("type", "AnchorGenerator")
    if kind in ("SSDAnchorGenerator", "LegacySSDAnchorGenerator"):
        return "ssd", gen
    if kind in ("AnchorGenerator", "LegacyAnchorGenerator") and "octave_base_scale" in gen:
        return "anchor", gen
    raise ValueError(f"fit-anchors fits SSDAnchorGenerator and AnchorGenerator(octave_base_scale=...) settings; "
                     f"this config's head has {kind!r} priors ({_py(gen) if gen else 'none'}): point priors "
                     "(RTMDet, FCOS) have no anchor shapes to fit")


def _generator(kind: str, gen: dict):
    args = {k: v for k, v in gen.items() if k != "type"}
    return SSDAnchorGenerator(**args) if kind == "ssd" else AnchorGenerator(**args)


def base_levels(kind: str, gen: dict) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per level: (stride (2,), the first cell's centre (2,), base anchor shapes (M, 2) as w, h)."""
    made = _generator(kind, gen)
    out = []
    for stride, anchors in zip(made.strides, made.base_anchors, strict=True):
        a = anchors.numpy().astype(np.float64)
        centre = np.array([(a[0, 0] + a[0, 2]) / 2, (a[0, 1] + a[0, 3]) / 2])
        out.append((np.array(stride, np.float64), centre, np.stack([a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]], axis=1)))
    return out


def base_shapes(kind: str, gen: dict) -> list[np.ndarray]:
    """Per level, the (w, h) of the generator's base anchors (network input pixels)."""
    return [shapes for _, _, shapes in base_levels(kind, gen)]


def shape_best_iou(gt_wh: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """Each GT's best IoU with any anchor shape, both centred on one point. (N, 2), (M, 2) -> (N,)."""
    w = np.minimum(gt_wh[:, None, 0], shapes[None, :, 0])
    h = np.minimum(gt_wh[:, None, 1], shapes[None, :, 1])
    inter = w * h
    union = gt_wh[:, None, 0] * gt_wh[:, None, 1] + shapes[None, :, 0] * shapes[None, :, 1] - inter
    return (inter / np.maximum(union, 1e-12)).max(axis=1)


def grid_best_iou(gt_cxcywh: np.ndarray, levels) -> np.ndarray:
    """Each GT's best IoU with any prior of the grid: on each level the prior centre nearest to
    the GT's centre, per axis (the IoU of two boxes of fixed sizes only falls as their centres
    part, along either axis), with each base shape. The priors' own positions, so this is the
    scan's best IoU (priors outside the padded image aside). (N, 4) cx, cy, w, h -> (N,)."""
    best = np.zeros(len(gt_cxcywh))
    c, wh = gt_cxcywh[:, :2], gt_cxcywh[:, 2:]
    for stride, centre, shapes in levels:
        d = c - centre
        off = np.abs(d - np.round(d / stride) * stride)                  # (N, 2) to the nearest centre
        ow = _overlap(off[:, None, 0], wh[:, None, 0], shapes[None, :, 0])
        oh = _overlap(off[:, None, 1], wh[:, None, 1], shapes[None, :, 1])
        inter = ow * oh
        union = wh[:, None, 0] * wh[:, None, 1] + shapes[None, :, 0] * shapes[None, :, 1] - inter
        best = np.maximum(best, (inter / np.maximum(union, 1e-12)).max(axis=1))
    return best


def _overlap(offset, a, b):
    """Length shared by two intervals of lengths ``a``, ``b`` whose centres are ``offset`` apart."""
    return np.maximum(0.0, np.minimum(np.minimum(a, b), (a + b) / 2 - offset))


class _Space:
    """The settings searched for one generator kind: a vector <-> an ``anchor_generator`` dict
    (the keys it does not search are kept)."""

    def __init__(self, kind: str, gen: dict, input_size: float):
        self.kind, self.gen, self.input_size = kind, gen, float(input_size)
        self.levels = len(gen["strides"])

    def bounds(self) -> list[tuple[float, float]]:
        if self.kind == "ssd":           # per level min size (log-spaced), one max/min factor, two ratios
            return [(np.log(2.0), np.log(self.input_size))] * self.levels + [(1.05, 3.0), (1.2, 4.0), (1.2, 5.0)]
        return [(1.0, 12.0), (0.15, 1.0), (1.0, 6.0)]     # octave_base_scale, the ratio below 1, the one above

    def settings(self, x: np.ndarray) -> dict:
        gen = {k: v for k, v in self.gen.items() if k not in ("basesize_ratio_range", "min_sizes", "max_sizes")}
        if self.kind == "ssd":
            mins = np.sort(np.exp(x[:self.levels]))
            factor, a, b = x[self.levels:]
            a, b = sorted((round(float(a), 2), round(float(b), 2)))
            gen["min_sizes"] = [max(1, int(round(m))) for m in mins]
            gen["max_sizes"] = [max(m + 1, int(round(m * factor))) for m in gen["min_sizes"]]
            gen["ratios"] = [[a] if len(r) == 1 else [a, b][:len(r)] if len(r) <= 2 else [a, b] + list(r[2:])
                             for r in self.gen["ratios"]]
            return gen
        scale, low, high = (round(float(v), 3) for v in x)
        gen["octave_base_scale"] = scale
        ratios = list(self.gen["ratios"])
        gen["ratios"] = [low, 1.0, high] if len(ratios) == 3 else sorted({low, 1.0, high})
        return gen


def _objective(space: _Space, gt_cxcywh: np.ndarray, threshold: float) -> Callable[[np.ndarray], float]:
    def cost(x: np.ndarray) -> float:
        try:
            levels = base_levels(space.kind, space.settings(x))
        except (ValueError, ZeroDivisionError):
            return 2.0
        best = grid_best_iou(gt_cxcywh, levels)
        return -float((best >= threshold).mean() + best.mean())
    return cost


def _start_vector(space: _Space, gen: dict) -> np.ndarray | None:
    """The starting settings as a vector of the search space (so the search starts from them)."""
    try:
        if space.kind == "ssd":
            sizes = SSDAnchorGenerator(**{k: v for k, v in gen.items() if k != "type"})
            factor = float(np.median(np.array(sizes.max_sizes) / np.array(sizes.min_sizes)))
            flat = sorted({float(v) for r in gen["ratios"] for v in r})
            a, b = (flat + flat)[:2] if len(flat) < 2 else flat[:2]
            x = np.array([np.log(m) for m in sizes.min_sizes] + [factor, a, b])
        else:
            ratios = sorted(float(r) for r in gen["ratios"])
            x = np.array([float(gen["octave_base_scale"]), ratios[0], ratios[-1]])
    except (TypeError, ValueError, KeyError):
        return None
    lo, hi = np.array(space.bounds()).T
    return np.clip(x, lo, hi)


# --------------------------------------------------------------------------- the fit


def gt_boxes_in_input(items, cfg: dict) -> np.ndarray:
    """Every non-crowd GT of ``items`` in network-input pixels as (cx, cy, w, h), the way the
    config's test pipeline resizes each image (what the scan and the Assignment view see)."""
    from .image_trace import ImageTracer
    tracer = ImageTracer(cfg)
    out = []
    for item in items:
        boxes = np.asarray([b for b, crowd in zip(item.boxes, item.iscrowd, strict=True) if not crowd],
                           np.float64).reshape(-1, 4)
        if len(boxes):
            xyxy = np.asarray(tracer.input_for_size(item.height, item.width).to_input(boxes), np.float64)
            out.append(np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                                 xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 4))


def fit_anchors(items, cfg: dict, categories, *, seed: int = 0, max_iter: int = 60,
                progress: Callable | None = None, cancel=None) -> AnchorFit:
    """Fit the anchor generator of ``cfg`` (a full config dict) to ``items`` (:func:`scan_items`
    of the training split), then scan both settings under the real assigner."""
    from scipy.optimize import differential_evolution

    model_cfg = cfg["model"]
    kind, gen = anchor_settings(model_cfg)
    threshold = float((model_cfg.get("train_cfg") or {}).get("assigner", {}).get("pos_iou_thr", 0.5))
    before_scan = scan_project(items, cfg, categories, cancel=cancel, progress=progress)
    gt = gt_boxes_in_input(items, cfg)
    if len(before_scan.rows) == 0 or len(gt) == 0:
        raise ValueError("the data holds no boxes to fit anchors to")
    gt_wh = gt[:, 2:4]
    rng = np.random.default_rng(seed)
    sample = gt if len(gt) <= MAX_SEARCH_GTS else gt[rng.choice(len(gt), MAX_SEARCH_GTS, replace=False)]
    input_size = gen.get("input_size") or max(max(s) if isinstance(s, (list, tuple)) else s for s in gen["strides"]) * 8
    space = _Space(kind, gen, input_size)
    found = differential_evolution(_objective(space, sample, threshold), space.bounds(), seed=seed, maxiter=max_iter,
                                   tol=1e-6, polish=False, x0=_start_vector(space, gen), updating="deferred")
    after = space.settings(found.x)
    overrides = {"bbox_head": {"anchor_generator": after}}
    after_scan = scan_project(items, merge_dicts(cfg, {"model": overrides}), categories, cancel=cancel)
    before_cov, after_cov = Coverage.of_scan(before_scan, threshold), Coverage.of_scan(after_scan, threshold)
    improved = (after_cov.covered, after_cov.mean_best_iou) > (before_cov.covered, before_cov.mean_best_iou)
    return AnchorFit(kind, gen, after, before_cov, after_cov, improved, base_shapes(kind, gen),
                     base_shapes(kind, after), gt_wh)
