"""The geometry and the numbers behind the point assigners' rules, for the Assignment view.

* FCOS (:class:`~detengine.assigners.FCOSAssigner`): a point of level ``l`` is positive for a GT when
  it lies inside the box (inside the centre region ``c +- center_sample_radius x stride`` with
  ``center_sampling``) and ``max(l, t, r, b)`` of its distances to the box lies in the level's
  regress range. Inside a box of width ``w`` and height ``h`` that maximum runs from
  ``max(w, h) / 2`` (the centre) to ``max(w, h)`` (the corners), and the points where it is at
  most ``v`` form the rectangle ``[x2 - v, x1 + v] x [y2 - v, y1 + v]`` inside the box: a
  regress-range bound ``v`` that cuts the box is drawn as that rectangle (the finer level inside,
  the coarser outside).
* SimOTA (:class:`~detengine.assigners.SimOTAAssigner`): candidates lie inside a GT box or inside a
  GT's centre region ``c +- center_radius x stride`` (one square per level); a pair outside
  "box and centre" pays the 1e5 penalty.

:func:`rule_regions` gives those rectangles for one GT (input pixels), :func:`rule_numbers` the
distances / costs of one prior against each GT, for the "Why?" text. Other assigners: nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RuleRegion", "rule_regions", "rule_numbers"]

_INF_RANGE = 1e7        # a regress-range end this large is "no upper bound" (mmdetection's INF is 1e8)


@dataclass(frozen=True)
class RuleRegion:
    """A rectangle of an assigner's rule for one GT: ``kind`` ``"regress_range"`` (the points
    whose ``max(l, t, r, b)`` is at most ``value``) or ``"centre"`` (level ``level``'s centre
    region, half-size ``value``); ``box`` xyxy input pixels; ``label`` a short tag."""

    kind: str
    level: int
    value: float
    box: tuple[float, float, float, float]
    label: str


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-6 else f"{v:.1f}"


def _strides(trace) -> list[float]:
    return [float(s[0]) for s in trace.priors.strides]


def rule_regions(trace, k: int) -> list[RuleRegion]:
    """The rule's rectangles for GT ``k`` of ``trace`` (a :class:`~detengine.trace.DebugTrace`)."""
    if not 0 <= k < len(trace.gt_boxes):
        return []
    x1, y1, x2, y2 = (float(v) for v in trace.gt_boxes[k].tolist())
    params = trace.assigner_params
    if trace.assigner_name == "FCOSAssigner":
        return _fcos_regions((x1, y1, x2, y2), params, _strides(trace))
    if trace.assigner_name == "SimOTAAssigner":
        r = float(params.get("center_radius", 2.5))
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        return [RuleRegion("centre", lv, r * s, (cx - r * s, cy - r * s, cx + r * s, cy + r * s),
                           f"P{lv} centre \u00b1{_fmt(r * s)}") for lv, s in enumerate(_strides(trace))]
    return []


def _fcos_levels(size: float, ranges) -> list[int]:
    """The levels whose regress range meets ``[size / 2, size]`` (``size = max(w, h)``)."""
    return [lv for lv, (lo, hi) in enumerate(ranges) if hi >= size / 2 and lo <= size]


def _fcos_regions(box, params, strides) -> list[RuleRegion]:
    x1, y1, x2, y2 = box
    size = max(x2 - x1, y2 - y1)
    ranges = [tuple(float(v) for v in r) for r in params.get("regress_ranges", ())]
    out = []
    for lv, (lo, hi) in enumerate(ranges[:-1]):
        v = hi                                          # the bound between level lv and lv + 1
        if not size / 2 < v < size:                     # does not cut the box: one side holds all of it
            continue
        rect = (max(x1, x2 - v), max(y1, y2 - v), min(x2, x1 + v), min(y2, y1 + v))
        out.append(RuleRegion("regress_range", lv, v, rect, f"max(l,t,r,b) \u2264 {_fmt(v)}: P{lv} in, P{lv + 1} out"))
    if params.get("center_sampling"):
        r = float(params.get("center_sample_radius", 1.5))
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        for lv in _fcos_levels(size, ranges):
            if lv >= len(strides):
                continue
            d = r * strides[lv]
            rect = (max(x1, cx - d), max(y1, cy - d), min(x2, cx + d), min(y2, cy + d))
            out.append(RuleRegion("centre", lv, d, rect, f"P{lv} centre \u00b1{_fmt(d)}"))
    return out


def rule_numbers(trace, prior: int) -> list[str]:
    """The numbers the rule compared for ``prior`` (FCOS: ``l, t, r, b`` to each GT box holding the
    point, their maximum against the level's regress range, the centre region; SimOTA: the
    candidate's cost for each GT, its rank among the GT's candidates against the GT's dynamic k,
    the IoU of its predicted box); ``[]`` for other assigners (their numbers are IoUs)."""
    if not 0 <= prior < len(trace.priors) or len(trace.gt_boxes) == 0:
        return []
    if trace.assigner_name == "FCOSAssigner":
        return _fcos_numbers(trace, prior)
    if trace.assigner_name == "SimOTAAssigner":
        return _simota_numbers(trace, prior)
    return []


def _fcos_numbers(trace, prior: int) -> list[str]:
    params = trace.assigner_params
    ranges = [tuple(float(v) for v in r) for r in params.get("regress_ranges", ())]
    level = int(trace.priors.level[prior])
    x, y = (float(v) for v in trace.priors.centers[prior].tolist())
    stride = _strides(trace)[level]
    lo, hi = ranges[level] if level < len(ranges) else (float("nan"),) * 2
    shown_hi = "inf" if hi >= _INF_RANGE else _fmt(hi)
    lines = [f"FCOS: point ({_fmt(x)}, {_fmt(y)}), stride {_fmt(stride)}; P{level}'s regress range "
             f"[{_fmt(lo)}, {shown_hi}] for max(l, t, r, b)"]
    centre = float(params.get("center_sample_radius", 1.5)) * stride if params.get("center_sampling") else None
    for k, (x1, y1, x2, y2) in enumerate(trace.gt_boxes.tolist()):
        d = (x - x1, y - y1, x2 - x, y2 - y)
        if min(d) <= 0:                                 # outside the box: the per-GT rule says so
            continue
        m = max(d)
        fits = lo <= m <= hi
        text = (f"  GT{k}: l, t, r, b = {', '.join(_fmt(v) for v in d)}; max {_fmt(m)} "
                f"{'within' if fits else 'outside'} [{_fmt(lo)}, {shown_hi}]")
        if not fits:
            good = [f"P{lv}" for lv, (a, b) in enumerate(ranges) if a <= m <= b]
            text += f" (fits {', '.join(good)})" if good else ""
        if centre is not None:
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            inside = abs(x - cx) < centre and abs(y - cy) < centre
            text += f"; {'inside' if inside else 'outside'} the centre region \u00b1{_fmt(centre)}"
        lines.append(text)
    if len(lines) == 1:
        lines.append("  inside no GT box")
    return lines


def _simota_numbers(trace, prior: int) -> list[str]:
    ex = trace.assign_result.extras
    cand = ex.get("candidate_idxs")
    if cand is None or "cost" not in ex:
        return []
    hit = (cand == prior).nonzero().view(-1)
    r = float(trace.assigner_params.get("center_radius", 2.5))
    stride = _strides(trace)[int(trace.priors.level[prior])]
    if len(hit) == 0:
        return [f"SimOTA: not a candidate (outside every GT box and every centre region \u00b1{_fmt(r * stride)})"]
    v = int(hit[0])
    cost, iou, ks = ex["cost"], ex["candidate_iou"], ex["dynamic_ks"]
    both = ex.get("is_in_boxes_and_centers")
    lines = [f"SimOTA: a candidate; cost = {_fmt_w(trace, 'cls_weight')} x class BCE + "
             f"{_fmt_w(trace, 'iou_weight')} x -log(IoU of its predicted box) (+1e5 outside box and centre "
             f"\u00b1{_fmt(r * stride)})"]
    penalised = []
    for k in range(cost.shape[0]):
        if both is not None and not bool(both[k, v]):
            penalised.append(f"GT{k}")
            continue
        c = float(cost[k, v])
        rank = int((cost[k] < c).sum()) + 1
        ties = int((cost[k] == c).sum()) - 1           # equal costs: topk takes the first ones
        tied = f", tied with {ties} other{'s' if ties > 1 else ''}" if ties else ""
        lines.append(f"  GT{k}: cost {c:.2f}, rank {rank} of {cost.shape[1]}{tied} (its k = {int(ks[k])}), "
                     f"IoU {float(iou[k, v]):.3f}")
    if penalised:
        lines.append(f"  {', '.join(penalised)}: not inside both box and centre region: cost + 1e5")
    return lines


def _fmt_w(trace, key: str) -> str:
    value = trace.assigner_params.get(key)
    return _fmt(float(value)) if isinstance(value, (int, float)) else "1"
