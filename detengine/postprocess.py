"""Test-time post-processing with a record of where every raw candidate left.

``postprocess_dense`` is mmdetection 3.x's ``_predict_by_feat_single`` + ``_bbox_post_process``
(SSD, RetinaNet, RTMDet): per level, (prior, class) pairs with score > ``score_thr``, the top
``nms_pre`` of them by score, decode, drop boxes not wider and taller than ``min_bbox_size``,
per-class NMS as mmcv's ``batched_nms`` runs it (:func:`batched_nms_mmcv`), first ``max_per_img``. ``postprocess_d2l`` is
d2l's ``multibox_detection`` (best class per anchor, class-agnostic NMS, then threshold).

The record answers the NMS view's questions: for every raw (prior, class) pair the stage at which
it left (:class:`Stage`), and for every suppressed box the kept box that suppressed it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .boxes import bbox_overlaps

__all__ = ["Stage", "STAGE_TEXT", "PostprocessResult", "postprocess_dense", "postprocess_d2l",
           "suppressors", "batched_nms_mmcv", "offset_boxes", "NMS_SPLIT_THR"]

NMS_SPLIT_THR = 10000  # mmcv batched_nms: nms_cfg's split_thr default


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """``torchvision.ops.nms``, imported on first use: importing torchvision costs ~1.3 s, which
    the window's start-up does not wait for."""
    from torchvision.ops import nms as torchvision_nms
    return torchvision_nms(boxes, scores, iou_threshold)


class Stage:
    """Where a candidate left the pipeline (uint8 codes, stable for JSON)."""

    KEPT = 0
    BELOW_SCORE_THR = 1
    OUTSIDE_NMS_PRE = 2
    TOO_SMALL = 3
    SUPPRESSED = 4
    OVER_MAX_PER_IMG = 5


STAGE_TEXT = {
    Stage.KEPT: "kept",
    Stage.BELOW_SCORE_THR: "score at or below score_thr",
    Stage.OUTSIDE_NMS_PRE: "outside the level's top nms_pre",
    Stage.TOO_SMALL: "decoded box not larger than min_bbox_size",
    Stage.SUPPRESSED: "suppressed by NMS",
    Stage.OVER_MAX_PER_IMG: "beyond max_per_img",
}


@dataclass
class PostprocessResult:
    """Detections of one image and the history of every candidate.

    Final detections (sorted by score): ``boxes`` (K, 4) xyxy, ``scores`` (K,), ``labels`` (K,),
    ``kept`` (K,) indices into the candidate arrays.
    Candidates (the N pairs that were decoded): ``cand_prior`` (N,), ``cand_label`` (N,),
    ``cand_score`` (N,), ``cand_box`` (N, 4), ``cand_stage`` (N,) uint8, ``suppressed_by`` (N,)
    candidate index of the suppressing box or -1, ``suppressed_iou`` (N,) the IoU NMS compared
    (per-class NMS: on the class-offset boxes, as mmcv; it can differ from the raw boxes' IoU in
    the last bits, and that difference decides pairs at the threshold).
    ``raw_stage`` (A, C) uint8: the stage of every raw (prior, class) pair (d2l: (A, 1)).
    ``counts``: number of candidates after each stage, in pipeline order.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    kept: Tensor
    cand_prior: Tensor
    cand_label: Tensor
    cand_score: Tensor
    cand_box: Tensor
    cand_stage: Tensor
    suppressed_by: Tensor
    suppressed_iou: Tensor
    raw_stage: Tensor
    counts: dict[str, int] = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"PostprocessResult(detections={int(self.boxes.shape[0])}, counts={self.counts})"


def suppressors(boxes: Tensor, scores: Tensor, labels: Tensor, keep: Tensor, iou_threshold: float,
                class_agnostic: bool = False) -> tuple[Tensor, Tensor]:
    """For each box not in ``keep``: the kept box that suppressed it, and their IoU.

    Greedy NMS removes a box at the first (highest-scoring) kept box of its class that overlaps
    it by more than ``iou_threshold``; suppressed boxes suppress nothing. So the suppressor is the
    highest-scoring kept box of the same class, scoring at least as high, with IoU > threshold.
    Only same-class (kept, suppressed) pairs are compared (all pairs when ``class_agnostic``), on
    the coordinates given: pass the boxes NMS saw (the class-offset ones). Returns
    ``suppressed_by`` (N,) index into ``boxes`` (-1 for kept boxes) and ``iou`` (N,).
    """
    n = boxes.shape[0]
    by = torch.full((n,), -1, dtype=torch.long, device=boxes.device)
    iou_out = boxes.new_zeros(n)
    gone = torch.ones(n, dtype=torch.bool, device=boxes.device)
    gone[keep] = False
    sup = gone.nonzero().view(-1)
    if sup.numel() == 0 or keep.numel() == 0:
        return by, iou_out
    group = torch.zeros_like(labels) if class_agnostic else labels
    k = keep[torch.argsort(scores[keep], descending=True, stable=True)]
    k = k[torch.argsort(group[k], stable=True)]  # by class, then score (descending)
    num_groups = int(group.max()) + 1
    count = torch.bincount(group[k], minlength=num_groups)
    first_of = torch.cumsum(count, 0) - count
    per_sup = count[group[sup]]  # kept boxes of each suppressed box's class
    pair_sup = torch.repeat_interleave(torch.arange(sup.numel(), device=boxes.device), per_sup)
    base = torch.repeat_interleave(torch.cumsum(per_sup, 0) - per_sup, per_sup)
    pos = first_of[group[sup]][pair_sup] + torch.arange(pair_sup.numel(), device=boxes.device) - base
    kb, sb = k[pos], sup[pair_sup]
    ious = bbox_overlaps(boxes[kb], boxes[sb], is_aligned=True)
    over = (ious > iou_threshold) & (scores[kb] >= scores[sb])
    best = torch.full((sup.numel(),), pair_sup.numel(), dtype=torch.long, device=boxes.device)
    pair_ids = torch.arange(pair_sup.numel(), device=boxes.device)
    best.scatter_reduce_(0, pair_sup[over], pair_ids[over], reduce="amin")  # first in score order
    found = best < pair_sup.numel()
    by[sup[found]] = kb[best[found]]
    iou_out[sup[found]] = ious[best[found]]
    return by, iou_out


def offset_boxes(boxes: Tensor, labels: Tensor) -> Tensor:
    """mmcv's (and torchvision's) class-offset trick: each class moved by ``label * (max + 1)``,
    computed in the boxes' dtype (float32), so boxes of different classes do not overlap."""
    if boxes.numel() == 0:
        return boxes.clone()
    offsets = labels.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return boxes + offsets[:, None]


def batched_nms_mmcv(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float,
                     split_thr: int = NMS_SPLIT_THR) -> tuple[Tensor, Tensor, bool]:
    """Per-class NMS decided exactly as mmcv 2.x's ``batched_nms`` (mmdetection's test time).

    Always on the class-offset boxes (float32): ``torchvision.ops.batched_nms`` instead switches
    to raw coordinates above 1,000 candidates on CPU (25,000 on CUDA), where a pair at IoU
    0.449997 raw / 0.450006 shifted gets the other verdict. Below ``split_thr`` one NMS over all
    shifted boxes; from ``split_thr`` on, one NMS per class on the shifted boxes, then all kept
    boxes sorted by score (mmcv's ``ops/nms.py`` ``batched_nms``, the ``split_thr`` branch).

    Returns ``keep`` (K,) indices by descending score, the shifted boxes (what every IoU was
    computed on), and whether boxes of two classes could have met in one NMS (only when the
    single pass sees coordinates below -1: the offset then no longer separates the classes).
    """
    shifted = offset_boxes(boxes, labels)
    n = boxes.shape[0]
    if n < split_thr:
        keep = nms(shifted, scores, iou_threshold)
        return keep, shifted, bool(n and boxes.min() < -1)
    kept = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    for label in torch.unique(labels):
        idx = (labels == label).nonzero().view(-1)
        kept[idx[nms(shifted[idx], scores[idx], iou_threshold)]] = True
    keep = kept.nonzero().view(-1)
    return keep[torch.argsort(scores[keep], descending=True, stable=True)], shifted, False


def _filter_topk(scores: Tensor, above: Tensor, nms_pre: int):
    """mmdetection ``filter_scores_and_topk``: pairs with score > thr (``above``), then the top
    ``nms_pre`` by score, in descending order. Returns (scores, prior_idx, label, #above)."""
    idx = torch.nonzero(above)
    vals = scores[idx[:, 0], idx[:, 1]]
    n = idx.size(0)
    k = n if nms_pre is None or nms_pre <= 0 else min(nms_pre, n)
    if k < n:
        vals, order = vals.topk(k)
    else:
        vals, order = vals.sort(descending=True)
    top = idx[order]
    return vals, top[:, 0], top[:, 1], n


def postprocess_dense(cls_scores: Tensor, bbox_preds: Tensor, priors: Tensor, num_per_level: list[int],
                      decode, *, score_layout: str, score_thr: float, nms_pre: int, iou_threshold: float,
                      max_per_img: int, min_bbox_size: float = 0, img_shape=None) -> PostprocessResult:
    """mmdetection 3.x dense-head post-processing of one image, with the full record.

    Args:
        cls_scores (Tensor[A, K]): logits; K = C + 1 with background last for ``"softmax"``,
            K = C for ``"sigmoid"``.
        bbox_preds (Tensor[A, 4]): regression output, turned into boxes by
            ``decode(priors (n, 4), preds (n, 4), max_shape) -> (n, 4)``.
        priors (Tensor[A, 4]): the priors in the same order; ``num_per_level``: A split by level.
    """
    if score_layout == "softmax":
        probs = cls_scores.softmax(-1)[:, :-1]
    elif score_layout == "sigmoid":
        probs = cls_scores.sigmoid()
    else:
        raise ValueError(f"score_layout must be 'softmax' or 'sigmoid', got {score_layout!r}")
    num_priors, num_classes = probs.shape
    raw_stage = torch.full((num_priors, num_classes), Stage.BELOW_SCORE_THR, dtype=torch.uint8,
                           device=probs.device)
    above = probs > score_thr
    raw_stage[above] = Stage.OUTSIDE_NMS_PRE
    sc, pr, lb, n_above, start = [], [], [], 0, 0
    for count in num_per_level:
        sl = slice(start, start + count)
        s, p, c, n = _filter_topk(probs[sl], above[sl], nms_pre)
        sc.append(s), pr.append(p + start), lb.append(c)
        n_above += n
        start += count
    scores, prior_idx, labels = torch.cat(sc), torch.cat(pr), torch.cat(lb)
    boxes = decode(priors[prior_idx], bbox_preds[prior_idx], img_shape)
    counts = {"raw": num_priors * num_classes, "score_thr": n_above, "nms_pre": int(scores.numel())}
    params = dict(score_layout=score_layout, score_thr=score_thr, nms_pre=nms_pre, iou_threshold=iou_threshold,
                  max_per_img=max_per_img, min_bbox_size=min_bbox_size)
    result = _nms_stages(boxes, scores, labels, prior_idx, min_bbox_size, iou_threshold, max_per_img,
                         class_agnostic=False, counts=counts)
    raw_stage[result.cand_prior, result.cand_label] = result.cand_stage
    result.raw_stage, result.params = raw_stage, params
    return result


def _nms_stages(boxes, scores, labels, prior_idx, min_bbox_size, iou_threshold, max_per_img, *,
                class_agnostic, counts, nms_first_keep=None) -> PostprocessResult:
    """Size filter, NMS, max_per_img on decoded candidates, recording each one's fate."""
    n = boxes.shape[0]
    stage = torch.full((n,), Stage.KEPT, dtype=torch.uint8, device=boxes.device)
    alive = torch.arange(n, device=boxes.device)
    if min_bbox_size is not None and min_bbox_size >= 0:
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        big = (w > min_bbox_size) & (h > min_bbox_size)
        stage[~big] = Stage.TOO_SMALL
        alive = alive[big]
    counts["min_bbox_size"] = int(alive.numel())
    nms_boxes = boxes[alive]  # the coordinates NMS compared: the record uses the same
    if nms_first_keep is not None:
        keep = nms_first_keep
    elif alive.numel() == 0:
        keep = alive
    elif class_agnostic:
        keep = alive[nms(nms_boxes, scores[alive], iou_threshold)]
    else:
        local, nms_boxes, cross_class = batched_nms_mmcv(nms_boxes, scores[alive], labels[alive], iou_threshold)
        keep, class_agnostic = alive[local], cross_class
    by_local, iou_local = suppressors(nms_boxes, scores[alive], labels[alive],
                                      _positions(alive, keep), iou_threshold, class_agnostic)
    suppressed_by = torch.full((n,), -1, dtype=torch.long, device=boxes.device)
    suppressed_iou = boxes.new_zeros(n)
    hit = by_local >= 0
    suppressed_by[alive[hit]] = alive[by_local[hit]]
    suppressed_iou[alive[hit]] = iou_local[hit]
    dropped = torch.ones(n, dtype=torch.bool, device=boxes.device)
    dropped[keep] = False
    stage[dropped & (stage == Stage.KEPT)] = Stage.SUPPRESSED
    counts["nms"] = int(keep.numel())
    if max_per_img is not None and max_per_img > 0:
        stage[keep[max_per_img:]] = Stage.OVER_MAX_PER_IMG
        keep = keep[:max_per_img]
    counts["max_per_img"] = int(keep.numel())
    return PostprocessResult(boxes[keep], scores[keep], labels[keep], keep, prior_idx, labels, scores, boxes,
                             stage, suppressed_by, suppressed_iou, torch.zeros(0, dtype=torch.uint8), counts)


def _positions(alive: Tensor, keep: Tensor) -> Tensor:
    """Positions of ``keep`` (global indices) inside ``alive``."""
    lookup = torch.full((int(alive.max()) + 1 if alive.numel() else 1,), -1, dtype=torch.long, device=alive.device)
    lookup[alive] = torch.arange(alive.numel(), device=alive.device)
    return lookup[keep]


def postprocess_d2l(cls_scores: Tensor, offset_preds: Tensor, anchors: Tensor, decode, *,
                    nms_threshold: float = 0.5, pos_threshold: float = 0.009999999) -> PostprocessResult:
    """d2l ``multibox_detection`` for one image, with the record.

    ``cls_scores`` (Tensor[A, C + 1]) logits with background FIRST (d2l's layout); each anchor's
    candidate is its best foreground class; class-agnostic NMS over all anchors; then kept boxes
    with confidence < ``pos_threshold`` become background. Labels are 0-based foreground classes.
    """
    probs = cls_scores.softmax(-1)
    conf, class_id = torch.max(probs[:, 1:], 1)
    boxes = decode(anchors, offset_preds, None)
    prior_idx = torch.arange(anchors.shape[0], device=anchors.device)
    counts = {"raw": int(anchors.shape[0])}
    keep = nms(boxes, conf, nms_threshold)
    result = _nms_stages(boxes, conf, class_id, prior_idx, None, nms_threshold, None,
                         class_agnostic=True, counts=counts, nms_first_keep=keep)
    low = result.cand_score[result.kept] < pos_threshold
    result.cand_stage[result.kept[low]] = Stage.BELOW_SCORE_THR
    final = result.kept[~low]
    result.kept, result.boxes, result.scores, result.labels = final, boxes[final], conf[final], class_id[final]
    counts["score_thr"] = int(final.numel())
    counts.pop("min_bbox_size", None), counts.pop("max_per_img", None)
    result.raw_stage = result.cand_stage[:, None].clone()
    result.params = dict(score_layout="softmax_bg_first", nms_threshold=nms_threshold, pos_threshold=pos_threshold)
    return result


def multiclass_nms(boxes: Tensor, scores: Tensor, score_thr: float, iou_threshold: float,
                   max_num: int = -1) -> tuple[Tensor, Tensor, Tensor, PostprocessResult]:
    """mmdetection's ``multiclass_nms`` (softmax layout: ``scores`` (N, C + 1), background last).

    ``boxes`` (N, 4) shared by all classes, or (N, 4C) class-specific. Keeps pairs with
    score > ``score_thr``, per-class NMS, first ``max_num`` by score. Returns ``dets`` (K, 5)
    ``[x1, y1, x2, y2, score]``, ``labels`` (K,), ``inds`` (K,) into the flattened (N * C) pairs,
    and the record."""
    num_classes = scores.size(1) - 1
    n = scores.size(0)
    if boxes.shape[1] > 4:
        per_class = boxes.view(n, -1, 4)
    else:
        per_class = boxes[:, None].expand(n, num_classes, 4)
    flat_scores = scores[:, :-1].reshape(-1)
    valid = flat_scores > score_thr
    inds = valid.nonzero().view(-1)
    flat_boxes = per_class.reshape(-1, 4)[inds]
    cand_scores, cand_labels = flat_scores[inds], inds % num_classes
    counts = {"raw": int(flat_scores.numel()), "score_thr": int(inds.numel())}
    result = _nms_stages(flat_boxes, cand_scores, cand_labels, inds // num_classes, None, iou_threshold,
                         max_num if max_num > 0 else None, class_agnostic=False, counts=counts)
    raw = torch.full((n, num_classes), Stage.BELOW_SCORE_THR, dtype=torch.uint8, device=scores.device)
    raw.view(-1)[inds] = result.cand_stage
    result.raw_stage = raw
    dets = torch.cat([result.boxes, result.scores[:, None]], dim=1)
    return dets, result.labels, inds[result.kept], result
