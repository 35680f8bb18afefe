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

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .transfers import constant

__all__ = ["Stage", "STAGE_TEXT", "PostprocessResult", "postprocess_dense", "postprocess_d2l",
           "suppressors", "batched_nms_mmcv", "offset_boxes", "NMS_SPLIT_THR"]

NMS_SPLIT_THR = 10000  # mmcv batched_nms: nms_cfg's split_thr default
_FIRST_WIDTH = 8  # kept boxes per suppressed box in the first round of the search (then 16, 32, ...)


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


@torch.no_grad()  # a record, not a graph (and the reused buffers below are ``out=`` arguments)
def suppressors(boxes: Tensor, scores: Tensor, labels: Tensor, keep: Tensor, iou_threshold: float,
                class_agnostic: bool = False) -> tuple[Tensor, Tensor]:
    """For each box not in ``keep``: the kept box that suppressed it, and their IoU.

    Greedy NMS removes a box at the first (highest-scoring) kept box of its class that overlaps
    it by more than ``iou_threshold``; suppressed boxes suppress nothing. So the suppressor is the
    highest-scoring kept box of the same class, scoring at least as high, with IoU > threshold
    (kept boxes in ``keep``'s order among equal scores). Only same-class (kept, suppressed) pairs
    are compared (all pairs when ``class_agnostic``), on the coordinates given: pass the boxes NMS
    saw (the class-offset ones). The IoU is ``bbox_overlaps``'s, bit for bit. Returns
    ``suppressed_by`` (N,) index into ``boxes`` (-1 for kept boxes) and ``iou`` (N,).

    Each suppressed box walks its class's kept boxes in score order, in rounds of growing width
    (8, 16, 32, ... kept boxes), and leaves at its first hit: the suppressor is nearly always
    among the first kept boxes of the class, so few of the (kept, suppressed) pairs of a class
    are ever compared (at 50,000 clustered candidates about 1.1M of 6.6M). Each round is cut
    into tiles of ``_plane_pairs`` pairs computed in reused buffers.
    """
    n = boxes.shape[0]
    dev = boxes.device
    by = torch.full((n,), -1, dtype=torch.long, device=dev)
    iou_out = boxes.new_zeros(n)
    gone = torch.ones(n, dtype=torch.bool, device=dev)
    gone[keep] = False
    sup = gone.nonzero().view(-1)
    if sup.numel() == 0 or keep.numel() == 0:
        return by, iou_out
    group = torch.zeros_like(labels) if class_agnostic else labels
    k = keep.index_select(0, torch.argsort(scores.index_select(0, keep), descending=True, stable=True))
    k = k.index_select(0, torch.argsort(group.index_select(0, k), stable=True))  # by class, then score (desc.)
    classes, count = torch.unique_consecutive(group.index_select(0, k), return_counts=True)
    first = torch.cumsum(count, 0) - count
    sup_group = group.index_select(0, sup)
    low, high = int(group.min()), int(group.max())
    if low >= 0 and high < 1 << 24:  # class -> its slice of k by a lookup table
        table = torch.full((high + 1,), -1, dtype=torch.long, device=dev)
        table[classes] = torch.arange(classes.numel(), device=dev)
        seg = table.index_select(0, sup_group)
        has = seg >= 0
    else:
        seg = torch.searchsorted(classes, sup_group).clamp_(max=classes.numel() - 1)
        has = classes.index_select(0, seg) == sup_group
    if not bool(has.all()):  # only boxes of a class with a kept box can have a suppressor
        inside = has.nonzero().view(-1)
        sup, seg = sup.index_select(0, inside), seg.index_select(0, inside)
    # the kept boxes (by class, then score) and, for each suppressed box still without a
    # suppressor, its class's slice of them [first, first + count), its box, area and score;
    # rounds work on (W, U) planes: long contiguous rows, the suppressed boxes broadcast along W
    columns = boxes.t()  # x1, y1, x2, y2 rows: each box field gathered in one operation
    k_fields = [*columns.index_select(1, k).unbind(0), scores.index_select(0, k)]
    s_fields = list(columns.index_select(1, sup).unbind(0))
    s_fields += [(s_fields[2] - s_fields[0]) * (s_fields[3] - s_fields[1]),  # box_area
                 scores.index_select(0, sup), first.index_select(0, seg), count.index_select(0, seg), sup]
    s_fields.append(s_fields[6] + s_fields[7] - 1)  # the position of the class's last kept box
    eps = constant([1e-6], boxes)  # bbox_overlaps' union clamp (no host copy on a GPU)
    work: dict[str, Tensor] = {}

    def plane(name: str, dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
        """A reused buffer: fresh multi-MB tensors every operation cost more in page faults than
        the arithmetic."""
        size = math.prod(shape)
        buf = work.get(name)
        if buf is None or buf.numel() < size:
            buf = work[name] = torch.empty(max(size, 1 << 16), dtype=dtype, device=dev)
        return buf[:size].view(shape)

    pairs = _plane_pairs(boxes)
    start, width = 0, max(_FIRST_WIDTH, pairs // max(1, sup.numel()))  # few suppressed boxes: one wide tile
    while s_fields[8].numel():
        width = min(width, int(s_fields[7].max()) - start)  # no wider than the largest class left
        rank = torch.arange(start, start + width, device=dev)[:, None]
        weight = (width - rank + start).to(torch.int32)
        step = max(1, pairs // width)  # suppressed boxes per tile
        going = []
        for j in range(0, s_fields[8].numel(), step):
            sx1, sy1, sx2, sy2, s_area, s_score, s_first, s_count, s_sup, s_last = (f[j:j + step] for f in s_fields)
            u = s_sup.numel()
            shape = (width, u)
            # positions in k; past the end of its class a suppressed box meets the class's last kept
            # box again, whose first meeting (a higher weight) wins if it is a hit
            pos = torch.add(s_first, rank, out=plane("pos", torch.long, shape))
            flat = torch.minimum(pos, s_last, out=pos).view(-1)
            kx1, ky1, kx2, ky2, k_score = (torch.index_select(f, 0, flat, out=plane(f"k{i}", f.dtype, (u * width,)))
                                           .view(shape) for i, f in enumerate(k_fields))
            # bbox_overlaps(kept, suppressed, is_aligned=True): the same float operations, same order
            area = torch.sub(kx2, kx1, out=plane("area", kx1.dtype, shape))
            area.mul_(torch.sub(ky2, ky1, out=plane("tmp", kx1.dtype, shape)))  # box_area
            iw = torch.minimum(kx2, sx2, out=kx2).sub_(torch.maximum(kx1, sx1, out=kx1)).clamp_(min=0)
            ih = torch.minimum(ky2, sy2, out=ky2).sub_(torch.maximum(ky1, sy1, out=ky1)).clamp_(min=0)
            overlap = iw.mul_(ih)
            ious = overlap.div_(torch.maximum(area.add_(s_area).sub_(overlap), eps, out=area))
            over = torch.gt(ious, iou_threshold, out=plane("over", torch.bool, shape))
            over.logical_and_(torch.ge(k_score, s_score, out=plane("cond", torch.bool, shape)))
            # the first hit in score order: the largest (width - rank) among the hits (argmax is slow)
            best = torch.mul(over, weight, out=plane("weight", torch.int32, shape)).amax(0)
            hit = best > 0
            col = hit.nonzero().view(-1)
            if col.numel():
                cell = (width - best.index_select(0, col)) * u + col
                done = s_sup.index_select(0, col)
                by[done] = k.index_select(0, flat.index_select(0, cell))
                iou_out[done] = ious.view(-1).index_select(0, cell)
            going.append(hit.logical_not_().logical_and_(s_count > start + width))
        start += width
        more = torch.cat(going).nonzero().view(-1) if len(going) > 1 else going[0].nonzero().view(-1)
        if more.numel() == 0:
            break
        s_fields = [f.index_select(0, more) for f in s_fields]
        width *= 2
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

    Below ``split_thr`` the single NMS is run per class whenever that cannot change its result
    (:func:`_classes_apart`: no shifted box of one class reaches into another's x range, so no
    pair of two classes has an intersection, and a threshold >= 0): the same kept boxes in the
    same order (torchvision's NMS sorts by score stably), at per-class cost instead of
    (candidates x kept).

    Returns ``keep`` (K,) indices by descending score, the shifted boxes (what every IoU was
    computed on), and whether boxes of two classes could have met in one NMS (only when the
    single pass sees coordinates below -1: the offset then no longer separates the classes).
    """
    shifted = offset_boxes(boxes, labels)
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device), shifted, False
    cross = False
    if n < split_thr:
        cross = bool(boxes.min() < -1)
        # mmcv's own single pass off the CPU: a GPU pays launches and a host sync per NMS call, so
        # the per-class calls that are cheaper on a CPU cost 17x torchvision there (80 classes, H200)
        if not _per_class_pays(boxes):
            return nms(shifted, scores, iou_threshold), shifted, cross
    order = torch.argsort(labels, stable=True)  # classes as contiguous slices
    count = torch.unique_consecutive(labels[order], return_counts=True)[1]
    if n < split_thr and not _classes_apart(shifted, order, count, iou_threshold):
        return nms(shifted, scores, iou_threshold), shifted, cross
    return _per_class_nms(shifted, scores, order, count, iou_threshold), shifted, cross


def _plane_pairs(boxes: Tensor) -> int:
    """(kept, suppressed) pairs per tile of the suppressor search: on the CPU as many as stay in
    its cache (the buffers are reused); on a GPU, where each tile costs its ~35 launches whatever
    its size, 64x more (buffers of ~170 MB at most): 3,500 candidates take one tile either way,
    50,000 take 168 launches instead of 953 (``detengine.launches.gpu_code_paths`` patches this)."""
    return 1 << 16 if boxes.is_cpu else 1 << 22


def _per_class_pays(boxes: Tensor) -> bool:
    """Whether NMS per class beats one pass over all classes: on the CPU (each call's cost follows
    its candidates x kept); not on a GPU, where each call costs its launches and a sync.
    (``detengine.launches.gpu_code_paths`` patches this to count a GPU's launches on the CPU.)"""
    return boxes.is_cpu


def _classes_apart(shifted: Tensor, order: Tensor, count: Tensor, iou_threshold: float) -> bool:
    """True when one NMS over all ``shifted`` boxes must equal per-class NMS: coordinates finite,
    ``iou_threshold >= 0``, and, classes in label order (``order``: by label, ``count`` per
    class), every x coordinate of a class at or left of every x coordinate of the next. Then two
    boxes of two classes have intersection width ``min(x2) - max(x1) <= 0``, so their IoU (0, -0
    or NaN) is never above the threshold."""
    if not iou_threshold >= 0 or not bool(torch.isfinite(shifted).all()):
        return False
    if count.numel() == 1:
        return True
    x = shifted[order][:, 0::2]
    lo = torch.segment_reduce(x.amin(1), "min", lengths=count)
    hi = torch.segment_reduce(x.amax(1), "max", lengths=count)
    return bool((hi[:-1] <= lo[1:]).all())


def _per_class_nms(shifted: Tensor, scores: Tensor, order: Tensor, count: Tensor, iou_threshold: float) -> Tensor:
    """mmcv's ``split_thr`` branch: NMS per class on the shifted boxes, kept indices by descending
    score (ties by index). ``order`` sorts by label (stably), ``count`` boxes per class."""
    boxes_sorted, scores_sorted = shifted[order], scores[order]
    pieces, start = [], 0
    for c in count.tolist():
        pieces.append(nms(boxes_sorted[start:start + c], scores_sorted[start:start + c], iou_threshold) + start)
        start += c
    keep = torch.sort(order[torch.cat(pieces)]).values
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]


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
                      max_per_img: int, min_bbox_size: float = 0, img_shape=None,
                      record: bool = True) -> PostprocessResult:
    """mmdetection 3.x dense-head post-processing of one image, with the full record.

    Args:
        cls_scores (Tensor[A, K]): logits; K = C + 1 with background last for ``"softmax"``,
            K = C for ``"sigmoid"``.
        bbox_preds (Tensor[A, 4]): regression output, turned into boxes by
            ``decode(priors (n, 4), preds (n, 4), max_shape) -> (n, 4)``.
        priors (Tensor[A, 4]): the priors in the same order; ``num_per_level``: A split by level.
        record: False skips the suppressors (``suppressed_by`` all -1, ``suppressed_iou`` 0;
            ``params["record"]`` says so): the detections, stages and counts are the same, for
            callers that need only the detections (evaluation, export).
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
                  max_per_img=max_per_img, min_bbox_size=min_bbox_size, record=record)
    result = _nms_stages(boxes, scores, labels, prior_idx, min_bbox_size, iou_threshold, max_per_img,
                         class_agnostic=False, counts=counts, record=record)
    raw_stage[result.cand_prior, result.cand_label] = result.cand_stage
    result.raw_stage, result.params = raw_stage, params
    return result


def _nms_stages(boxes, scores, labels, prior_idx, min_bbox_size, iou_threshold, max_per_img, *,
                class_agnostic, counts, nms_first_keep=None, record=True) -> PostprocessResult:
    """Size filter, NMS, max_per_img on decoded candidates, recording each one's fate (without
    the suppressors when not ``record``)."""
    n = boxes.shape[0]
    stage = torch.full((n,), Stage.KEPT, dtype=torch.uint8, device=boxes.device)
    alive = None  # all candidates (no copies), else the indices of those that reach NMS
    if min_bbox_size is not None and min_bbox_size >= 0:
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        big = (w > min_bbox_size) & (h > min_bbox_size)
        if not bool(big.all()):
            stage[~big] = Stage.TOO_SMALL
            alive = big.nonzero().view(-1)
    counts["min_bbox_size"] = n if alive is None else int(alive.numel())
    if alive is None:
        nms_boxes, nms_scores, nms_labels = boxes, scores, labels
    else:  # the coordinates NMS compared: the record uses the same
        nms_boxes, nms_scores, nms_labels = (t.index_select(0, alive) for t in (boxes, scores, labels))
    if nms_first_keep is not None:
        keep = nms_first_keep
    elif counts["min_bbox_size"] == 0:
        keep = torch.zeros(0, dtype=torch.long, device=boxes.device)
    elif class_agnostic:
        keep = nms(nms_boxes, nms_scores, iou_threshold)
    else:
        keep, nms_boxes, class_agnostic = batched_nms_mmcv(nms_boxes, nms_scores, nms_labels, iou_threshold)
    if alive is not None and nms_first_keep is None:
        keep = alive.index_select(0, keep)
    if record:
        local_keep = keep if alive is None else _positions(alive, keep)
        suppressed_by, suppressed_iou = suppressors(nms_boxes, nms_scores, nms_labels, local_keep, iou_threshold,
                                                    class_agnostic)
        if alive is not None:  # back to candidate indices
            by_local, iou_local = suppressed_by, suppressed_iou
            suppressed_by = torch.full((n,), -1, dtype=torch.long, device=boxes.device)
            suppressed_iou = boxes.new_zeros(n)
            hit = (by_local >= 0).nonzero().view(-1)
            suppressed_by[alive[hit]] = alive[by_local[hit]]
            suppressed_iou[alive[hit]] = iou_local[hit]
    else:
        suppressed_by = torch.full((n,), -1, dtype=torch.long, device=boxes.device)
        suppressed_iou = boxes.new_zeros(n)
    dropped = torch.ones(n, dtype=torch.bool, device=boxes.device)
    dropped[keep] = False
    stage[dropped & (stage == Stage.KEPT)] = Stage.SUPPRESSED
    counts["nms"] = int(keep.numel())
    if max_per_img is not None and max_per_img > 0:
        stage[keep[max_per_img:]] = Stage.OVER_MAX_PER_IMG
        keep = keep[:max_per_img]
    counts["max_per_img"] = int(keep.numel())
    return PostprocessResult(boxes.index_select(0, keep), scores.index_select(0, keep), labels.index_select(0, keep),
                             keep, prior_idx, labels, scores, boxes, stage, suppressed_by, suppressed_iou,
                             torch.zeros(0, dtype=torch.uint8), counts)


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
                   max_num: int = -1, record: bool = True) -> tuple[Tensor, Tensor, Tensor, PostprocessResult]:
    """mmdetection's ``multiclass_nms`` (softmax layout: ``scores`` (N, C + 1), background last).

    ``boxes`` (N, 4) shared by all classes, or (N, 4C) class-specific. Keeps pairs with
    score > ``score_thr``, per-class NMS, first ``max_num`` by score. Returns ``dets`` (K, 5)
    ``[x1, y1, x2, y2, score]``, ``labels`` (K,), ``inds`` (K,) into the flattened (N * C) pairs,
    and the record (without the suppressors when not ``record``)."""
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
                         max_num if max_num > 0 else None, class_agnostic=False, counts=counts, record=record)
    raw = torch.full((n, num_classes), Stage.BELOW_SCORE_THR, dtype=torch.uint8, device=scores.device)
    raw.view(-1)[inds] = result.cand_stage
    result.raw_stage = raw
    dets = torch.cat([result.boxes, result.scores[:, None]], dim=1)
    return dets, result.labels, inds[result.kept], result
