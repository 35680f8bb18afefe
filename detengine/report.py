"""Text summary and JSON form of a :class:`~detengine.trace.DebugTrace`."""
from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor

from .assigners.result import REASON_TEXT
from .postprocess import STAGE_TEXT

__all__ = ["trace_summary", "trace_to_json", "TRACE_SCHEMA"]

TRACE_SCHEMA = "detscope.trace/1"


def _fmt_box(box) -> str:
    return "(" + ", ".join(f"{float(v):.1f}" for v in box) + ")"


def _priors_lines(trace) -> list[str]:
    p = trace.priors
    kind = "points" if p.is_point else "anchors"
    lines = [f"priors: {len(p)} {kind} on {p.num_levels} levels (valid {int(p.valid.sum())})"]
    for lvl, ((h, w), (sw, sh), a, n) in enumerate(zip(p.featmap_sizes, p.strides, p.num_base_priors,
                                                        p.num_per_level)):
        lines.append(f"  level {lvl}: stride {sw:g}x{sh:g}, feature {h}x{w}, {a} per cell, {n} priors")
    return lines


def _gt_lines(trace) -> list[str]:
    ar, cov = trace.assign_result, trace.coverage
    if trace.gt_boxes.shape[0] == 0:
        return ["ground truth: none (every prior is negative)"]
    lines = [f"ground truth: {trace.gt_boxes.shape[0]} boxes; assigner {trace.assigner_name}",
             "  gt  label  box (x1, y1, x2, y2)         best IoU  level  base  IoU>=.5  positives per level"]
    for row in cov.rows():
        i = row["gt"]
        flag = "  <- NO POSITIVE" if row["num_pos"] == 0 else ""
        n05 = "-" if row["num_iou_ge_05"] < 0 else str(row["num_iou_ge_05"])
        lines.append(f"  {i:<3} {int(trace.gt_labels[i]):<6} {_fmt_box(trace.gt_boxes[i]):<28} "
                     f"{row['best_iou']:8.3f}  {row['best_level']:>5}  {row['best_base_index']:>4}  {n05:>7}  "
                     f"{row['num_pos']} = {row['num_pos_per_level']}{flag}")
    lines.append(f"priors: {ar.num_pos} positive, {ar.num_neg} negative, {ar.num_ignored} ignored")
    missing = [r["gt"] for r in cov.rows() if r["num_pos"] == 0]
    lines.append(f"GTs with no positive: {missing if missing else 'none'}")
    forced = [r["gt"] for r in cov.rows() if r["weak"] and r["num_pos"] > 0]
    if forced:
        lines.append(f"GTs no prior covers at IoU >= 0.5 (positive only by a forced / low-quality rule): {forced}")
    weak = [r["gt"] for r in cov.rows() if r["weak"]]
    lines.append(f"weak GTs (no positive, or no prior at IoU >= 0.5; the window's red rows): {weak if weak else 'none'}")
    return lines


def _reason_lines(trace) -> list[str]:
    reasons = trace.assign_result.reasons
    if reasons is None:
        return []
    counts = Counter(reasons.tolist())
    lines = ["why (priors per rule):"]
    for code, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {n:>7}  {REASON_TEXT[code]}")
    return lines


def _loss_lines(trace) -> list[str]:
    if trace.loss is None:
        return ["loss: not computed, no head outputs given (CLI: --random-preds SEED or --init-preds)"]
    b = trace.loss_breakdown
    terms = ", ".join(f"{k} {v:.6f}" for k, v in b["terms"].items())
    lines = [f"loss ({trace.predictions_source} predictions): total {b['total']:.6f} = {terms}; "
             f"avg_factor {b['avg_factor']:g}"]
    names = list(b["per_level"])                 # cls, bbox, then the head's further terms (centerness, DFL, obj)
    short = {n: n.removeprefix("loss_").replace("centerness", "ctr") for n in names}
    for lvl in range(len(b["per_level"]["loss_cls"])):
        lines.append(f"  level {lvl}: " + "  ".join(f"{short[n]} {b['per_level'][n][lvl]:.6f}" for n in names))
    for i in range(len(b["per_gt"]["loss_cls"])):
        lines.append(f"  gt {i}: " + "  ".join(f"{short[n]} {b['per_gt'][n][i]:.6f}" for n in names))
    lines.append(f"  classification from positives {b['cls_positive']:.6f}, from negatives {b['cls_negative']:.6f}")
    hard = trace.hard_negative_mask
    if hard is not None:
        lines.append(f"  hard negatives mined: {int(hard.sum())} of {trace.assign_result.num_neg} negatives")
    return lines


def _post_lines(trace) -> list[str]:
    pp = trace.postprocess
    if pp is None:
        return []
    counts = " -> ".join(f"{k} {v}" for k, v in pp.counts.items())
    lines = [f"post-processing: {counts}"]
    for i in range(min(5, int(pp.boxes.shape[0]))):
        lines.append(f"  det {i}: label {int(pp.labels[i])} score {float(pp.scores[i]):.4f} {_fmt_box(pp.boxes[i])}")
    return lines


def trace_summary(trace) -> str:
    """Readable report: priors per level, positives per GT and level, GTs with no positive,
    the loss breakdown and the post-processing counts when predictions were given."""
    head = (f"{trace.head_type} ({trace.num_classes} classes), input {trace.input_shape[1]}x"
            f"{trace.input_shape[0]} (w x h)")
    parts = [[head], _priors_lines(trace), _gt_lines(trace), _reason_lines(trace), _loss_lines(trace),
             _post_lines(trace)]
    return "\n".join(line for part in parts for line in part)


def _tolist(t: Tensor | None, ndigits: int | None = 4):
    if t is None:
        return None
    if t.is_floating_point():
        t = t.detach().float()
        return torch.round(t, decimals=ndigits).tolist() if ndigits is not None else t.tolist()
    return t.tolist()


def _priors_json(p) -> dict:
    levels = []
    for lvl in range(p.num_levels):
        sl = p.level_slice(lvl)
        levels.append({"level": lvl, "stride": list(p.strides[lvl]), "featmap_size": list(p.featmap_sizes[lvl]),
                       "num_base_priors": p.num_base_priors[lvl], "num_priors": p.num_per_level[lvl],
                       "offset": sl.start, "priors": _tolist(p.tensor[sl])})
    return {"kind": "points" if p.is_point else "anchors",
            "layout": "[x, y, stride_w, stride_h]" if p.is_point else "[x1, y1, x2, y2]",
            "order": "level, row, column, base prior", "levels": levels, "valid": _tolist(p.valid)}


def _assign_json(trace) -> dict:
    ar = trace.assign_result
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in trace.assigner_params.items()
              if isinstance(v, (int, float, str, bool, tuple, list, type(None)))}
    return {"assigner": trace.assigner_name, "params": params, "num_gts": ar.num_gts,
            "gt_inds": _tolist(ar.gt_inds), "max_overlaps": _tolist(ar.max_overlaps),
            "labels": _tolist(ar.labels), "reasons": _tolist(ar.reasons),
            "reason_text": {str(k): v for k, v in REASON_TEXT.items()}}


def _targets_json(trace) -> dict:
    t = trace.targets
    pos = t.sampling_result.pos_inds
    hard = trace.hard_negative_mask
    return {"labels": _tolist(t.labels), "label_weights": _tolist(t.label_weights),
            "pos_inds": _tolist(pos), "pos_assigned_gt": _tolist(t.sampling_result.pos_assigned_gt_inds),
            "pos_bbox_targets": _tolist(t.bbox_targets[pos], 6), "pos_bbox_weights": _tolist(t.bbox_weights[pos]),
            "num_neg": int(t.sampling_result.neg_inds.numel()),
            "hard_negative_inds": None if hard is None else _tolist(hard.nonzero().view(-1))}


def _loss_json(trace) -> dict | None:
    if trace.loss is None:
        return None
    out = dict(trace.loss_breakdown)
    out["cls_per_prior"] = _tolist(trace.loss.cls_per_prior, 8)
    out["bbox_per_prior"] = _tolist(trace.loss.bbox_per_prior, 8)
    return out


def _post_json(trace) -> dict | None:
    pp = trace.postprocess
    if pp is None:
        return None
    return {"params": pp.params, "counts": pp.counts,
            "detections": {"boxes": _tolist(pp.boxes, 2), "scores": _tolist(pp.scores, 6),
                           "labels": _tolist(pp.labels), "candidate": _tolist(pp.kept)},
            "candidates": {"prior": _tolist(pp.cand_prior), "label": _tolist(pp.cand_label),
                           "score": _tolist(pp.cand_score, 6), "box": _tolist(pp.cand_box, 2),
                           "stage": _tolist(pp.cand_stage), "suppressed_by": _tolist(pp.suppressed_by),
                           "suppressed_iou": _tolist(pp.suppressed_iou, 4)},
            "raw_stage_counts": {str(k): int((pp.raw_stage == k).sum()) for k in STAGE_TEXT},
            "stage_text": {str(k): v for k, v in STAGE_TEXT.items()}}


def trace_to_json(trace) -> dict:
    """The whole trace as plain JSON data; see README "Trace JSON"."""
    return {
        "schema": TRACE_SCHEMA,
        "model": trace.model_cfg,
        "head": trace.head_type, "num_classes": trace.num_classes, "score_layout": trace.score_layout,
        "input_shape": list(trace.input_shape), "pad_shape": list(trace.pad_shape) if trace.pad_shape else None,
        "priors": _priors_json(trace.priors),
        "gt": {"boxes": _tolist(trace.gt_boxes), "labels": _tolist(trace.gt_labels),
               "ignore_boxes": _tolist(trace.gt_boxes_ignore)},
        "assign": _assign_json(trace),
        "gt_coverage": trace.coverage.rows(),
        "targets": _targets_json(trace),
        "predictions": trace.predictions_source,
        "loss": _loss_json(trace),
        "postprocess": _post_json(trace),
    }
