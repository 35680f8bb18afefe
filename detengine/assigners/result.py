"""The one result every assigner returns, with mmdetection's meaning of ``gt_inds``."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["AssignResult", "Reason", "REASON_TEXT", "assign_images"]


class Reason:
    """Why a prior got its label: one small int per prior in ``AssignResult.reasons``.

    The GUI's "Why?" shows ``REASON_TEXT[code]``; the codes are stable (they go into JSON).
    """

    NEG_BELOW_THR = 0
    IGNORED_BETWEEN_THR = 1
    POS_ABOVE_THR = 2
    POS_LOW_QUALITY = 3
    IGNORED_CROWD = 4
    NO_GT = 5
    INVALID_PRIOR = 6
    NOT_TOPK_CANDIDATE = 7
    BELOW_ATSS_THR = 8
    CENTER_OUTSIDE_GT = 9
    POS_ATSS = 10
    NOT_INSIDE_ANY_GT = 11
    NOT_IN_DYNAMIC_K = 12
    POS_DYNAMIC_K = 13
    POS_FORCED_BEST_PRIOR = 14
    POS_GREEDY = 15
    IGNORED_BELOW_NEG_RANGE = 16
    OUTSIDE_GT = 17
    OUTSIDE_CENTER_REGION = 18
    OUTSIDE_REGRESS_RANGE = 19
    LOST_TO_SMALLER_GT = 20
    POS_FCOS = 21
    NOT_TOPK_ALIGNED = 22
    ZERO_ALIGNMENT = 23
    ANCHOR_OUTSIDE_GT = 24
    LOST_TO_HIGHER_IOU = 25
    POS_TASK_ALIGNED = 26
    NOT_SIMOTA_CANDIDATE = 27
    NOT_IN_SIMOTA_K = 28
    LOST_TO_CHEAPER_GT = 29
    POS_SIMOTA = 30
    OUTSIDE_BOX_AND_CENTER = 31


REASON_TEXT = {
    Reason.NEG_BELOW_THR: "negative: max IoU below the negative threshold",
    Reason.IGNORED_BETWEEN_THR: "ignored: max IoU between the negative and positive thresholds",
    Reason.POS_ABOVE_THR: "positive: max IoU at or above the positive threshold",
    Reason.POS_LOW_QUALITY: "positive: forced as the best prior of its GT (low-quality match)",
    Reason.IGNORED_CROWD: "ignored: overlaps an ignored / crowd box above ignore_iof_thr",
    Reason.NO_GT: "negative: the image has no ground truth",
    Reason.INVALID_PRIOR: "not used: prior lies in the padding or outside the allowed border",
    Reason.NOT_TOPK_CANDIDATE: "negative: not among the top-k nearest priors of any GT on its level",
    Reason.BELOW_ATSS_THR: "negative: candidate, but IoU below the GT's mean + std threshold",
    Reason.CENTER_OUTSIDE_GT: "negative: candidate above threshold, but its centre is not inside the GT",
    Reason.POS_ATSS: "positive: top-k candidate, IoU >= mean + std and centre inside the GT",
    Reason.NOT_INSIDE_ANY_GT: "negative: prior point is not inside any GT",
    Reason.NOT_IN_DYNAMIC_K: "negative: inside a GT, but its cost is not among that GT's dynamic-k lowest",
    Reason.POS_DYNAMIC_K: "positive: among the dynamic-k lowest-cost priors of its GT",
    Reason.POS_FORCED_BEST_PRIOR: "positive: forced as the best prior of its GT (overlap set to 2)",
    Reason.POS_GREEDY: "positive: taken by the greedy largest-IoU step",
    Reason.IGNORED_BELOW_NEG_RANGE: "ignored: max IoU below the lower end of the negative range",
    # FCOS (its point rule; per (GT, point) pair in ``extras["pair_reasons"]``, per point here)
    Reason.OUTSIDE_GT: "negative for this GT: the point is outside the GT box",
    Reason.OUTSIDE_CENTER_REGION: "negative: inside a GT box, but outside its centre region "
                                  "(centre +- center_sample_radius x stride, clipped to the box)",
    Reason.OUTSIDE_REGRESS_RANGE: "negative: inside a GT, but max(l, t, r, b) to it is outside this level's "
                                  "regress range",
    Reason.LOST_TO_SMALLER_GT: "not this GT's: the point qualifies, but a smaller GT (or an equal one listed "
                               "first) takes it",
    Reason.POS_FCOS: "positive: inside the GT (its centre region with center_sampling), max(l, t, r, b) within "
                     "the level's regress range; the smallest such GT",
    # task-aligned (TOOD, YOLOv6/v8): metric t = score^alpha x IoU(predicted box, GT)^beta; per pair in
    # ``extras["pair_reasons"]``
    Reason.NOT_TOPK_ALIGNED: "negative: not among the GT's top-k alignment metrics (score^alpha x IoU^beta of its "
                             "predicted box, over all levels); for a prior: of no GT",
    Reason.ZERO_ALIGNMENT: "negative: among a GT's top-k, but its alignment metric is 0 (no overlap, or score 0)",
    Reason.ANCHOR_OUTSIDE_GT: "negative: among a GT's top-k alignment metrics, but the anchor's centre is not "
                              "inside the GT (by more than 0.01)",
    Reason.LOST_TO_HIGHER_IOU: "not this GT's: the prior qualifies, but its predicted box overlaps another GT more "
                               "(or as much, listed first), which takes it",
    Reason.POS_TASK_ALIGNED: "positive: among the GT's top-k alignment metrics, metric > 0, anchor centre inside "
                             "the GT; of such GTs the one its predicted box overlaps most",
    # SimOTA (YOLOX): cost = cls_weight x class BCE + iou_weight x -log IoU (+ 1e5 off box-and-centre)
    Reason.NOT_SIMOTA_CANDIDATE: "negative: the point is neither inside a GT box nor inside a GT's centre region "
                                 "(centre +- center_radius x stride)",
    Reason.NOT_IN_SIMOTA_K: "negative: a candidate, but not among the GT's dynamic-k lowest costs (for a prior: "
                            "of no GT)",
    Reason.LOST_TO_CHEAPER_GT: "not this GT's: among its dynamic-k lowest costs, but another GT that also took "
                               "it costs less (the cheapest keeps it)",
    Reason.POS_SIMOTA: "positive: among the GT's dynamic-k (sum of its top IoUs) lowest classification + IoU costs; "
                       "the cheapest GT that took it",
    Reason.OUTSIDE_BOX_AND_CENTER: "negative for this GT: not inside both its box and its centre region, so its cost "
                                   "carries the 1e5 penalty (and it was not taken)",
}


def _unmap_extra(key: str, value, valid: Tensor):
    """An assigner's extra computed on ``priors[valid]``, for all priors: per-prior tensors (last
    dimension = the valid priors) scattered (0 elsewhere; ``pair_reasons`` ``INVALID_PRIOR``), prior
    indices (``*idxs``) mapped back; anything else as it is."""
    n = int(valid.sum())
    if not isinstance(value, Tensor) or n == valid.shape[0]:
        return value
    if key.endswith("idxs") and not value.is_floating_point():
        return valid.nonzero().view(-1)[value]
    if value.dim() in (1, 2) and value.shape[-1] == n:
        fill = Reason.INVALID_PRIOR if key == "pair_reasons" else 0
        out = value.new_full((*value.shape[:-1], valid.shape[0]), fill)
        out[..., valid] = value
        return out
    return value


@dataclass
class AssignResult:
    """Assignment of A priors to G ground truths.

    Attributes:
        num_gts: G.
        gt_inds (Tensor[A] long): -1 ignored, 0 negative, k + 1 positive for GT k (mmdetection).
        max_overlaps (Tensor[A] float): the assigner's overlap of each prior (max IoU for MaxIoU;
            -1e8 for non-positives of ATSS / dynamic soft label, as the reference).
        labels (Tensor[A] long): class of the assigned GT, -1 where not positive.
        reasons (Tensor[A] uint8): a :class:`Reason` code per prior.
        extras: assigner-specific tensors the GUI explains with (IoU matrix, thresholds, costs).
    """

    num_gts: int
    gt_inds: Tensor
    max_overlaps: Tensor
    labels: Tensor
    reasons: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __repr__(self) -> str:
        n = int(self.gt_inds.shape[0])
        return (f"AssignResult(num_gts={self.num_gts}, num_priors={n}, "
                f"pos={self.num_pos}, neg={self.num_neg}, ignored={self.num_ignored})")

    @property
    def num_priors(self) -> int:
        return int(self.gt_inds.shape[0])

    @property
    def pos_mask(self) -> Tensor:
        return self.gt_inds > 0

    @property
    def neg_mask(self) -> Tensor:
        return self.gt_inds == 0

    @property
    def num_pos(self) -> int:
        return int((self.gt_inds > 0).sum())

    @property
    def num_neg(self) -> int:
        return int((self.gt_inds == 0).sum())

    @property
    def num_ignored(self) -> int:
        return int((self.gt_inds < 0).sum())

    def num_pos_per_gt(self) -> Tensor:
        """(G,) long: positives of each GT."""
        pos = self.gt_inds[self.gt_inds > 0] - 1
        return torch.bincount(pos, minlength=self.num_gts)[: self.num_gts]

    def why_per_gt(self, prior: int) -> list[str]:
        """For assigners that keep a reason per (GT, prior) pair (``extras["pair_reasons"]``,
        Tensor[G, A] uint8: FCOS, task-aligned): one line per GT, ``"GT k: <reason text>"``, for the
        "Why?" of ``prior``; ``[]`` for the other assigners."""
        pair = self.extras.get("pair_reasons")
        if pair is None or pair.dim() != 2 or not 0 <= prior < pair.shape[1]:
            return []
        return [f"GT{k}: {REASON_TEXT.get(int(code), '?')}" for k, code in enumerate(pair[:, prior].tolist())]

    def unmap(self, valid: Tensor) -> "AssignResult":
        """Scatter a result computed on ``priors[valid]`` back to all priors (invalid: ignored)."""
        a = int(valid.shape[0])
        gt_inds = self.gt_inds.new_full((a,), -1)
        gt_inds[valid] = self.gt_inds
        max_overlaps = self.max_overlaps.new_zeros(a)
        max_overlaps[valid] = self.max_overlaps
        labels = self.labels.new_full((a,), -1)
        labels[valid] = self.labels
        reasons = torch.full((a,), Reason.INVALID_PRIOR, dtype=torch.uint8, device=valid.device)
        if self.reasons is not None:
            reasons[valid] = self.reasons
        extras = {k: _unmap_extra(k, v, valid) for k, v in self.extras.items()}
        return AssignResult(self.num_gts, gt_inds, max_overlaps, labels, reasons, extras)

    @classmethod
    def random(cls, num_priors: int = 20, num_gts: int = 3, num_classes: int = 4, seed: int = 0,
               p_ignore: float = 0.1, p_pos: float = 0.3) -> "AssignResult":
        """A reproducible random result for tests."""
        g = torch.Generator().manual_seed(seed)
        u = torch.rand(num_priors, generator=g)
        gt_inds = torch.zeros(num_priors, dtype=torch.long)
        if num_gts > 0:
            pos = u < p_pos
            gt_inds[pos] = torch.randint(1, num_gts + 1, (int(pos.sum()),), generator=g)
        gt_inds[(u >= p_pos) & (u < p_pos + p_ignore)] = -1
        gt_labels = torch.randint(0, num_classes, (max(num_gts, 1),), generator=g)
        labels = torch.full((num_priors,), -1, dtype=torch.long)
        labels[gt_inds > 0] = gt_labels[gt_inds[gt_inds > 0] - 1]
        max_overlaps = torch.rand(num_priors, generator=g)
        return cls(num_gts, gt_inds, max_overlaps, labels)


def unassigned(inside: Tensor) -> Tensor:
    """(B, A) ``gt_inds`` of a batch with nothing to assign (no box, no prior): 0 on the ``inside``
    priors, -1 outside, as each image's own assignment unmapped."""
    return torch.where(inside, 0, -1)


def ignores_given(ignore_iof_thr: float, gt_boxes_ignore) -> bool:
    """Whether a batch's ignored boxes take part in its assignment (their IoF is per image)."""
    return ignore_iof_thr > 0 and any(ig is not None and ig.numel() > 0 for ig in gt_boxes_ignore or ())


def assign_images(assign, priors: Tensor, inside: Tensor, gts, rows, num_level_priors=None, extra=None,
                  **per_prior):
    """(len(rows), A) ``gt_inds`` (-1 outside), (len(rows), A) ``max_overlaps`` at the positives (0
    elsewhere) and the (len(rows), A) ``extras[extra]`` (0 outside; None without ``extra``) of the batch's
    images ``rows``, each as ``assign`` gives them on its own inside priors (the per-image path's inputs:
    the inside priors, their count per level, ``per_prior`` tensors (B, A, ...) of the inside priors):
    where a batched assignment cannot give the same result for an image."""
    inds, overlaps, extras = [], [], []
    for b in rows:
        keep = inside[b]
        n = gts.counts[b]
        levels = None if num_level_priors is None else [int(v.sum()) for v in keep.split(list(num_level_priors))]
        result = assign(priors[keep], gts.boxes[b, :n], gts.labels[b, :n], num_level_priors=levels,
                        **{k: v[b][keep] for k, v in per_prior.items()})
        gt_inds = torch.full(keep.shape, -1, dtype=torch.long, device=keep.device)
        gt_inds[keep] = result.gt_inds
        matched = torch.zeros(keep.shape, dtype=torch.float32, device=keep.device)
        matched[keep] = torch.where(result.gt_inds > 0, result.max_overlaps.float(), 0.0)
        inds.append(gt_inds)
        overlaps.append(matched)
        if extra is not None:
            value = torch.zeros(keep.shape, dtype=result.extras[extra].dtype, device=keep.device)
            value[keep] = result.extras[extra]
            extras.append(value)
    return torch.stack(inds), torch.stack(overlaps), torch.stack(extras) if extras else None
