"""Task-aligned assignment (Feng et al. 2021, "TOOD", sec. 3.2.1), as mmdetection 3.3.0's
``TaskAlignedAssigner``; the rule YOLOv6 / YOLOv8 also train with.

For every (prior, GT) pair the alignment metric is ``t = s ** alpha * u ** beta``: ``s`` the
predicted probability of the GT's class, ``u`` the IoU of the predicted box with the GT. Each GT
takes the ``topk`` priors of highest ``t`` over ALL levels; a candidate is positive for it when
``t > 0`` and the prior's (anchor's) centre lies inside the GT by more than 0.01. A prior that
qualifies for several GTs goes to the one its predicted box overlaps most (IoU, not metric; ties
to the first GT).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..boxes import bbox_overlaps
from .max_iou import labels_from_gt_inds
from .result import AssignResult, Reason, assign_images, unassigned

__all__ = ["TaskAlignedAssigner"]

INF = 100000000

#: the rule each (GT, prior) pair fails first, in the reference's order (then lost, then positive)
_STAGES = (Reason.NOT_TOPK_ALIGNED, Reason.ZERO_ALIGNMENT, Reason.ANCHOR_OUTSIDE_GT, Reason.LOST_TO_HIGHER_IOU,
           Reason.POS_TASK_ALIGNED)


class TaskAlignedAssigner:
    """``assign`` needs the head's predictions: ``pred_scores`` (A, C) class PROBABILITIES (TOOD
    feeds its sigmoid-geometric-mean scores) and ``pred_boxes`` (A, 4) decoded xyxy boxes.

    The result has mmdetection's meaning: ``max_overlaps`` the IoU of the predicted box with the
    matched GT, ``-1e8`` off positives (0 for every prior without a GT), and ``extras``:

    - ``assign_metrics`` (Tensor[A]): the raw alignment metric of each positive with its GT, 0
      elsewhere (TOODHead normalises it per GT for its targets);
    - ``alignment_metric`` / ``pred_iou`` (Tensor[G, A]): ``t`` and ``u`` of every pair;
    - ``candidate_idxs`` (Tensor[G, k]): each GT's top-k priors by metric;
    - ``pair_reasons`` (Tensor[G, A] uint8): the first rule each pair failed (not in the GT's
      top-k, metric 0, anchor centre outside the GT, lost to a GT of higher IoU) or positive.

    ``alpha`` and ``beta`` are TOOD's ``train_cfg.alpha`` / ``beta`` (mmdetection passes them to
    ``assign``); ``assign(alpha=..., beta=...)`` overrides them.
    """

    needs_predictions = True

    def __init__(self, *, topk: int = 13, alpha: float = 1, beta: float = 6, iou_calculator=None):
        if int(topk) < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.topk = int(topk)
        self.alpha, self.beta = alpha, beta

    def assign(self, priors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, *, pred_scores: Tensor | None = None,
               pred_boxes: Tensor | None = None, alpha=None, beta=None, **unused) -> AssignResult:
        """``priors`` (Tensor[A, 4]) xyxy anchors; see the class for the predictions."""
        if pred_scores is None or pred_boxes is None:
            raise ValueError("TaskAlignedAssigner needs pred_scores (probabilities) and pred_boxes")
        alpha = self.alpha if alpha is None else alpha
        beta = self.beta if beta is None else beta
        priors = priors[:, :4]
        num_gt, num_priors = int(gt_boxes.shape[0]), int(priors.shape[0])
        if num_gt == 0 or num_priors == 0:
            return self._empty(num_gt, priors)
        overlaps = bbox_overlaps(pred_boxes, gt_boxes).detach()                  # (A, G)
        metrics = pred_scores[:, gt_labels.long()].detach() ** alpha * overlaps ** beta
        k = min(self.topk, num_priors)
        _, candidate_idxs = metrics.topk(k, dim=0, largest=True)                 # (k, G)
        gt_col = torch.arange(num_gt, device=priors.device)
        is_topk = torch.zeros_like(metrics, dtype=torch.bool)
        is_topk[candidate_idxs, gt_col.expand_as(candidate_idxs)] = True
        nonzero = metrics > 0
        inside = self._centers_inside(priors, gt_boxes)                          # (A, G)
        qualifies = is_topk & nonzero & inside
        # laid out (G, A) and viewed transposed, as the reference, so ties resolve alike
        masked = torch.where(qualifies.t(), overlaps.t(), torch.full_like(overlaps.t(), -INF)).contiguous().t()
        max_overlaps, argmax = masked.max(dim=1)                                 # highest IoU, ties to the first
        positive = max_overlaps != -INF
        gt_inds = torch.where(positive, argmax + 1, torch.zeros_like(argmax))
        assign_metrics = torch.where(positive, metrics.gather(1, argmax[:, None])[:, 0], torch.zeros_like(max_overlaps))
        pair = self._pair_reasons(is_topk, nonzero, inside, gt_inds)             # (A, G)
        extras = {"assign_metrics": assign_metrics, "alignment_metric": metrics.t().contiguous(),
                  "pred_iou": overlaps.t().contiguous(), "candidate_idxs": candidate_idxs.t().contiguous(),
                  "pair_reasons": pair.t().contiguous()}
        return AssignResult(num_gt, gt_inds, max_overlaps, labels_from_gt_inds(gt_inds, gt_labels),
                            self._prior_reasons(pair, positive), extras)

    def assign_batch(self, priors: Tensor, inside: Tensor, gts, *, pred_scores: Tensor, pred_boxes: Tensor,
                     **unused) -> tuple[Tensor, Tensor, Tensor]:
        """A batch's assignment in one pass: (B, A) ``gt_inds`` of each image as :meth:`assign` on its
        ``inside`` priors gives them (-1 outside), (B, A) the positives' IoUs and (B, A) their alignment
        metrics (0 elsewhere); ``gts`` a :class:`~detengine.heads.base.PaddedGTs`, ``pred_scores``
        (B, A, C) probabilities, ``pred_boxes`` (B, A, 4). Each GT's top-k from one top-(k + 1) of the
        batch: the same set as its own ``torch.topk`` unless its k-th and (k+1)-th metrics tie above 0
        (0 never qualifies), where ``torch.topk``'s pick is its own: such an image is assigned on its own."""
        priors = priors[:, :4]
        (b, g), a = gts.mask.shape, int(priors.shape[0])
        outside = torch.full((), -1, dtype=torch.long, device=priors.device)
        if g == 0 or a == 0:
            zeros = pred_boxes.new_zeros((b, a))
            return unassigned(inside), zeros, zeros
        boxes, labels = gts.boxes, gts.labels
        overlaps = bbox_overlaps(pred_boxes, boxes).detach()                               # (B, A, G)
        scores = pred_scores.detach().gather(2, labels[:, None, :].expand(-1, a, -1))
        metrics = scores ** self.alpha * overlaps ** self.beta
        ranked = metrics.masked_fill(~inside[:, :, None], -torch.inf)          # the inside priors compete
        k = min(self.topk, a)
        values, candidate_idxs = ranked.topk(min(k + 1, a), dim=1)                         # (B, k + 1, G)
        own = torch.zeros(b, dtype=torch.bool, device=priors.device)
        if k < a:
            own = (gts.mask & (values[:, k - 1] == values[:, k]) & (values[:, k - 1] > 0)).any(dim=1)
        is_topk = torch.zeros_like(metrics, dtype=torch.bool).scatter_(1, candidate_idxs[:, :k], True)
        cx = ((priors[:, 0] + priors[:, 2]) / 2.0)[:, None]
        cy = ((priors[:, 1] + priors[:, 3]) / 2.0)[:, None]
        gb = boxes[:, None]                                                                # (B, 1, G, 4)
        centre_in = torch.stack([cx - gb[..., 0], cy - gb[..., 1], gb[..., 2] - cx, gb[..., 3] - cy], -1) \
            .min(dim=-1).values > 0.01
        qualifies = is_topk & (ranked > 0) & centre_in & gts.mask[:, None, :]
        # laid out (B, G, A) and viewed transposed, as the per-image path
        masked = torch.where(qualifies.transpose(1, 2), overlaps.transpose(1, 2), -INF).contiguous().transpose(1, 2)
        max_overlaps, argmax = masked.max(dim=2)
        positive = max_overlaps != -INF
        gt_inds = torch.where(inside, torch.where(positive, argmax + 1, 0), outside)
        ious = torch.where(positive, max_overlaps, 0)
        assign_metrics = torch.where(positive, metrics.gather(2, argmax[..., None])[..., 0], 0)
        rows = own.nonzero().view(-1).tolist()
        if rows:
            gt_inds[rows], ious[rows], assign_metrics[rows] = assign_images(
                self.assign, priors, inside, gts, rows, extra="assign_metrics", pred_scores=pred_scores,
                pred_boxes=pred_boxes)
        return gt_inds, ious, assign_metrics

    @staticmethod
    def _centers_inside(priors: Tensor, gt_boxes: Tensor) -> Tensor:
        """(A, G) the anchor's centre inside the GT by more than 0.01 on every side."""
        cx = ((priors[:, 0] + priors[:, 2]) / 2.0)[:, None]
        cy = ((priors[:, 1] + priors[:, 3]) / 2.0)[:, None]
        sides = torch.stack([cx - gt_boxes[:, 0], cy - gt_boxes[:, 1], gt_boxes[:, 2] - cx, gt_boxes[:, 3] - cy], -1)
        return sides.min(dim=-1).values > 0.01

    @staticmethod
    def _pair_reasons(is_topk: Tensor, nonzero: Tensor, inside: Tensor, gt_inds: Tensor) -> Tensor:
        """(A, G) uint8: the first rule each (prior, GT) pair failed, or positive."""
        pair = torch.full(is_topk.shape, Reason.POS_TASK_ALIGNED, dtype=torch.uint8, device=is_topk.device)
        mine = gt_inds[:, None] == torch.arange(1, is_topk.shape[1] + 1, device=gt_inds.device)
        pair[~mine] = Reason.LOST_TO_HIGHER_IOU
        pair[~inside] = Reason.ANCHOR_OUTSIDE_GT
        pair[~nonzero] = Reason.ZERO_ALIGNMENT
        pair[~is_topk] = Reason.NOT_TOPK_ALIGNED
        return pair

    @staticmethod
    def _prior_reasons(pair: Tensor, positive: Tensor) -> Tensor:
        """(A,) positives ``POS_TASK_ALIGNED``; a negative gets the furthest rule any GT reached."""
        order = torch.tensor(_STAGES, dtype=torch.uint8, device=pair.device)
        stage = (pair[..., None] == order).to(torch.uint8).argmax(-1)          # (A, G) index in _STAGES
        reasons = order[stage.max(dim=1).values]
        reasons[positive] = Reason.POS_TASK_ALIGNED
        return reasons

    @staticmethod
    def _empty(num_gt: int, priors: Tensor) -> AssignResult:
        """No GT (or no prior): all negative, ``max_overlaps`` 0, as the reference."""
        a = priors.shape[0]
        result = AssignResult(num_gt, torch.zeros(a, dtype=torch.long, device=priors.device), priors.new_zeros(a),
                              torch.full((a,), -1, dtype=torch.long, device=priors.device),
                              torch.full((a,), Reason.NO_GT, dtype=torch.uint8, device=priors.device))
        result.extras = {"assign_metrics": priors.new_zeros(a), "alignment_metric": priors.new_zeros((num_gt, a)),
                         "pred_iou": priors.new_zeros((num_gt, a)),
                         "candidate_idxs": torch.zeros((num_gt, 0), dtype=torch.long, device=priors.device),
                         "pair_reasons": torch.full((num_gt, a), Reason.NOT_TOPK_ALIGNED, dtype=torch.uint8,
                                                    device=priors.device)}
        return result
