"""FCOS's target rule (Tian et al. 2019, "FCOS", sec. 3.1-3.2), as mmdetection 3.3.0's
``FCOSHead._get_targets_single`` computes it (mmdetection has no assigner object for it).

A point is positive for a GT when it lies strictly inside the GT box (with ``center_sampling``:
strictly inside the GT's centre box ``c +- center_sample_radius * stride`` clipped to the GT) and
``max(l, t, r, b)`` of its distances to the GT box lies in its level's regress range (both ends
included). Of the GTs it qualifies for, the smallest by area takes it (ties to the first GT).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .max_iou import _empty_result, labels_from_gt_inds
from .result import AssignResult, Reason, unassigned

__all__ = ["FCOSAssigner", "INF", "DEFAULT_REGRESS_RANGES"]

INF = 1e8  # mmdetection's fcos_head.INF: an area this large means "not a candidate"
DEFAULT_REGRESS_RANGES = ((-1, 64), (64, 128), (128, 256), (256, 512), (512, INF))


class FCOSAssigner:
    """FCOS's positives. ``assign`` returns the usual :class:`AssignResult` (gt_inds 0 / k + 1, no
    ignored points: FCOS has none; ``max_overlaps`` 0: FCOS uses no overlap) with one
    :class:`Reason` per point, and ``extras``:

    - ``pair_reasons`` (Tensor[G, A] uint8): for every (GT, point) pair the first rule that
      failed (``OUTSIDE_GT``, ``OUTSIDE_CENTER_REGION``, ``OUTSIDE_REGRESS_RANGE``), ``LOST_TO_SMALLER_GT``
      when the point qualified but another GT took it, or ``POS_FCOS``;
    - ``regress_range`` (Tensor[A, 2]): the range of each point's level;
    - ``max_distance`` (Tensor[A]): ``max(l, t, r, b)`` to the GT the point went to, or to the
      GT it came closest to qualifying for (0 without a GT box around it).
    """

    def __init__(self, *, regress_ranges=DEFAULT_REGRESS_RANGES, center_sampling: bool = False,
                 center_sample_radius: float = 1.5):
        self.regress_ranges = tuple(tuple(float(v) for v in r) for r in regress_ranges)
        self.center_sampling = bool(center_sampling)
        self.center_sample_radius = float(center_sample_radius)
        self._ranges: dict = {}

    def assign(self, priors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, *,
               num_level_priors: list[int] | None = None, **unused) -> AssignResult:
        """``priors`` (Tensor[A, 4] ``[x, y, stride_w, stride_h]``), levels of ``num_level_priors``
        points concatenated; ``gt_boxes`` (Tensor[G, 4]) xyxy."""
        if num_level_priors is None or len(num_level_priors) != len(self.regress_ranges):
            raise ValueError(f"FCOSAssigner needs the points per level of {len(self.regress_ranges)} levels "
                             f"(one per regress range), got {num_level_priors}")
        num_gt, num_points = int(gt_boxes.shape[0]), int(priors.shape[0])
        if num_gt == 0 or num_points == 0:
            result = _empty_result(num_gt, priors)
            result.extras = self._extras(priors, num_level_priors, torch.zeros(
                (num_gt, num_points), dtype=torch.uint8, device=priors.device), priors.new_zeros(num_points))
            return result
        ranges = self._point_ranges(priors, num_level_priors)            # (A, 2)
        distances = self._distances(priors, gt_boxes)                    # (A, G, 4) l, t, r, b
        inside_box = distances.min(dim=-1).values > 0                    # (A, G)
        inside = self._inside_center_region(priors, gt_boxes) if self.center_sampling else inside_box
        max_distance = distances.max(dim=-1).values                       # (A, G)
        in_range = (max_distance >= ranges[:, None, 0]) & (max_distance <= ranges[:, None, 1])
        areas = ((gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1]))[None].repeat(num_points, 1)
        areas[~inside] = INF
        areas[~in_range] = INF
        min_area, min_area_inds = areas.min(dim=1)                        # the smallest GT wins, ties to the first
        positive = min_area != INF
        gt_inds = torch.where(positive, min_area_inds + 1, torch.zeros_like(min_area_inds))
        pair = self._pair_reasons(inside_box, inside, in_range, gt_inds)  # (A, G)
        reasons = self._point_reasons(pair, positive)
        shown = self._shown_distance(max_distance, pair, gt_inds)
        labels = labels_from_gt_inds(gt_inds, gt_labels)
        return AssignResult(num_gt, gt_inds, priors.new_zeros(num_points), labels, reasons,
                            self._extras(priors, num_level_priors, pair.t().contiguous(), shown, ranges))

    def assign_batch(self, priors: Tensor, inside: Tensor, gts, *, num_level_priors=None, **unused) -> Tensor:
        """A batch's assignment in one pass: (B, A) ``gt_inds`` of each image as :meth:`assign` gives
        them (-1 off ``inside``: an anchor head's border check; FCOS's own head takes every point); ``gts``
        a :class:`~detengine.heads.base.PaddedGTs`. Each point's decision is its own, so the points left
        out change nothing for the others."""
        g, a = gts.mask.shape[1], int(priors.shape[0])
        if g == 0 or a == 0:
            return unassigned(inside)
        boxes = gts.boxes[:, None]                                       # (B, 1, G, 4)
        ranges = self._point_ranges(priors, num_level_priors)            # (A, 2)
        distances = self._distances(priors, boxes)                       # (B, A, G, 4)
        in_box = self._inside_center_region(priors, boxes) if self.center_sampling else \
            distances.min(dim=-1).values > 0
        max_distance = distances.max(dim=-1).values
        ok = in_box & (max_distance >= ranges[:, None, 0]) & (max_distance <= ranges[:, None, 1]) & gts.mask[:, None]
        areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])     # (B, 1, G)
        min_area, min_area_inds = torch.where(ok, areas, INF).min(dim=2)  # the smallest GT wins, ties to the first
        return torch.where(inside, torch.where(min_area != INF, min_area_inds + 1, 0), -1)

    def _point_ranges(self, priors: Tensor, num_level_priors) -> Tensor:
        """(A, 2) the regress range of each point's level (float32, as the reference); kept per
        level layout (on a GPU the table's copy and a tensor ``repeat_interleave`` are host syncs)."""
        key = (tuple(num_level_priors), priors.dtype, priors.device)
        table = self._ranges.get(key)
        if table is None:
            ranges = np.repeat(np.asarray(self.regress_ranges, dtype=np.float64), list(num_level_priors), axis=0)
            table = self._ranges[key] = torch.from_numpy(ranges).to(priors)
        return table

    @staticmethod
    def _distances(priors: Tensor, gt_boxes: Tensor) -> Tensor:
        """(A, G, 4) ``(x - x1, y - y1, x2 - x, y2 - y)`` of every point to every GT box (``gt_boxes``
        (G, 4)); (B, A, G, 4) for a batch's (B, 1, G, 4)."""
        xs, ys = priors[:, 0, None], priors[:, 1, None]
        return torch.stack((xs - gt_boxes[..., 0], ys - gt_boxes[..., 1], gt_boxes[..., 2] - xs, gt_boxes[..., 3] - ys), -1)

    def _inside_center_region(self, priors: Tensor, gt_boxes: Tensor) -> Tensor:
        """(A, G) point strictly inside the GT's centre box ``c +- radius * stride`` (the stride of
        the point's level), clipped to the GT box (FCOS sec. 3.2 / the official "center sampling");
        (B, A, G) for a batch's (B, 1, G, 4) boxes."""
        radius = priors[:, 2, None] * self.center_sample_radius      # (A, 1): stride * radius
        cx = (gt_boxes[..., 0] + gt_boxes[..., 2]) / 2
        cy = (gt_boxes[..., 1] + gt_boxes[..., 3]) / 2
        x1 = torch.maximum(cx - radius, gt_boxes[..., 0])
        y1 = torch.maximum(cy - radius, gt_boxes[..., 1])
        x2 = torch.minimum(cx + radius, gt_boxes[..., 2])
        y2 = torch.minimum(cy + radius, gt_boxes[..., 3])
        xs, ys = priors[:, 0, None], priors[:, 1, None]
        return torch.stack((xs - x1, ys - y1, x2 - xs, y2 - ys), -1).min(dim=-1).values > 0

    @staticmethod
    def _pair_reasons(inside_box: Tensor, inside: Tensor, in_range: Tensor, gt_inds: Tensor) -> Tensor:
        """(A, G) the first rule each (point, GT) pair failed, in the reference's order."""
        pair = torch.full(inside_box.shape, Reason.POS_FCOS, dtype=torch.uint8, device=inside_box.device)
        mine = gt_inds[:, None] == torch.arange(1, inside_box.shape[1] + 1, device=gt_inds.device)
        pair[~mine] = Reason.LOST_TO_SMALLER_GT
        pair[~in_range] = Reason.OUTSIDE_REGRESS_RANGE
        pair[~inside] = Reason.OUTSIDE_CENTER_REGION
        pair[~inside_box] = Reason.OUTSIDE_GT
        return pair

    @staticmethod
    def _point_reasons(pair: Tensor, positive: Tensor) -> Tensor:
        """(A,) positives ``POS_FCOS``; a negative gets the furthest rule any GT reached."""
        stage = torch.zeros(pair.shape, dtype=torch.long, device=pair.device)
        stage[pair == Reason.OUTSIDE_CENTER_REGION] = 1
        stage[pair == Reason.OUTSIDE_REGRESS_RANGE] = 2
        codes = torch.tensor([Reason.NOT_INSIDE_ANY_GT, Reason.OUTSIDE_CENTER_REGION, Reason.OUTSIDE_REGRESS_RANGE],
                             dtype=torch.uint8, device=pair.device)
        reasons = codes[stage.max(dim=1).values]
        reasons[positive] = Reason.POS_FCOS
        return reasons

    @staticmethod
    def _shown_distance(max_distance: Tensor, pair: Tensor, gt_inds: Tensor) -> Tensor:
        """(A,) ``max(l, t, r, b)`` to the point's GT; for a negative, to the first GT whose box
        (centre region) holds it but whose range did not fit; else 0."""
        rows = torch.arange(pair.shape[0], device=pair.device)
        column = torch.where(gt_inds > 0, gt_inds - 1, (pair == Reason.OUTSIDE_REGRESS_RANGE).to(torch.uint8).argmax(1))
        near = (gt_inds > 0) | (pair == Reason.OUTSIDE_REGRESS_RANGE).any(1)
        return torch.where(near, max_distance[rows, column], torch.zeros_like(max_distance[:, 0]))

    def _extras(self, priors, num_level_priors, pair_reasons, max_distance, ranges=None) -> dict[str, Tensor]:
        if ranges is None:
            ranges = self._point_ranges(priors, num_level_priors) if priors.shape[0] else priors.new_zeros((0, 2))
        return {"pair_reasons": pair_reasons, "regress_range": ranges.clone(), "max_distance": max_distance}
