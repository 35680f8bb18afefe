"""SimOTA (Ge et al. 2021, "YOLOX", sec. 2.2 "SimOTA"), as mmdetection 3.3.0's ``SimOTAAssigner``.

Candidates are the points inside ANY GT box or inside ANY GT's centre region ``c +- center_radius
x stride`` (both strict). Cost of (candidate, GT) = ``cls_weight x sum over classes of BCE(score,
one-hot of the GT's class)`` + ``iou_weight x -log(IoU + 1e-7)`` + 1e5 unless the point is inside
both that GT's box and its centre region. Each GT takes its ``k = max(1, int(sum of its top
candidate_topk IoUs))`` cheapest candidates; a point taken by several GTs keeps the cheapest.

The class cost is not mmdetection's (V, G, C) tensor but its one-hot shortcut (:class:`SimOTACost`:
the candidate's all-negative sum with the GT's class term swapped in), 5-15x faster; where the few
ulps between the two sums could decide a near tie, the decision is taken on mmdetection's exact
sums, so the assignment is mmdetection's (tests/engine/test_sim_ota_fast.py; on CPU bit for bit).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..boxes import bbox_overlaps
from .result import AssignResult, Reason, assign_images, unassigned

__all__ = ["SimOTAAssigner"]

INF = 100000.0   # SimOTA's own (not 1e8): the penalty and the non-positives' max_overlaps
EPS = 1.0e-7


class SimOTAAssigner:
    """``assign`` needs the head's predictions: ``pred_scores`` (A, C) PROBABILITIES (YOLOX passes
    ``sqrt(sigmoid(class) x sigmoid(objectness))``) and ``pred_boxes`` (A, 4) decoded xyxy;
    ``priors`` (A, 4) ``[x, y, stride_w, stride_h]`` points.

    ``max_overlaps``: the IoU of a positive's predicted box with its GT, ``-1e5`` elsewhere (0
    everywhere without GT or candidate). ``extras``: ``candidate_idxs`` (V,), ``cost`` (within a
    few float32 ulps of mmdetection's; its very value where a near tie made it recompute) and
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
        costs = SimOTACost(pred_scores[valid], gt_labels, ious, in_both, self.cls_weight, self.iou_weight)
        cost = costs.values
        matching, taken, dynamic_ks = self.dynamic_k_matching(cost, ious, num_gt, exact=costs)
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

    def assign_batch(self, priors: Tensor, inside: Tensor, gts, *, pred_scores: Tensor, pred_boxes: Tensor,
                     **unused) -> tuple[Tensor, Tensor]:
        """A batch's assignment in one pass: (B, A) ``gt_inds`` of each image as :meth:`assign` on its
        ``inside`` points gives them (-1 outside) and (B, A) the positives' IoUs (0 elsewhere); ``gts`` a
        :class:`~detengine.heads.base.PaddedGTs`, ``pred_scores`` (B, A, C) probabilities, ``pred_boxes``
        (B, A, 4). Every decision :meth:`assign` takes is taken here on the fast costs where their
        intervals (:class:`SimOTACost`) settle it, which is mmdetection's decision on its own sums; an
        image with one the intervals leave open (a GT's k-th and (k+1)-th cheapest, a contested point's
        two cheapest GTs), or with fewer candidates than ``candidate_topk``, is assigned on its own."""
        (b, g), a = gts.mask.shape, int(priors.shape[0])
        outside = torch.full((), -1, dtype=torch.long, device=priors.device)
        if g == 0 or a == 0:
            return unassigned(inside), pred_boxes.new_zeros((b, a))
        boxes, real = gts.boxes, gts.mask[:, None, :]                                     # (B, G, 4), (B, 1, G)
        x, y = priors[None, :, 0, None], priors[None, :, 1, None]
        sx, sy = priors[None, :, 2, None], priors[None, :, 3, None]
        x1, y1, x2, y2 = (boxes[:, None, :, i] for i in range(4))
        in_gts = torch.stack([x - x1, y - y1, x2 - x, y2 - y], dim=-1).min(dim=-1).values > 0    # (B, A, G)
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        r = self.center_radius
        in_cts = torch.stack([x - (cx - r * sx), y - (cy - r * sy), (cx + r * sx) - x, (cy + r * sy) - y],
                             dim=-1).min(dim=-1).values > 0
        in_gts, in_cts = in_gts & real, in_cts & real
        candidate = (in_gts.any(dim=2) | in_cts.any(dim=2)) & inside                        # (B, A)
        pair = candidate[:, :, None] & real
        ious = bbox_overlaps(pred_boxes, boxes)                                             # (B, A, G)
        costs = SimOTACost(pred_scores, gts.labels, ious, in_gts & in_cts, self.cls_weight, self.iou_weight)
        lo, hi = costs.bounds()
        cost = torch.where(pair, costs.values, torch.inf)
        # k of each GT: int(sum of its candidate_topk largest IoUs over its image's candidates)
        top_ious = torch.where(pair, ious, 0).topk(min(self.candidate_topk, a), dim=1).values
        dynamic_ks = torch.clamp(top_ious.sum(1).int(), min=1)                              # (B, G)
        k_max = min(int(torch.where(gts.mask, dynamic_ks, 0).max()), a)
        order = cost.topk(k_max, dim=1, largest=False).indices                               # (B, k_max, G)
        take = (torch.arange(k_max, device=priors.device)[None, :, None] < dynamic_ks[:, None, :]) & real
        selected = torch.zeros((b, a, g), dtype=torch.bool, device=priors.device).scatter_(1, order, take)
        worst_in = hi.masked_fill(~selected, -torch.inf).amax(dim=1)                         # (B, G)
        best_out = lo.masked_fill(selected | ~pair, torch.inf).amin(dim=1)
        open_ = (gts.mask & ~(worst_in < best_out)).any(dim=1)
        # a point several GTs took keeps the cheapest GT, over all the image's GTs
        multi = selected.sum(dim=2) > 1                                                      # (B, A)
        row_cost = costs.values.masked_fill(~real, torch.inf)
        best = row_cost.argmin(dim=2, keepdim=True)
        worst_best = hi.gather(2, best)[..., 0]
        best_other = lo.masked_fill(~real, torch.inf).scatter(2, best, torch.inf).amin(dim=2)
        open_ |= (multi & ~(worst_best < best_other)).any(dim=1)
        open_ |= (candidate.sum(dim=1) < self.candidate_topk) & gts.mask.any(dim=1)   # a topk of fewer IoUs
        cheapest = torch.arange(g, device=priors.device) == best
        matching = torch.where(multi[:, :, None], cheapest, selected)
        fg = matching.any(dim=2)
        gt_inds = torch.where(inside, torch.where(fg, matching.to(torch.uint8).argmax(dim=2) + 1, 0), outside)
        matched = torch.where(fg, (matching * ious).sum(dim=2), 0)
        rows = open_.nonzero().view(-1).tolist()
        if rows:
            gt_inds[rows], matched[rows], _ = assign_images(self.assign, priors, inside, gts, rows,
                                                            pred_scores=pred_scores, pred_boxes=pred_boxes)
        return gt_inds, matched

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

    def dynamic_k_matching(self, cost: Tensor, ious: Tensor, num_gt: int,
                           exact: SimOTACost | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(V, G) uint8 final matching, (V, G) bool taken by each GT's dynamic k before the
        conflicts were settled, (G,) k. With ``exact`` (whose ``values`` is ``cost``, changed in
        place where recomputed) every decision is mmdetection's on its own sums: a GT whose k
        cheapest are not surely cheaper than the rest, a contested candidate whose cheapest GT is
        not surely cheaper than the others, is decided again on mmdetection's exact costs."""
        matching = torch.zeros_like(cost, dtype=torch.uint8)
        k_cand = min(self.candidate_topk, ious.size(0))
        topk_ious, _ = torch.topk(ious, k_cand, dim=0)
        dynamic_ks = torch.clamp(topk_ious.sum(0).int(), min=1)
        ks = dynamic_ks.tolist()
        for g in range(num_gt):
            _, pos_idx = torch.topk(cost[:, g], k=ks[g], largest=False)
            matching[:, g][pos_idx] = 1
        if exact is not None:
            for g, chosen in exact.settle_columns(matching.bool(), ks).items():
                if chosen is None:                  # a tie at the boundary: torch.topk's own pick
                    _, pos_idx = torch.topk(cost[:, g], k=ks[g], largest=False)
                    matching[:, g] = 0
                    matching[:, g][pos_idx] = 1
                else:
                    matching[:, g] = chosen
        taken = matching.bool()
        multi = matching.sum(1) > 1
        if multi.sum() > 0:
            if exact is not None:
                exact.settle_rows(multi)
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


# A float32 sum of C non-negative terms, in any order, is within (C - 1) u / (1 - (C - 1) u) of the
# exact sum (u = 2^-24). mmdetection's sum T and ours (S - n_k + p_k, S the C negatives) then differ
# by at most about (C + 1) u (2 T + S); the slack is (C + 2) u x 4 x (ours + S): 2x to spare.
_UNIT_ROUNDOFF = 2.0 ** -24


class SimOTACost:
    """SimOTA's (V, G) cost, made fast, with what it takes to decide exactly as mmdetection does.

    mmdetection sums the C class BCEs of every (candidate, GT) pair, a (V, G, C) tensor. The target
    is one-hot, so the sum is the candidate's all-negative sum (V x C, once) with the GT's class
    term swapped in (V x G): ``BCE(p, 0).sum() - BCE(p_k, 0) + BCE(p_k, 1)``. The terms are the
    same bits (the same ``binary_cross_entropy`` kernel, log clamp at -100, float32); only the
    order of the additions differs, so ``values`` is within a few float32 ulps of mmdetection's
    cost. That can still decide a near tie its way or the other: untrained heads give many equal
    scores, and next to the 1e5 penalty float32 has a grid of 0.0078. So each pair also has an
    interval ``lo``..``hi`` that surely holds mmdetection's cost (``_UNIT_ROUNDOFF``: the error bound of
    any float sum of C non-negative terms, carried through the same float32 operations, which are
    monotone), and whatever the intervals do not settle is recomputed as mmdetection computes it
    (``exact``) and written into ``values``: :meth:`SimOTAAssigner.dynamic_k_matching` then takes
    every decision on mmdetection's own numbers.

    Computed with autocast off (as mmdetection: ``binary_cross_entropy`` of probabilities is not
    autocast-safe) and in float32, returned in the scores' dtype as there.

    ``exact`` equals mmdetection's sums bit for bit where each row of a sum over the last dimension
    is reduced the same way whatever the number of rows: so on CPU (checked against the replaced
    formula). CUDA picks its reduction layout by the tensor's shape, so there the recomputed sums
    of a small block may differ from mmdetection's by an ulp, like any two CUDA runs of unlike shape.
    """

    def __init__(self, scores: Tensor, gt_labels: Tensor, ious: Tensor, in_both: Tensor, cls_weight: float,
                 iou_weight: float):
        """(V, C) ``scores``, (G,) ``gt_labels``, (V, G) ``ious`` and ``in_both``; or a batch's (B, A, C),
        (B, G), (B, A, G): then ``values`` and :meth:`bounds` only."""
        self.dtype, self.cls_weight = scores.dtype, cls_weight
        self.labels = gt_labels.to(torch.int64)
        self.num_classes = scores.shape[-1]
        with torch.autocast(device_type=scores.device.type, enabled=False):
            p = self._p = scores.to(torch.float32)
            neg = F.binary_cross_entropy(p, torch.zeros_like(p), reduction="none")                  # (V, C)
            p_k = self._at_labels(p)                                                                   # (V, G)
            pos = F.binary_cross_entropy(p_k, torch.ones_like(p_k), reduction="none")
            neg_sum = neg.sum(dim=-1, keepdim=True)
            cls_cost = neg_sum - self._at_labels(neg) + pos
            self.iou_term = -torch.log(ious + EPS) * iou_weight         # on the whole (V, G): the same bits
            self.penalty = (~in_both) * INF
            self.values = self._combine(cls_cost, self.iou_term, self.penalty)
            self._neg = neg
            self._cls = cls_cost
            self._slack = (cls_cost + neg_sum) * ((self.num_classes + 2) * 4 * _UNIT_ROUNDOFF)
        self._bounds = self._grouping = None

    def _at_labels(self, t: Tensor) -> Tensor:
        """(V, G) the (V, C) ``t`` at each GT's class; (B, A, G) of a batch's (B, A, C) and (B, G) labels."""
        if t.dim() == 2:
            return t[:, self.labels]
        return t.gather(2, self.labels[:, None, :].expand(-1, t.shape[1], -1))

    def _combine(self, cls_cost: Tensor, iou_term: Tensor, penalty: Tensor) -> Tensor:
        """mmdetection's ``cls_cost * cls_weight + iou_cost * iou_weight + (~in_both) * INF``, in its
        order of operations."""
        return cls_cost.to(self.dtype) * self.cls_weight + iou_term + penalty

    def bounds(self) -> tuple[Tensor, Tensor]:
        """(V, G) ``lo``, ``hi``: mmdetection's cost of the pair lies in [lo, hi] (equal where
        ``values`` was recomputed)."""
        if self._bounds is None:
            with torch.autocast(device_type=self.values.device.type, enabled=False):
                a = self._combine(self._cls - self._slack, self.iou_term, self.penalty)
                b = self._combine(self._cls + self._slack, self.iou_term, self.penalty)
            self._bounds = (torch.minimum(a, b), torch.maximum(a, b))
        return self._bounds

    def exact(self, rows: Tensor | None = None, cols: Tensor | None = None) -> Tensor:
        """mmdetection's cost of the (rows, cols) block, bit for bit: its class terms (the
        all-negative BCEs with the GT's class term swapped in: the very bits its BCE gives) summed
        over classes, each row reduced on its own as in its (V, G, C) sum. The sum depends on the
        candidate's scores and the GT's class only: it is done once per distinct row of scores (an
        untrained head's are all equal) and class, on one (U, C) block of terms whose column of that
        class is swapped in and back."""
        with torch.autocast(device_type=self.values.device.type, enabled=False):
            groups, reps = self._groups()
            group_of = groups if rows is None else groups[rows]
            distinct, group_of = torch.unique(group_of, return_inverse=True)
            src = reps[distinct]
            labels = self.labels if cols is None else self.labels[cols]
            classes, of_col = torch.unique(labels, return_inverse=True)
            p_k = self._p[src][:, classes]
            pos = F.binary_cross_entropy(p_k, torch.ones_like(p_k), reduction="none")          # (U, L)
            terms = self._neg[src]                          # (U, C): one row of terms at a time per class
            sums = pos.new_empty(pos.shape)
            for j, c in enumerate(classes.tolist()):
                negative = terms[:, c].clone()
                terms[:, c] = pos[:, j]
                sums[:, j] = terms.sum(-1)
                terms[:, c] = negative
            cls_cost = sums[group_of][:, of_col]
            iou_term, penalty = self.iou_term, self.penalty
            if rows is not None:
                iou_term, penalty = iou_term[rows], penalty[rows]
            if cols is not None:
                iou_term, penalty = iou_term[:, cols], penalty[:, cols]
            return self._combine(cls_cost, iou_term, penalty)

    def _groups(self) -> tuple[Tensor, Tensor]:
        """(V,) each candidate's group of equal score rows (bit for bit), (U,) one candidate of each."""
        if self._grouping is None:
            self._grouping = _equal_rows(self._p)
        return self._grouping

    def settle_columns(self, selected: Tensor, ks: list[int]) -> dict[int, Tensor | None]:
        """``selected`` (V, G) bool: each GT's ``ks[g]`` cheapest by ``values``. For a GT where that
        is not surely mmdetection's choice (the dearest selected not surely below the cheapest of
        the rest), the candidates the intervals leave open get their exact costs and the choice is
        made on those: surely in, plus the open ones' cheapest. Returns {GT: its (V,) choice, or
        None where the open ones tie at the boundary (or a NaN): then the whole column is exact in
        ``values`` and ``torch.topk`` on it decides, as in mmdetection}."""
        lo, hi = self.bounds()
        worst_in = hi.masked_fill(~selected, float("-inf")).amax(dim=0)
        best_out = lo.masked_fill(selected, float("inf")).amin(dim=0)
        settled = {}
        for g in (~(worst_in < best_out)).nonzero().view(-1).tolist():
            col = torch.tensor([g], device=lo.device)
            surely_in, surely_out = hi[:, g] < best_out[g], lo[:, g] > worst_in[g]
            open_ = (~surely_in & ~surely_out).nonzero().view(-1)
            m = ks[g] - int(surely_in.sum())
            chosen = None
            if not bool(torch.isnan(lo[:, g]).any() | torch.isnan(hi[:, g]).any()):
                exact = self.exact(rows=open_, cols=col).view(-1)
                self.values[open_, g] = lo[open_, g] = hi[open_, g] = exact
                ordered = exact.sort().values
                if m == 0 or m == open_.numel() or bool(ordered[m - 1] < ordered[m]):
                    chosen = surely_in.clone()
                    if m:
                        chosen[open_[exact <= ordered[m - 1]]] = True
            settled[g] = chosen
        whole = torch.tensor([g for g, chosen in settled.items() if chosen is None], dtype=torch.long,
                             device=lo.device)
        if whole.numel():
            exact = self.exact(cols=whole)
            self.values[:, whole] = exact
            lo[:, whole] = exact
            hi[:, whole] = exact
        return settled

    def settle_rows(self, multi: Tensor) -> None:
        """``multi`` (V,) the candidates several GTs took: where the cheapest GT by ``values`` is not
        surely below every other GT, the row gets mmdetection's exact costs."""
        lo, hi = self.bounds()
        rows = multi.nonzero().view(-1)
        _, best = torch.min(self.values[rows], dim=1)
        worst_best = hi[rows].gather(1, best[:, None]).squeeze(1)
        best_other = lo[rows].scatter(1, best[:, None], float("inf")).amin(dim=1)
        rows = rows[~(worst_best < best_other)]
        if rows.numel():
            self.values[rows] = self.exact(rows=rows)


def _equal_rows(p: Tensor) -> tuple[Tensor, Tensor]:
    """(R,) group of each row of ``p`` (R, C) among the rows equal to it bit for bit, (U,) the first
    row of each group. A hash of the bits, then every row checked against its hash group's first
    (a collision only makes a group of its own)."""
    r = p.shape[0]
    every = torch.arange(r, device=p.device)
    if r == 0:
        return every, every
    bits = p.contiguous().view(torch.int32).to(torch.int64)
    # odd multipliers below 2^23: |bits x mult| < 2^54, a sum of up to 512 classes never overflows
    mult = (torch.arange(p.shape[1], device=p.device, dtype=torch.int64) * 2654435761) % 4194301 * 2 + 1
    _, hashed = torch.unique((bits * mult).sum(dim=1), return_inverse=True)
    first = torch.full((int(hashed.max()) + 1,), r, device=p.device).scatter_reduce_(0, hashed, every, "amin")
    rep = first[hashed]
    rep = torch.where((bits == bits[rep]).all(dim=1), rep, every)
    reps, groups = torch.unique(rep, return_inverse=True)
    return groups, reps
