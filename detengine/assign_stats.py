"""Assignment statistics of a training batch, from the targets the loss was computed with (no
extra pass): how many GTs got no positive prior (all, and by COCO size bucket), positives per GT,
positives per pyramid level, ignored priors. The trainer records them at each logging interval
under the stable names of :data:`STAT_NAMES` (the log, TensorBoard, ``results.csv``, the window).

Size buckets are COCO's (area below 32², below 96², above) measured on the GT as the network
sees it (input pixels of the augmented batch), since that is what the assigner matched.
"""
from __future__ import annotations

import torch

__all__ = ["assignment_stats", "SIZE_BUCKETS", "stat_names"]

SIZE_BUCKETS = (("small", 0.0, 32.0 ** 2), ("medium", 32.0 ** 2, 96.0 ** 2), ("large", 96.0 ** 2, float("inf")))


def stat_names(num_levels: int) -> list[str]:
    """Every name a batch's statistics can have, in a stable order."""
    return (["assign/num_gts", "assign/gt_zero_pos_frac", "assign/pos_per_gt_mean", "assign/pos_per_gt_median"]
            + [f"assign/gt_zero_pos_frac_{name}" for name, _, _ in SIZE_BUCKETS] + ["assign/ignored"]
            + [f"assign/pos_level_{i}" for i in range(num_levels)])


def assignment_stats(targets, priors, gt_boxes) -> dict[str, float]:
    """The batch's statistics: ``targets`` (one :class:`~detengine.heads.base.Targets` per image),
    ``priors`` (their :class:`~detengine.priors.Priors`), ``gt_boxes`` ((G, 4) input pixels each).
    A size bucket with no GT in this batch is left out (no number rather than a made-up 0)."""
    positives, areas, per_level, ignored = [], [], None, 0
    for t, p, boxes in zip(targets, priors, gt_boxes, strict=True):
        sampled = t.sampling_result
        gts = int(boxes.shape[0])
        positives.append(torch.bincount(sampled.pos_assigned_gt_inds.cpu(), minlength=gts)[:gts])
        wh = (boxes[:, 2:] - boxes[:, :2]).detach().cpu().clamp(min=0)
        areas.append(wh[:, 0] * wh[:, 1])
        offsets = torch.tensor(p.level_offsets[1:-1], dtype=torch.long)
        levels = torch.bincount(torch.bucketize(sampled.pos_inds.cpu(), offsets, right=True), minlength=p.num_levels)
        per_level = levels if per_level is None else per_level + levels
        ignored += int((t.assign_result.gt_inds == -1).sum())
    pos = torch.cat(positives).float() if positives else torch.zeros(0)
    area = torch.cat(areas) if areas else torch.zeros(0)
    out = {"assign/num_gts": float(len(pos)), "assign/ignored": float(ignored)}
    if len(pos):
        out["assign/gt_zero_pos_frac"] = float((pos == 0).float().mean())
        out["assign/pos_per_gt_mean"] = float(pos.mean())
        out["assign/pos_per_gt_median"] = float(pos.median())
    for name, low, high in SIZE_BUCKETS:
        inside = (area >= low) & (area < high)
        if inside.any():
            out[f"assign/gt_zero_pos_frac_{name}"] = float((pos[inside] == 0).float().mean())
    for level, count in enumerate((per_level if per_level is not None else torch.zeros(0)).tolist()):
        out[f"assign/pos_level_{level}"] = float(count)
    return out
