"""FCOS's head logic (Tian et al. 2019), as mmdetection 3.3.0's ``FCOSHead.loss_by_feat`` and
``BaseDenseHead.predict_by_feat`` with score factors.

Layout of the head outputs, per image, in point order (level, row, column):

- ``cls_scores`` (Tensor[A, C + 1]): the C class logits, then the centerness logit in the last
  column (the trace and the detector carry two tensors per image; centerness is a score factor);
- ``bbox_preds`` (Tensor[A, 4]): ``(l, t, r, b)`` distances in input PIXELS, as mmdetection's
  ``forward`` emits them at test time. With ``norm_on_bbox`` mmdetection trains on distances in
  stride units; the loss here divides by the stride first (exact: strides are powers of two).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..postprocess import Stage, _filter_topk, _nms_stages
from .anchor_head import AnchorHeadCore
from .base import BATCHED_LOSSES, ImageLoss, PaddedGTs, Targets

__all__ = ["CenternessHeadCore", "FCOSHeadCore", "CenternessNormalisers", "CenternessImageLoss",
           "centerness_target"]

_EPS = torch.finfo(torch.float32).eps


def centerness_target(bbox_targets: Tensor) -> Tensor:
    """(P,) ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of (P, 4) ``(l, t, r, b)``
    targets of positives (FCOS eq. 3)."""
    if bbox_targets.shape[0] == 0:
        return bbox_targets.new_zeros(0)
    lr, tb = bbox_targets[:, 0::2], bbox_targets[:, 1::2]       # slices: a list index is a host copy on a GPU
    ratio = (lr.min(dim=-1).values / lr.max(dim=-1).values) * (tb.min(dim=-1).values / tb.max(dim=-1).values)
    return torch.sqrt(ratio)


@dataclass(frozen=True)
class CenternessNormalisers:
    """The batch's two normalisers: ``num_pos`` divides the class and centerness losses,
    ``centerness`` (the sum of the positives' centerness targets) the box loss; each head says how
    they are made from the images' counts (:meth:`CenternessHeadCore.reduce_avg_factor`)."""

    num_pos: float
    centerness: float

    def __float__(self) -> float:
        return float(self.num_pos)


@dataclass
class CenternessImageLoss(ImageLoss):
    """:class:`ImageLoss` plus the centerness loss of each point (0 off positives), normalised
    so that ``centerness_per_prior.sum() == terms["loss_centerness"]``."""

    centerness_per_prior: Tensor | None = None

    def extra_per_prior(self) -> dict[str, Tensor]:
        """The terms beyond class and box, per prior (the trace's loss breakdown)."""
        return {} if self.centerness_per_prior is None else {"loss_centerness": self.centerness_per_prior}


class CenternessHeadCore(AnchorHeadCore):
    """What FCOS and ATSS share: a centerness logit after the C class logits, three losses
    (class over every weighted prior, box on positives weighted by their centerness target,
    centerness BCE), and test-time scores ``class sigmoid x centerness sigmoid``. Subclasses make
    the targets (``extras["centerness_targets"]``), the normalisers and the positives' losses."""

    def __init__(self, *, loss_centerness, **kw):
        kw.setdefault("score_layout", "sigmoid+centerness")
        super().__init__(**kw)
        self.loss_centerness = loss_centerness

    def cls_channels(self) -> int:
        return self.num_classes + 1              # + the centerness logit

    def needs_predictions(self) -> bool:
        return False

    @staticmethod
    def _batch_totals(values, across_ranks: bool) -> tuple[float, float]:
        """Sums of the images' (count, centerness sum) pairs; with ``across_ranks`` averaged over
        the ranks (mmdetection's ``reduce_mean``, in float32)."""
        from ..train.distributed import is_distributed, reduce_mean
        pairs = [v if isinstance(v, (tuple, list)) else (v, v) for v in values]
        total = torch.tensor([sum(p[0] for p in pairs), sum(p[1] for p in pairs)], dtype=torch.float32)
        if across_ranks and is_distributed():
            total = reduce_mean(total)
        return float(total[0]), float(total[1])

    def _bbox_divisor(self, norm: CenternessNormalisers) -> float:
        raise NotImplementedError

    def _positive_losses(self, ctr_logits, bbox_preds, priors, targets, pos) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def loss_image(self, cls_scores, bbox_preds, priors, targets, avg_factor, breakdown=True) -> CenternessImageLoss:
        norm = avg_factor if isinstance(avg_factor, CenternessNormalisers) else \
            CenternessNormalisers(float(avg_factor), 1.0)
        logits, ctr_logits = cls_scores[:, :self.num_classes], cls_scores[:, self.num_classes]
        cls_raw = self.loss_cls.per_prior(logits, targets.labels)   # (A,), summed over classes
        cls_per_prior = cls_raw * targets.label_weights * self.loss_cls.loss_weight / (norm.num_pos + _EPS)
        pos = targets.sampling_result.pos_inds
        bbox_per_prior = bbox_preds.new_zeros(len(priors))
        ctr_per_prior = bbox_preds.new_zeros(len(priors))
        if pos.numel() > 0:
            bbox_el, ctr_el = self._positive_losses(ctr_logits[pos], bbox_preds[pos], priors.tensor[pos], targets, pos)
            bbox_per_prior = bbox_per_prior.index_put((pos,), bbox_el / self._bbox_divisor(norm))
            ctr_per_prior = ctr_per_prior.index_put((pos,), ctr_el / (norm.num_pos + _EPS))
            loss_bbox, loss_ctr = bbox_per_prior.sum(), ctr_per_prior.sum()
        else:                                               # zeros that keep the graph, as the reference
            loss_bbox, loss_ctr = bbox_preds[pos].sum(), ctr_logits[pos].sum()
        terms = {"loss_cls": cls_per_prior.sum(), "loss_bbox": loss_bbox, "loss_centerness": loss_ctr}
        decoded = self.decode(priors.tensor, bbox_preds).detach() if breakdown else None
        return CenternessImageLoss(cls_per_prior, bbox_per_prior, cls_raw.detach(), terms, float(norm.num_pos),
                                   decoded_pred_boxes=decoded, centerness_per_prior=ctr_per_prior)

    def predict(self, cls_scores, bbox_preds, priors, img_shape, record: bool = True, **overrides):
        """Per level the top ``nms_pre`` (point, class) pairs with class sigmoid > ``score_thr``;
        their boxes decoded (clipped to ``img_shape``), scores times the centerness sigmoid, then
        size filter, per-class NMS, ``max_per_img`` (``_bbox_post_process``)."""
        cfg = self.test_config(**overrides)
        probs = cls_scores[:, :self.num_classes].sigmoid()
        factors = cls_scores[:, self.num_classes].sigmoid()
        raw_stage = torch.full(probs.shape, Stage.BELOW_SCORE_THR, dtype=torch.uint8, device=probs.device)
        above = probs > cfg["score_thr"]
        raw_stage[above] = Stage.OUTSIDE_NMS_PRE
        sc, pr, lb, n_above, start = [], [], [], 0, 0
        for count in priors.num_per_level:
            s, p, c, n = _filter_topk(probs[start:start + count], above[start:start + count], cfg["nms_pre"])
            sc.append(s), pr.append(p + start), lb.append(c)
            n_above, start = n_above + n, start + count
        cls_part, prior_idx, labels = torch.cat(sc), torch.cat(pr), torch.cat(lb)
        boxes = self.decode(priors.tensor[prior_idx], bbox_preds[prior_idx], img_shape)
        scores = cls_part * factors[prior_idx]
        counts = {"raw": int(probs.numel()), "score_thr": n_above, "nms_pre": int(scores.numel())}
        result = _nms_stages(boxes, scores, labels, prior_idx, cfg["min_bbox_size"], cfg["iou_threshold"],
                             cfg["max_per_img"], class_agnostic=False, counts=counts, record=record)
        raw_stage[result.cand_prior, result.cand_label] = result.cand_stage
        result.raw_stage = raw_stage
        result.params = dict(score_layout=self.score_layout, score_factor="centerness", record=record, **cfg)
        return result

    def empty_predictions(self, priors):
        a = len(priors)
        return priors.tensor.new_zeros((a, self.cls_channels())), priors.tensor.new_zeros((a, 4))


BATCHED_LOSSES.add(CenternessHeadCore.loss_image)      # FCOS, ATSS


class FCOSHeadCore(CenternessHeadCore):
    """FCOS: the point rule of :class:`~detengine.assigners.FCOSAssigner`, focal loss over every
    point, IoU / GIoU loss of the positives' boxes weighted by their centerness target, BCE on the
    centerness logit; at test time class sigmoid x centerness sigmoid."""

    def __init__(self, *, norm_on_bbox: bool = False, **kw):
        super().__init__(**kw)
        self.norm_on_bbox = bool(norm_on_bbox)

    def _units(self, priors: Tensor) -> Tensor:
        """(A, 1) what pixel distances are divided by for the loss: the stride, or 1."""
        return priors[:, 2:3] if self.norm_on_bbox else priors.new_ones((priors.shape[0], 1))

    def targets(self, priors, gt_boxes, gt_labels, img_shape, gt_boxes_ignore=None, cls_scores=None,
                bbox_preds=None) -> Targets:
        """``get_targets``: labels, ``(l, t, r, b)`` targets (in stride units with
        ``norm_on_bbox``) and centerness targets of the positives. Every point takes part: FCOS
        uses neither valid flags nor ignored boxes."""
        points = priors.tensor
        assign_result = self.assigner.assign(points, gt_boxes, gt_labels, num_level_priors=priors.num_per_level)
        sampling = self.sampler.sample(assign_result, points, gt_boxes)
        a, pos = len(priors), sampling.pos_inds
        labels = points.new_full((a,), self.num_classes, dtype=torch.long)
        bbox_targets = points.new_zeros((a, 4))
        centerness = points.new_zeros(a)
        if pos.numel() > 0:
            labels[pos] = gt_labels[sampling.pos_assigned_gt_inds].long()
            encoded = self.bbox_coder.encode(points[pos], sampling.pos_gt_boxes)
            bbox_targets[pos] = encoded / self._units(points[pos])
            centerness[pos] = centerness_target(bbox_targets[pos])
        inside = torch.ones(a, dtype=torch.bool, device=points.device)
        return Targets(assign_result, sampling, labels, points.new_ones(a), bbox_targets,
                       centerness[:, None].expand(a, 4).clone(), inside, extras={"centerness_targets": centerness})

    def batch_targets(self, priors, gt_boxes, gt_labels, img_shapes, gt_boxes_ignore=None, cls_scores=None,
                      bbox_preds=None):
        """:meth:`targets` of every image in one pass (:meth:`AnchorHeadCore.batch_targets`)."""
        if not self._batchable(FCOSHeadCore, priors):
            return None
        points = priors[0].tensor
        gts = PaddedGTs.of(gt_boxes, gt_labels, points)
        inside = torch.ones((len(priors), len(priors[0])), dtype=torch.bool, device=points.device)
        gt_inds = self.assigner.assign_batch(points, inside, gts, num_level_priors=priors[0].num_per_level)
        joined, img, prior, gt = self._joined_targets(points, gt_inds, gts, inside)
        joined.label_weights = points.new_ones(joined.labels.shape[0])
        pos = joined.sampling_result.pos_inds
        centerness = points.new_zeros(joined.labels.shape[0])
        if pos.numel() > 0:
            pos_points = points[prior]
            encoded = self.bbox_coder.encode(pos_points, gts.boxes[img, gt]) / self._units(pos_points)
            joined.bbox_targets[pos] = encoded
            centerness[pos] = centerness_target(encoded)
        joined.bbox_weights = centerness[:, None].expand(-1, 4).clone()
        joined.extras["centerness_targets"] = centerness
        num_pos = torch.bincount(img, minlength=len(priors)).tolist()
        sums = centerness.view(len(priors), -1).sum(dim=1).tolist()
        return joined, [(float(n), float(c)) for n, c in zip(num_pos, sums)]

    def avg_factor_of(self, targets: Targets) -> tuple[float, float]:
        return float(targets.num_pos), float(targets.extras["centerness_targets"].sum())

    @classmethod
    def reduce_avg_factor(cls, values, across_ranks: bool = False) -> CenternessNormalisers:
        """``loss_by_feat``'s ``num_pos = max(reduce_mean(positives), 1)`` and
        ``centerness_denorm = max(reduce_mean(sum of centerness targets), 1e-6)``."""
        num_pos, centerness = cls._batch_totals(values, across_ranks)
        return CenternessNormalisers(max(num_pos, 1.0), max(centerness, 1e-6))

    def _bbox_divisor(self, norm: CenternessNormalisers) -> float:
        return norm.centerness + _EPS           # the box loss's avg_factor

    def _positive_losses(self, ctr_logits, bbox_preds, points, targets, pos) -> tuple[Tensor, Tensor]:
        """Per positive: the box loss (times its centerness target and loss weight) on boxes
        decoded from the point and the distances in loss units, and the weighted centerness BCE."""
        ctr_t = targets.extras["centerness_targets"][pos]
        units = self._units(points)
        pred_boxes = self.bbox_coder.decode(points, bbox_preds / units)
        target_boxes = self.bbox_coder.decode(points, targets.bbox_targets[pos])
        bbox_el = self.loss_bbox.elementwise(pred_boxes, target_boxes) * ctr_t * self.loss_bbox.loss_weight
        ctr_el = self.loss_centerness.elementwise(ctr_logits, ctr_t) * self.loss_centerness.loss_weight
        return bbox_el, ctr_el

    def init_predictions(self, priors):
        """A freshly initialised FCOSHead: class bias ``bias_init_with_prob(0.01)``, centerness and
        regression ~0 (weights ~N(0, 0.01)): distances exp(0) = 1 px, or 0 with ``norm_on_bbox``."""
        a = len(priors)
        cls = priors.tensor.new_zeros((a, self.cls_channels()))
        cls[:, :self.num_classes] = -4.59511985013459
        reg = priors.tensor.new_full((a, 4), 0.0 if self.norm_on_bbox else 1.0)
        return cls, reg
