"""SimOTA (Ge et al. 2021, "YOLOX", sec. 2.2 "SimOTA"), as mmdetection 3.3.0's ``SimOTAAssigner``.

Candidates are the points inside ANY GT box or inside ANY GT's centre region ``c +- center_radius
x stride`` (both strict). Cost of (candidate, GT) = ``cls_weight x sum over classes of BCE(score,
one-hot of the GT's class)`` + ``iou_weight x -log(IoU + 1e-7)`` + 1e5 unless the point is inside
both that GT's box and its centre region. Each GT takes its ``k = max(1, int(sum of its top
candidate_topk IoUs))`` cheapest candidates; a point taken by several GTs keeps the cheapest.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..boxes import bbox_overlaps
from .result import AssignResult, Reason

__all__ = ["SimOTAAssigner"]

INF = 100000.0   # SimOTA's own (not 1e8): the penalty and the non-positives' max_overlaps
EPS = 1.0e-7


class SimOTAAssigner:
    """``assign`` needs the head's predictions: ``pred_scores`` (A, C) PROBABILITIES (YOLOX passes
    ``sqrt(sigmoid(class) x sigmoid(objectness))``) and ``pred_boxes`` (A, 4) decoded xyxy;
    ``priors`` (A, 4) ``[x, y, stride_w, stride_h]`` points.

    ``max_overlaps``: the IoU of a positive's predicted box with its GT, ``-1e5`` elsewhere (0
    everywhere without GT or candidate). ``extras``: ``candidate_idxs`` (V,), ``cost`` and
    ``candidate_iou`` (G, V), ``dynamic_ks`` (G,), ``is_in_boxes_and_centers`` (G, V) and
    ``pair_reasons`` (G, A uint8): not a candidate, penalised (not in both this GT's box and centre
    region) and not taken, not among this GT's k cheapest, taken but kept by a cheaper GT, positive.
    """

    needs_predictions = True

    def __init__(self, *, center_radius: float = 2.5, candidate_topk: int = 10, iou_weight: float = 3.0,
                 cls_weight: float = 1.0, iou_calculator=None):
        self.center_radius = center_radius
        self.candidate_topk = int(candidate_topk)
        self.iou_weight, self.cls_weight = iou_weight, cls_weight

    def assign(self, priors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, *, pred_scores: Tensor | None = None,
               pred_boxes: Tensor | None = None, **unused) -> AssignResult:
        if pred_scores is None or pred_boxes is None:
            raise ValueError("SimOTAAssigner needs pred_scores (probabilities) and pred_boxes")
        num_gt, num_priors = int(gt_boxes.shape[0]), int(pred_boxes.shape[0])
        if num_gt == 0 or num_priors == 0:
            return self._nothing(num_gt, pred_boxes, Reason.NO_GT)
        valid, in_both = self.in_gt_and_in_center(priors, gt_boxes)               # (A,), (V, G)
        if int(valid.sum()) == 0:
            return self._nothing(num_gt, pred_boxes, Reason.NOT_SIMOTA_CANDIDATE)
        ious = bbox_overlaps(pred_boxes[valid], gt_boxes)                         # (V, G)
        cost = self._cost(pred_scores[valid], gt_labels, ious, in_both)
        matching, taken, dynamic_ks = self.dynamic_k_matching(cost, ious, num_gt)
        fg = matching.sum(1) > 0
        pos = valid.clone()
        pos[valid] = fg
        matched_gt = matching[fg, :].argmax(1)
        gt_inds = torch.zeros(num_priors, dtype=torch.long, device=pred_boxes.device)
        gt_inds[pos] = matched_gt + 1
        labels = torch.full((num_priors,), -1, dtype=torch.long, device=pred_boxes.device)
        labels[pos] = gt_labels[matched_gt].long()
        max_overlaps = pred_boxes.new_full((num_priors,), -INF, dtype=torch.float32)
        max_overlaps[pos] = (matching * ious).sum(1)[fg]
        pair = self._pair_reasons(valid, in_both, taken, matching)
        reasons = torch.full((num_priors,), Reason.NOT_SIMOTA_CANDIDATE, dtype=torch.uint8, device=valid.device)
        reasons[valid] = Reason.NOT_IN_SIMOTA_K
        reasons[pos] = Reason.POS_SIMOTA
        extras = {"candidate_idxs": valid.nonzero().view(-1), "cost": cost.t().contiguous(),
                  "candidate_iou": ious.t().contiguous(), "dynamic_ks": dynamic_ks,
                  "is_in_boxes_and_centers": in_both.t().contiguous(), "pair_reasons": pair}
        return AssignResult(num_gt, gt_inds, max_overlaps, labels, reasons, extras)

    def in_gt_and_in_center(self, priors: Tensor, gt_boxes: Tensor) -> tuple[Tensor, Tensor]:
        """(A,) point inside any GT box or any GT's centre region; (V, G) of those, inside both
        this GT's box and its centre region (``get_in_gt_and_in_center_info``)."""
        x, y = priors[:, 0, None], priors[:, 1, None]
        sx, sy = priors[:, 2, None], priors[:, 3, None]
        in_gts = torch.stack([x - gt_boxes[:, 0], y - gt_boxes[:, 1], gt_boxes[:, 2] - x, gt_boxes[:, 3] - y],
                             dim=1).min(dim=1).values > 0                           # (A, G)
        cx, cy = (gt_boxes[:, 0] + gt_boxes[:, 2]) / 2.0, (gt_boxes[:, 1] + gt_boxes[:, 3]) / 2.0
        r = self.center_radius
        in_cts = torch.stack([x - (cx - r * sx), y - (cy - r * sy), (cx + r * sx) - x, (cy + r * sy) - y],
                             dim=1).min(dim=1).values > 0                           # (A, G)
        valid = (in_gts.sum(dim=1) > 0) | (in_cts.sum(dim=1) > 0)
        return valid, in_gts[valid, :] & in_cts[valid, :]

    def _cost(self, scores: Tensor, gt_labels: Tensor, ious: Tensor, in_both: Tensor) -> Tensor:
        """(V, G) class BCE summed over classes x cls_weight + -log IoU x iou_weight + 1e5 penalty."""
        num_valid, num_gt = ious.shape
        onehot = F.one_hot(gt_labels.to(torch.int64), scores.shape[-1]).float().unsqueeze(0).repeat(num_valid, 1, 1)
        repeated = scores.unsqueeze(1).repeat(1, num_gt, 1)                          # (V, G, C)
        cls_cost = F.binary_cross_entropy(repeated.to(torch.float32), onehot, reduction="none").sum(-1)
        iou_cost = -torch.log(ious + EPS)
        return cls_cost.to(scores.dtype) * self.cls_weight + iou_cost * self.iou_weight + (~in_both) * INF

    def dynamic_k_matching(self, cost: Tensor, ious: Tensor, num_gt: int) -> tuple[Tensor, Tensor, Tensor]:
        """(V, G) uint8 final matching, (V, G) bool taken by each GT's dynamic k before the
        conflicts were settled, (G,) k."""
        matching = torch.zeros_like(cost, dtype=torch.uint8)
        k_cand = min(self.candidate_topk, ious.size(0))
        topk_ious, _ = torch.topk(ious, k_cand, dim=0)
        dynamic_ks = torch.clamp(topk_ious.sum(0).int(), min=1)
        for g in range(num_gt):
            _, pos_idx = torch.topk(cost[:, g], k=int(dynamic_ks[g]), largest=False)
            matching[:, g][pos_idx] = 1
        taken = matching.bool()
        multi = matching.sum(1) > 1
        if multi.sum() > 0:
            _, cost_argmin = torch.min(cost[multi, :], dim=1)
            matching[multi, :] *= 0
            matching[multi, cost_argmin] = 1
        return matching, taken, dynamic_ks

    @staticmethod
    def _pair_reasons(valid: Tensor, in_both: Tensor, taken: Tensor, matching: Tensor) -> Tensor:
        """(G, A) uint8: why each (GT, point) pair is or is not a match."""
        num_gt = in_both.shape[1]
        sub = torch.full(in_both.shape, Reason.NOT_IN_SIMOTA_K, dtype=torch.uint8, device=valid.device)
        sub[~in_both] = Reason.OUTSIDE_BOX_AND_CENTER
        sub[taken] = Reason.LOST_TO_CHEAPER_GT
        sub[matching.bool()] = Reason.POS_SIMOTA
        pair = torch.full((num_gt, valid.shape[0]), Reason.NOT_SIMOTA_CANDIDATE, dtype=torch.uint8,
                          device=valid.device)
        pair[:, valid] = sub.t()
        return pair

    @staticmethod
    def _nothing(num_gt: int, pred_boxes: Tensor, reason: int) -> AssignResult:
        """No GT, prior or candidate: all negative, max_overlaps 0, as the reference."""
        a = pred_boxes.shape[0]
        dev = pred_boxes.device
        return AssignResult(num_gt, torch.zeros(a, dtype=torch.long, device=dev), pred_boxes.new_zeros(a),
                            torch.full((a,), -1, dtype=torch.long, device=dev),
                            torch.full((a,), reason, dtype=torch.uint8, device=dev),
                            {"pair_reasons": torch.full((num_gt, a), Reason.NOT_SIMOTA_CANDIDATE, dtype=torch.uint8,
                                                        device=dev)})
