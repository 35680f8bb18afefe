"""mmdetection's ``MaxIoUAssigner`` (SSD, RetinaNet, Faster R-CNN)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..boxes import bbox_overlaps
from .result import AssignResult, Reason, ignores_given, unassigned

__all__ = ["MaxIoUAssigner", "labels_from_gt_inds"]


def labels_from_gt_inds(gt_inds: Tensor, gt_labels: Tensor) -> Tensor:
    """(A,) class of the assigned GT where ``gt_inds > 0``, else -1."""
    labels = gt_inds.new_full(gt_inds.shape, -1)
    pos = gt_inds > 0
    if pos.any():
        labels[pos] = gt_labels[gt_inds[pos] - 1].long()
    return labels


def _empty_result(num_gts: int, priors: Tensor) -> AssignResult:
    """No GT: every prior negative. No prior: empty tensors."""
    a = priors.shape[0]
    gt_inds = torch.zeros(a, dtype=torch.long, device=priors.device)
    labels = torch.full((a,), -1, dtype=torch.long, device=priors.device)
    reasons = torch.full((a,), Reason.NO_GT, dtype=torch.uint8, device=priors.device)
    return AssignResult(num_gts, gt_inds, priors.new_zeros(a), labels, reasons,
                        {"iou": priors.new_zeros((num_gts, a))})


class MaxIoUAssigner:
    """Each prior takes the GT it overlaps most (mmdetection ``assign_wrt_overlaps``).

    Order of the rules, as the reference: all -1; negatives where ``0 <= max IoU < neg_iou_thr``
    (or inside a ``(lo, hi)`` range); positives where ``max IoU >= pos_iou_thr`` (ties to the first
    GT); then, with ``match_low_quality``, every GT whose best IoU >= ``min_pos_iou`` takes its best
    prior (all tied priors when ``gt_max_assign_all``), later GTs overwriting earlier ones. Priors
    whose IoF with an ignored box exceeds ``ignore_iof_thr`` (when > 0) have their IoUs set to -1.

    SSD: ``pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0., gt_max_assign_all=False``.
    RetinaNet: ``pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0`` (gt_max_assign_all True).
    """

    def __init__(self, *, pos_iou_thr: float, neg_iou_thr, min_pos_iou: float = 0.0,
                 gt_max_assign_all: bool = True, ignore_iof_thr: float = -1,
                 ignore_wrt_candidates: bool = True, match_low_quality: bool = True,
                 gpu_assign_thr: float = -1, iou_calculator=None):
        if isinstance(neg_iou_thr, (list, tuple)):
            if len(neg_iou_thr) != 2:
                raise ValueError(f"neg_iou_thr range must be (lo, hi), got {neg_iou_thr!r}")
            neg_iou_thr = (float(neg_iou_thr[0]), float(neg_iou_thr[1]))
        self.pos_iou_thr = float(pos_iou_thr)
        self.neg_iou_thr = neg_iou_thr if isinstance(neg_iou_thr, tuple) else float(neg_iou_thr)
        self.min_pos_iou = float(min_pos_iou)
        self.gt_max_assign_all = gt_max_assign_all
        self.ignore_iof_thr = ignore_iof_thr
        self.ignore_wrt_candidates = ignore_wrt_candidates
        self.match_low_quality = match_low_quality

    def assign(self, priors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, *,
               gt_boxes_ignore: Tensor | None = None, **unused) -> AssignResult:
        """Assign ``priors`` (Tensor[A, 4] xyxy) to ``gt_boxes`` (Tensor[G, 4]) with labels (G,)."""
        priors = priors[:, :4]
        if gt_boxes.shape[0] == 0 or priors.shape[0] == 0:
            return _empty_result(int(gt_boxes.shape[0]), priors)
        iou = bbox_overlaps(gt_boxes, priors)  # (G, A)
        overlaps = iou
        crowd = self._ignored_mask(priors, gt_boxes_ignore)
        if crowd is not None:
            overlaps = iou.clone()
            overlaps[:, crowd] = -1
        result = self.assign_wrt_overlaps(overlaps, gt_labels)
        result.extras["iou"] = iou
        if crowd is not None:
            result.reasons[crowd & (result.gt_inds < 0)] = Reason.IGNORED_CROWD
            result.extras["ignored_by_crowd"] = crowd
        return result

    def assign_batch(self, priors: Tensor, inside: Tensor, gts, *, gt_boxes_ignore=None, **unused) -> Tensor | None:
        """A batch's assignment in one pass: (B, A) ``gt_inds`` of each image as :meth:`assign` on its
        ``inside`` priors (Tensor[B, A] bool) gives them, -1 outside; ``gts`` a
        :class:`~detengine.heads.base.PaddedGTs`. None where ignored boxes take part (per image)."""
        if ignores_given(self.ignore_iof_thr, gt_boxes_ignore):
            return None
        priors = priors[:, :4]
        (b, g), a = gts.mask.shape, int(priors.shape[0])
        outside = torch.full((), -1, dtype=torch.long, device=priors.device)
        if g == 0 or a == 0:
            return unassigned(inside)
        overlaps = bbox_overlaps(gts.boxes.reshape(-1, 4), priors).view(b, g, a)
        # padding and outside priors below every IoU: they neither win a prior nor are any GT's best
        overlaps.masked_fill_(~(gts.mask[:, :, None] & inside[:, None, :]), -2.0)
        max_overlaps, argmax_overlaps = overlaps.max(dim=1)         # (B, A) best GT of each prior
        gt_max_overlaps, gt_argmax_overlaps = overlaps.max(dim=2)   # (B, G) best prior of each GT
        lo, hi = self.neg_iou_thr if isinstance(self.neg_iou_thr, tuple) else (0.0, self.neg_iou_thr)
        gt_inds = torch.where((max_overlaps >= lo) & (max_overlaps < hi), 0, -1)
        gt_inds = torch.where(max_overlaps >= self.pos_iou_thr, argmax_overlaps + 1, gt_inds)
        if self.match_low_quality:
            eligible = (gt_max_overlaps >= self.min_pos_iou) & gts.mask
            gt_ids = torch.arange(1, g + 1, device=priors.device)
            if self.gt_max_assign_all:
                hit = (overlaps == gt_max_overlaps[:, :, None]) & eligible[:, :, None]
                small = gt_ids.to(torch.int32)[:, None]                            # (B, G, A): half the bytes
                winner = torch.where(hit, small, 0).amax(dim=1).long()           # the last GT wins
            else:
                flat = (gt_argmax_overlaps + torch.arange(b, device=priors.device)[:, None] * a)[eligible]
                winner = torch.zeros(b * a, dtype=torch.long, device=priors.device)
                winner.scatter_reduce_(0, flat, gt_ids.expand(b, g)[eligible], reduce="amax")
                winner = winner.view(b, a)
            gt_inds = torch.where(winner > 0, winner, gt_inds)
        no_gt = ~gts.mask.any(dim=1, keepdim=True)                              # every prior negative
        return torch.where(inside, torch.where(no_gt, 0, gt_inds), outside)

    def _ignored_mask(self, priors: Tensor, gt_boxes_ignore: Tensor | None) -> Tensor | None:
        if not (self.ignore_iof_thr > 0 and gt_boxes_ignore is not None and gt_boxes_ignore.numel() > 0):
            return None
        if self.ignore_wrt_candidates:
            iof = bbox_overlaps(priors, gt_boxes_ignore, mode="iof").max(dim=1).values
        else:
            iof = bbox_overlaps(gt_boxes_ignore, priors, mode="iof").max(dim=0).values
        return iof > self.ignore_iof_thr

    def assign_wrt_overlaps(self, overlaps: Tensor, gt_labels: Tensor) -> AssignResult:
        """Assign from an IoU matrix ``overlaps`` (Tensor[G, A])."""
        num_gts, num_priors = overlaps.shape
        if num_gts == 0 or num_priors == 0:
            return _empty_result(num_gts, overlaps.new_zeros((num_priors, 4)))
        gt_inds = overlaps.new_full((num_priors,), -1, dtype=torch.long)
        reasons = torch.full((num_priors,), Reason.IGNORED_BETWEEN_THR, dtype=torch.uint8,
                             device=overlaps.device)
        max_overlaps, argmax_overlaps = overlaps.max(dim=0)       # best GT of each prior
        gt_max_overlaps, gt_argmax_overlaps = overlaps.max(dim=1)  # best prior of each GT
        self._assign_negatives(max_overlaps, gt_inds, reasons)
        pos = max_overlaps >= self.pos_iou_thr
        gt_inds[pos] = argmax_overlaps[pos] + 1
        reasons[pos] = Reason.POS_ABOVE_THR
        if self.match_low_quality:
            self._match_low_quality(overlaps, gt_max_overlaps, gt_argmax_overlaps, gt_inds, reasons)
        labels = labels_from_gt_inds(gt_inds, gt_labels)
        extras = {"gt_max_overlaps": gt_max_overlaps, "gt_argmax_overlaps": gt_argmax_overlaps}
        return AssignResult(num_gts, gt_inds, max_overlaps, labels, reasons, extras)

    def _assign_negatives(self, max_overlaps: Tensor, gt_inds: Tensor, reasons: Tensor) -> None:
        if isinstance(self.neg_iou_thr, tuple):
            lo, hi = self.neg_iou_thr
            reasons[(max_overlaps >= 0) & (max_overlaps < lo)] = Reason.IGNORED_BELOW_NEG_RANGE
        else:
            lo, hi = 0.0, self.neg_iou_thr
        neg = (max_overlaps >= lo) & (max_overlaps < hi)
        gt_inds[neg] = 0
        reasons[neg] = Reason.NEG_BELOW_THR

    def _match_low_quality(self, overlaps, gt_max_overlaps, gt_argmax_overlaps, gt_inds, reasons):
        """Every GT with best IoU >= min_pos_iou takes its best prior(s); later GTs win ties."""
        num_gts = overlaps.shape[0]
        eligible = gt_max_overlaps >= self.min_pos_iou  # (G,)
        if not eligible.any():
            return
        gt_ids = torch.arange(1, num_gts + 1, device=overlaps.device)
        if self.gt_max_assign_all:
            hit = (overlaps == gt_max_overlaps[:, None]) & eligible[:, None]  # (G, A)
            winner = (hit.long() * gt_ids[:, None]).max(dim=0).values       # last GT wins
        else:
            winner = torch.zeros_like(gt_inds)
            winner.scatter_reduce_(0, gt_argmax_overlaps[eligible], gt_ids[eligible], reduce="amax")
        forced = winner > 0
        changed = forced & (gt_inds != winner)
        gt_inds[forced] = winner[forced]
        reasons[changed] = Reason.POS_LOW_QUALITY
