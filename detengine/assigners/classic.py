"""The matching rules of two codebases our users read: ssd.pytorch's ``match`` (amdegroot,
``layers/box_utils.py``) and d2l's greedy ``assign_anchor_to_bbox`` (d2l sec. 14.4.3)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..boxes import bbox_overlaps
from ..transfers import host_values
from .max_iou import _empty_result, labels_from_gt_inds
from .result import AssignResult, Reason, assign_images, unassigned

__all__ = ["SSDPytorchMatcher", "D2LGreedyAssigner"]


class SSDPytorchMatcher:
    """ssd.pytorch ``match``: every truth forces its best prior (its overlap set to 2, later truths
    winning a shared prior), then priors with best-truth overlap < ``threshold`` are background.
    Nothing is ignored. ``max_overlaps`` holds the real IoU; the code's values (with the 2s) are
    in ``extras["best_truth_overlap"]``."""

    def __init__(self, *, threshold: float = 0.5):
        self.threshold = float(threshold)

    def assign(self, priors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, **unused) -> AssignResult:
        priors = priors[:, :4]
        num_gt, num_priors = gt_boxes.shape[0], priors.shape[0]
        if num_gt == 0 or num_priors == 0:
            return _empty_result(int(num_gt), priors)
        overlaps = bbox_overlaps(gt_boxes, priors)  # (G, A), "jaccard(truths, point_form(priors))"
        _, best_prior_idx = overlaps.max(1)
        best_truth_overlap, best_truth_idx = overlaps.max(0)
        iou = best_truth_overlap.clone()
        best_truth_overlap = best_truth_overlap.index_fill(0, best_prior_idx, 2)  # ensure best prior
        forced_truth = torch.full_like(best_truth_idx, -1)
        forced_truth.scatter_reduce_(0, best_prior_idx, torch.arange(num_gt, device=priors.device), reduce="amax")
        forced = forced_truth >= 0
        best_truth_idx = torch.where(forced, forced_truth, best_truth_idx)  # later truths win
        pos = best_truth_overlap >= self.threshold
        gt_inds = torch.where(pos, best_truth_idx + 1, torch.zeros_like(best_truth_idx))
        reasons = torch.full((num_priors,), Reason.NEG_BELOW_THR, dtype=torch.uint8, device=priors.device)
        reasons[pos] = Reason.POS_ABOVE_THR
        reasons[forced] = Reason.POS_FORCED_BEST_PRIOR
        labels = labels_from_gt_inds(gt_inds, gt_labels)
        extras = {"iou": overlaps, "best_truth_overlap": best_truth_overlap, "best_prior_idx": best_prior_idx}
        return AssignResult(int(num_gt), gt_inds, iou, labels, reasons, extras)


class D2LGreedyAssigner:
    """d2l ``assign_anchor_to_bbox``: anchors with IoU >= ``iou_threshold`` take their best box;
    then, G times, the largest remaining IoU entry assigns its anchor to its box and that row and
    column are discarded (overriding the threshold step). Everything else is background."""

    def __init__(self, *, iou_threshold: float = 0.5):
        self.iou_threshold = float(iou_threshold)

    def assign(self, priors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, **unused) -> AssignResult:
        priors = priors[:, :4]
        num_gt, num_anchors = gt_boxes.shape[0], priors.shape[0]
        if num_gt == 0 or num_anchors == 0:
            return _empty_result(int(num_gt), priors)
        jaccard = bbox_overlaps(priors, gt_boxes)  # (A, G)
        iou = jaccard.clone()
        anchors_bbox_map = torch.full((num_anchors,), -1, dtype=torch.long, device=priors.device)
        max_ious, indices = torch.max(jaccard, dim=1)
        above = max_ious >= self.iou_threshold
        anchors_bbox_map[above] = indices[above]
        reasons = torch.full((num_anchors,), Reason.NEG_BELOW_THR, dtype=torch.uint8, device=priors.device)
        reasons[above] = Reason.POS_ABOVE_THR
        for _ in range(num_gt):
            max_idx = int(torch.argmax(jaccard))
            box_idx, anc_idx = max_idx % num_gt, max_idx // num_gt
            anchors_bbox_map[anc_idx] = box_idx
            reasons[anc_idx] = Reason.POS_GREEDY
            jaccard[:, box_idx] = -1
            jaccard[anc_idx, :] = -1
        gt_inds = anchors_bbox_map + 1
        labels = labels_from_gt_inds(gt_inds, gt_labels)
        return AssignResult(int(num_gt), gt_inds, max_ious, labels, reasons, {"iou": iou.t()})

    def assign_batch(self, priors: Tensor, inside: Tensor, gts, **unused) -> Tensor:
        """(B, A) ``gt_inds`` of a batch's images, each as :meth:`assign` on its ``inside`` priors gives
        them (-1 outside); ``gts`` a :class:`~detengine.heads.base.PaddedGTs`. The greedy picks run for
        the most boxes any image has, every image's at once: the first largest entry of an image's
        (anchor, box) table in row-major order is the same entry with its boxes padded by -1 columns and
        its outside anchors by -1 rows, as long as an inside anchor is left to pick (an image with fewer
        inside anchors than boxes is assigned on its own)."""
        priors = priors[:, :4]
        (b, g), a = gts.mask.shape, int(priors.shape[0])
        outside = torch.full((), -1, dtype=torch.long, device=priors.device)
        if g == 0 or a == 0:
            return unassigned(inside)
        jaccard = bbox_overlaps(priors, gts.boxes.reshape(-1, 4)).view(a, b, g).transpose(0, 1)     # (B, A, G)
        jaccard = torch.where(inside[:, :, None] & gts.mask[:, None, :], jaccard, -1.0).contiguous()
        max_ious, indices = jaccard.max(dim=2)
        gt_inds = torch.where(max_ious >= self.iou_threshold, indices + 1, 0)
        counts = host_values(gts.counts, priors.device)
        flat, images = jaccard.view(b, a * g), torch.arange(b, device=priors.device)
        for step in range(g):
            picked = flat.argmax(dim=1)
            box, anchor = picked.remainder(g), picked.div(g, rounding_mode="floor")
            gt_inds[images, anchor] = torch.where(step < counts, box + 1, gt_inds[images, anchor])
            jaccard[images, :, box] = -1.0
            jaccard[images, anchor, :] = -1.0
        gt_inds = torch.where(inside, gt_inds, outside)
        rows = (inside.sum(dim=1) < counts).nonzero().view(-1).tolist()
        if rows:
            gt_inds[rows] = assign_images(self.assign, priors, inside, gts, rows)[0]
        return gt_inds
