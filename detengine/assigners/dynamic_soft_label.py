"""RTMDet's ``DynamicSoftLabelAssigner`` (Lyu et al. 2022, "RTMDet", sec. 3.2), as mmdetection 3.x."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..boxes import bbox_overlaps
from .max_iou import _empty_result
from .result import AssignResult, Reason, assign_images, unassigned

__all__ = ["DynamicSoftLabelAssigner"]

INF = 100000000
EPS = 1.0e-7


class DynamicSoftLabelAssigner:
    """Dynamic-k matching on a soft-label cost.

    Candidates are priors whose point lies strictly inside some GT. Cost of (prior, GT) =
    ``BCE(logit, IoU * onehot) * |IoU * onehot - sigmoid(logit)|^2`` summed over classes
    ``+ iou_weight * -log(IoU + 1e-7) + 10 ** (distance / stride - soft_center_radius)``.
    Each GT takes its ``k = max(1, int(sum of its topk IoUs))`` cheapest candidates; a prior
    taken by several GTs keeps the cheapest. Needs the head's predictions (scores are logits).
    """

    def __init__(self, *, soft_center_radius: float = 3.0, topk: int = 13, iou_weight: float = 3.0,
                 iou_calculator=None):
        self.soft_center_radius = soft_center_radius
        self.topk = int(topk)
        self.iou_weight = iou_weight

    def assign(self, priors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, *,
               pred_scores: Tensor | None = None, pred_boxes: Tensor | None = None,
               **unused) -> AssignResult:
        """``priors`` (Tensor[A, 4] ``[x, y, stride_w, stride_h]``), ``pred_scores`` (Tensor[A, C]
        logits), ``pred_boxes`` (Tensor[A, 4] decoded xyxy)."""
        if pred_scores is None or pred_boxes is None:
            raise ValueError("DynamicSoftLabelAssigner needs pred_scores and pred_boxes")
        num_gt, num_priors = gt_boxes.shape[0], pred_boxes.shape[0]
        if num_gt == 0 or num_priors == 0:
            return _empty_result(int(num_gt), pred_boxes)
        gt_inds = pred_boxes.new_full((num_priors,), 0, dtype=torch.long)
        reasons = torch.full((num_priors,), Reason.NOT_INSIDE_ANY_GT, dtype=torch.uint8, device=priors.device)
        center = priors[:, :2]
        deltas = torch.cat([center[:, None] - gt_boxes[:, :2], gt_boxes[:, 2:] - center[:, None]], dim=-1)
        is_in_gts = deltas.min(dim=-1).values > 0  # (A, G)
        valid_mask = is_in_gts.sum(dim=1) > 0
        num_valid = int(valid_mask.sum())
        labels = gt_inds.new_full((num_priors,), -1)
        if num_valid == 0:
            return AssignResult(int(num_gt), gt_inds, pred_boxes.new_zeros(num_priors), labels, reasons,
                                {"is_in_gts": is_in_gts.t()})
        reasons[valid_mask] = Reason.NOT_IN_DYNAMIC_K
        cost, ious = self._cost(priors[valid_mask], pred_boxes[valid_mask], pred_scores[valid_mask],
                                gt_boxes, gt_labels)
        matched_ious, matched_gt, fg, dynamic_ks = self.dynamic_k_matching(cost, ious, int(num_gt))
        pos_mask = valid_mask.clone()
        pos_mask[valid_mask] = fg
        gt_inds[pos_mask] = matched_gt + 1
        labels[pos_mask] = gt_labels[matched_gt].long()
        reasons[pos_mask] = Reason.POS_DYNAMIC_K
        max_overlaps = gt_inds.new_full((num_priors,), -INF, dtype=torch.float32)
        max_overlaps[pos_mask] = matched_ious
        extras = {"is_in_gts": is_in_gts.t(), "candidate_idxs": valid_mask.nonzero().view(-1),
                  "cost": cost.t(), "candidate_iou": ious.t(), "dynamic_ks": dynamic_ks}
        return AssignResult(int(num_gt), gt_inds, max_overlaps, labels, reasons, extras)

    def assign_batch(self, priors: Tensor, inside: Tensor, gts, *, pred_scores: Tensor, pred_boxes: Tensor,
                     **unused) -> tuple[Tensor, Tensor]:
        """A batch's assignment in one pass: (B, A) ``gt_inds`` of each image as :meth:`assign` on its
        ``inside`` priors gives them (-1 outside) and (B, A) the matched IoUs (0 off positives);
        ``gts`` a :class:`~detengine.heads.base.PaddedGTs`, ``pred_scores`` (B, A, C) logits,
        ``pred_boxes`` (B, A, 4). Each GT's ``k`` cheapest come from one sorted top-k of the batch:
        the same set as the GT's own ``torch.topk`` unless its k-th and (k+1)-th costs tie, where
        ``torch.topk``'s pick is its own: such an image is assigned on its own, as is one with fewer
        candidates than ``topk`` (its own k sums fewer IoUs, in another order: ``int()`` may differ)."""
        (b, g), a = gts.mask.shape, int(priors.shape[0])
        outside = torch.full((), -1, dtype=torch.long, device=priors.device)
        if g == 0 or a == 0:
            return unassigned(inside), pred_boxes.new_zeros((b, a))
        boxes, real = gts.boxes, gts.mask[:, None, :]                     # (B, G, 4), (B, 1, G)
        center = priors[None, :, None, :2]
        deltas = torch.cat([center - boxes[:, None, :, :2], boxes[:, None, :, 2:] - center], dim=-1)
        candidate = ((deltas.min(dim=-1).values > 0) & real).any(dim=2) & inside      # (B, A)
        pair = candidate[:, :, None] & real                                           # (B, A, G)
        cost, ious = self._cost(priors, pred_boxes, pred_scores, boxes, gts.labels)   # (B, A, G)
        # k of each GT: int(sum of its top-k IoUs over the candidates); 0s past the candidates add nothing
        top_ious = torch.where(pair, ious, 0).topk(min(self.topk, a), dim=1).values
        dynamic_ks = torch.clamp(top_ious.sum(1).int(), min=1)                        # (B, G)
        cost = torch.where(pair, cost, torch.inf)
        k_max = min(int(torch.where(gts.mask, dynamic_ks, 0).max()) + 1, a)
        values, order = cost.topk(k_max, dim=1, largest=False)                        # (B, k_max, G) ascending
        kth = values.gather(1, (dynamic_ks - 1).clamp(max=k_max - 1)[:, None]).squeeze(1)
        after = values.gather(1, dynamic_ks.clamp(max=k_max - 1)[:, None]).squeeze(1)
        beyond = dynamic_ks >= k_max                                                  # every prior taken
        own = (gts.mask & ((kth == after) & ~beyond | torch.isinf(kth))).any(dim=1)  # (B,) ties: per image
        own |= (candidate.sum(dim=1) < self.topk) & gts.mask.any(dim=1)   # k from a sum of fewer IoUs: its own
        take = (torch.arange(k_max, device=priors.device)[None, :, None] < dynamic_ks[:, None, :]) & gts.mask[:, None]
        matching = torch.zeros((b, a, g), dtype=torch.uint8, device=priors.device)
        matching.scatter_(1, order, take.to(torch.uint8))
        multi = matching.sum(dim=2) > 1                                               # the cheapest GT keeps it
        cheapest = (torch.arange(g, device=priors.device) == cost.argmin(dim=2, keepdim=True)).to(torch.uint8)
        matching = torch.where(multi[:, :, None], cheapest, matching)
        fg = matching.sum(dim=2) > 0
        gt_inds = torch.where(fg, matching.argmax(dim=2) + 1, 0)
        matched_ious = torch.where(fg, (matching * ious).sum(dim=2), 0)
        gt_inds = torch.where(inside, gt_inds, outside)
        rows = own.nonzero().view(-1).tolist()
        if rows:
            gt_inds[rows], matched_ious[rows], _ = assign_images(self.assign, priors, inside, gts, rows,
                                                                 pred_scores=pred_scores, pred_boxes=pred_boxes)
        return gt_inds, matched_ious

    def _cost(self, valid_prior, valid_boxes, valid_scores, gt_boxes, gt_labels) -> tuple[Tensor, Tensor]:
        """(V, G) cost and (V, G) IoU of the candidate priors; (B, A, G) for a batch's (B, A, 4) boxes,
        (B, A, C) scores, (B, G, 4) GT boxes and (B, G) labels (``valid_prior`` (A, 4) shared)."""
        gt_center = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2.0
        strides = valid_prior[:, 2]
        distance = (valid_prior[:, None, :2] - gt_center[..., None, :, :]).pow(2).sum(-1).sqrt() / strides[:, None]
        soft_center_prior = torch.pow(10, distance - self.soft_center_radius)
        ious = bbox_overlaps(valid_boxes, gt_boxes)
        iou_cost = -torch.log(ious + EPS) * self.iou_weight
        return self._cls_cost(valid_scores, gt_labels, ious) + iou_cost + soft_center_prior, ious

    @staticmethod
    def _cls_cost(scores: Tensor, gt_labels: Tensor, ious: Tensor) -> Tensor:
        """(V, G) ``sum_c BCE(x_c, t_c) * (t_c - sigmoid(x_c))^2`` with the soft label ``t`` = IoU at
        the GT's class and 0 elsewhere. The classes other than the GT's contribute the same for
        every GT, so the (V, G, C) sum is the prior's all-negative sum (V) with the GT's class
        swapped for its soft term: (V, C) + (V, G) work instead of (V, G, C)."""
        sig = scores.sigmoid()
        neg = F.binary_cross_entropy_with_logits(scores, torch.zeros_like(scores), reduction="none") * sig.pow(2)
        labels = gt_labels.to(torch.int64)
        if scores.dim() == 2:
            x, p, n = scores[:, labels], sig[:, labels], neg[:, labels]      # (V, G) at each GT's class
        else:                                                                # a batch: (B, A, G)
            at = labels[:, None, :].expand(-1, scores.shape[1], -1)
            x, p, n = scores.gather(2, at), sig.gather(2, at), neg.gather(2, at)
        pos = F.binary_cross_entropy_with_logits(x, ious, reduction="none") * (ious - p).pow(2)
        return neg.sum(dim=-1, keepdim=True) - n + pos

    def dynamic_k_matching(self, cost: Tensor, ious: Tensor, num_gt: int):
        """Returns matched IoU (P,), matched GT (P,), foreground mask over candidates (V,), k (G,)."""
        matching = torch.zeros_like(cost, dtype=torch.uint8)
        k_cand = min(self.topk, ious.size(0))
        topk_ious, _ = torch.topk(ious, k_cand, dim=0)
        dynamic_ks = torch.clamp(topk_ious.sum(0).int(), min=1)
        for g in range(num_gt):
            _, pos_idx = torch.topk(cost[:, g], k=int(dynamic_ks[g]), largest=False)
            matching[:, g][pos_idx] = 1
        multi = matching.sum(1) > 1
        if multi.sum() > 0:
            _, cost_argmin = torch.min(cost[multi, :], dim=1)
            matching[multi, :] *= 0
            matching[multi, cost_argmin] = 1
        fg = matching.sum(1) > 0
        matched_gt = matching[fg, :].argmax(1)
        matched_ious = (matching * ious).sum(1)[fg]
        return matched_ious, matched_gt, fg, dynamic_ks
