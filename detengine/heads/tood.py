"""TOOD's head logic (Feng et al. 2021, "TOOD: Task-aligned One-stage Object Detection"), as
mmdetection 3.3.0's ``TOODHead.get_targets`` / ``loss_by_feat`` / ``_predict_by_feat_single``.

Layout of the head outputs, per image, in anchor order (level, row, column; one anchor per cell):

- ``cls_scores`` (Tensor[A, C]): class PROBABILITIES (the T-head's ``sqrt(sigmoid(logit) x
  sigmoid(prob))``), not logits: the assigner, the losses and NMS take them as they are;
- ``bbox_preds`` (Tensor[A, 4]): predicted xyxy boxes in input pixels (the head's stride-unit
  boxes times the stride, as mmdetection flattens them for the targets and at test time).

Training has two stages (``train_cfg.initial_epoch``): before it, ATSS targets (the
``initial_assigner``), focal loss on the probabilities, GIoU weighted by the anchor centerness;
from it on, task-aligned targets (:class:`~detengine.assigners.TaskAlignedAssigner`), QFL against
the alignment metric normalised per GT, GIoU weighted by that metric. The stage follows
:meth:`TOODHeadCore.set_epoch` (mmdetection reads the epoch from its message hub); an epoch never
set means the task-aligned stage, the one the inspection trace shows.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..assigners import ATSSAssigner, TaskAlignedAssigner
from ..postprocess import Stage, _filter_topk, _nms_stages
from ..samplers import PseudoSampler
from .anchor_head import AnchorHeadCore, assign_priors
from .atss import anchor_centerness_target
from .base import BATCHED_LOSSES, ImageLoss, PaddedGTs, Targets, anchor_inside_flags, batch_inside_flags, same_grid

__all__ = ["TOODHeadCore", "TOODNormalisers", "normalised_alignment_metrics"]

_EPS = torch.finfo(torch.float32).eps


def normalised_alignment_metrics(metrics: Tensor, ious: Tensor, pos_gt: Tensor) -> Tensor:
    """(P,) TOOD's soft targets (eq. 9): per GT, its positives' metrics divided by their max
    (+ 1e-7) times the max IoU of those positives. ``metrics``, ``ious``, ``pos_gt`` (P,)."""
    if pos_gt.numel() == 0:
        return metrics.new_zeros(metrics.shape)
    # each GT's maxima at once (mmdetection loops over the GTs: launches per GT on a GPU); the
    # same elementwise operations as its loop, so the same bits
    size = int(pos_gt.max()) + 1
    max_metric = metrics.new_zeros(size).scatter_reduce(0, pos_gt, metrics, "amax", include_self=False)
    max_iou = ious.new_zeros(size).scatter_reduce(0, pos_gt, ious, "amax", include_self=False)
    return metrics / (max_metric[pos_gt] + 10e-8) * max_iou[pos_gt]


@dataclass(frozen=True)
class TOODNormalisers:
    """``cls``: the batch sum of the class targets' weights (normalised metrics; 1 per positive
    in the initial epochs), ``bbox``: the batch sum of the box weights; both averaged over ranks
    and clamped to >= 1."""

    cls: float
    bbox: float

    def __float__(self) -> float:
        return float(self.cls)


class TOODHeadCore(AnchorHeadCore):
    """TOODHead: one anchor per cell; task-aligned (or, before ``initial_epoch``, ATSS) targets
    on the head's own probabilities and boxes; QFL (focal) / the metric sum, GIoU in stride units
    weighted by the metric (centerness) / the weight sum; test time: the probabilities as scores,
    the predicted boxes as they are (no clipping), mmdetection's NMS."""

    predicts_boxes = True       # its regression output is xyxy boxes in input pixels, not deltas

    def __init__(self, *, initial_assigner, initial_loss_cls, initial_epoch: int = 4, alpha=1, beta=6, **kw):
        kw.setdefault("score_layout", "probability")
        kw["reg_decoded_bbox"] = True
        super().__init__(**kw)
        self.initial_assigner, self.initial_loss_cls = initial_assigner, initial_loss_cls
        self.initial_epoch, self.alpha, self.beta = int(initial_epoch), alpha, beta
        self.epoch: int | None = None

    def set_epoch(self, epoch: int | None) -> None:
        """The training epoch (0-based, mmdetection's ``message_hub`` 'epoch'); None: task-aligned."""
        self.epoch = None if epoch is None else int(epoch)

    @property
    def initial_stage(self) -> bool:
        return self.epoch is not None and self.epoch < self.initial_epoch

    def needs_predictions(self) -> bool:
        return not self.initial_stage

    @property
    def active_assigner(self):
        """The assigner of the current stage (what the trace names)."""
        return self.initial_assigner if self.initial_stage else self.assigner

    def decode(self, priors: Tensor, bbox_preds: Tensor, max_shape=None) -> Tensor:
        """The predictions are boxes already (TOOD does not clip them at test time)."""
        return bbox_preds

    def targets(self, priors, gt_boxes, gt_labels, img_shape, gt_boxes_ignore=None, cls_scores=None,
                bbox_preds=None) -> Targets:
        """``get_targets`` of the current stage; ``extras["alignment_metrics"]`` (A,) the class
        targets' soft weights (the normalised metrics; 1 at positives in the initial epochs) and
        ``extras["box_weights"]`` (A,) the box loss's (the same; the anchor centerness initially)."""
        if self.initial_stage:
            return self._initial_targets(priors, gt_boxes, gt_labels, img_shape, gt_boxes_ignore)
        if cls_scores is None or bbox_preds is None:
            cls_scores, bbox_preds = self.init_predictions(priors)
        inside = anchor_inside_flags(priors.tensor, priors.valid, img_shape, self.allowed_border)
        assign_result = assign_priors(self.assigner, priors, inside, gt_boxes, gt_labels, gt_boxes_ignore,
                                      cls_scores.detach(), bbox_preds.detach())
        if not bool(inside.all()):
            assign_result = assign_result.unmap(inside)
        sampling = self.sampler.sample(assign_result, priors.tensor, gt_boxes)
        targets = self._fill(priors, gt_labels, assign_result, sampling, inside)
        pos = sampling.pos_inds
        if pos.numel() > 0:
            targets.extras["alignment_metrics"][pos] = normalised_alignment_metrics(
                assign_result.extras["assign_metrics"][pos], assign_result.max_overlaps[pos],
                sampling.pos_assigned_gt_inds)
        targets.extras["box_weights"] = targets.extras["alignment_metrics"].clone()
        return targets

    def batch_targets(self, priors, gt_boxes, gt_labels, img_shapes, gt_boxes_ignore=None, cls_scores=None,
                      bbox_preds=None):
        """:meth:`targets` of every image in one pass, in either stage (the ATSS and task-aligned
        assigners' batched forms)."""
        assigner = self.active_assigner
        if not (type(self).targets is TOODHeadCore.targets
                and type(assigner) is (ATSSAssigner if self.initial_stage else TaskAlignedAssigner)
                and type(self.sampler) is PseudoSampler and len(priors) > 0 and same_grid(priors)
                and (self.initial_stage or (cls_scores is not None and bbox_preds is not None))):
            return None
        anchors = priors[0].tensor
        inside = batch_inside_flags(priors, img_shapes, self.allowed_border)
        gts = PaddedGTs.of(gt_boxes, gt_labels, anchors)
        if self.initial_stage:
            gt_inds = assigner.assign_batch(anchors, inside, gts, gt_boxes_ignore=gt_boxes_ignore,
                                            num_level_priors=priors[0].num_per_level)
            if gt_inds is None:
                return None
        else:
            gt_inds, ious, metrics = assigner.assign_batch(anchors, inside, gts, pred_scores=cls_scores.detach(),
                                                           pred_boxes=bbox_preds.detach())
        joined, img, prior, gt = self._joined_targets(anchors, gt_inds, gts, inside)
        pos = joined.sampling_result.pos_inds
        alignment = anchors.new_zeros(joined.labels.shape[0])
        box_weights = anchors.new_zeros(joined.labels.shape[0])
        if pos.numel() > 0:
            joined.bbox_targets[pos] = gts.boxes[img, gt]
            if self.initial_stage:
                alignment[pos] = 1.0
                box_weights[pos] = anchor_centerness_target(anchors[prior], joined.bbox_targets[pos])
            else:
                alignment[pos] = normalised_alignment_metrics(metrics.reshape(-1)[pos], ious.reshape(-1)[pos],
                                                              img * gts.mask.shape[1] + gt).to(alignment.dtype)
                box_weights = alignment.clone()
        joined.extras.update(alignment_metrics=alignment, box_weights=box_weights)
        n = len(priors)
        sums = torch.stack([alignment.view(n, -1).sum(dim=1), box_weights.view(n, -1).sum(dim=1)], dim=1).tolist()
        return joined, [(float(c), float(w)) for c, w in sums]

    def _initial_targets(self, priors, gt_boxes, gt_labels, img_shape, gt_boxes_ignore) -> Targets:
        inside = anchor_inside_flags(priors.tensor, priors.valid, img_shape, self.allowed_border)
        assign_result = assign_priors(self.initial_assigner, priors, inside, gt_boxes, gt_labels, gt_boxes_ignore)
        if not bool(inside.all()):
            assign_result = assign_result.unmap(inside)
        sampling = self.sampler.sample(assign_result, priors.tensor, gt_boxes)
        targets = self._fill(priors, gt_labels, assign_result, sampling, inside)
        pos = sampling.pos_inds
        targets.extras["alignment_metrics"][pos] = 1.0
        targets.extras["box_weights"] = priors.tensor.new_zeros(len(priors))
        if pos.numel() > 0:
            targets.extras["box_weights"][pos] = anchor_centerness_target(priors.tensor[pos], targets.bbox_targets[pos])
        return targets

    def _fill(self, priors, gt_labels, assign_result, sampling, inside) -> Targets:
        """Labels, label weights and GT boxes at the positives (``_get_targets_single``)."""
        a = len(priors)
        labels = priors.tensor.new_full((a,), self.num_classes, dtype=torch.long)
        label_weights = priors.tensor.new_zeros(a)
        bbox_targets = priors.tensor.new_zeros((a, 4))
        bbox_weights = priors.tensor.new_zeros((a, 4))
        pos, neg = sampling.pos_inds, sampling.neg_inds
        if pos.numel() > 0:
            bbox_targets[pos] = sampling.pos_gt_boxes
            bbox_weights[pos] = 1.0
            labels[pos] = gt_labels[sampling.pos_assigned_gt_inds].long()
            label_weights[pos] = 1.0 if self.pos_weight <= 0 else self.pos_weight
        if neg.numel() > 0:
            label_weights[neg] = 1.0
        return Targets(assign_result, sampling, labels, label_weights, bbox_targets, bbox_weights, inside,
                       extras={"alignment_metrics": priors.tensor.new_zeros(a)})

    def avg_factor_of(self, targets: Targets) -> tuple[float, float]:
        return float(targets.extras["alignment_metrics"].sum()), float(targets.extras["box_weights"].sum())

    @classmethod
    def reduce_avg_factor(cls, values, across_ranks: bool = False) -> TOODNormalisers:
        """``reduce_mean(sum of class weights).clamp(min=1)``, ``reduce_mean(sum of box weights).clamp(min=1)``."""
        from ..train.distributed import is_distributed, reduce_mean
        pairs = [v if isinstance(v, (tuple, list)) else (v, v) for v in values]
        total = torch.tensor([sum(p[0] for p in pairs), sum(p[1] for p in pairs)], dtype=torch.float32)
        if across_ranks and is_distributed():
            total = reduce_mean(total)
        return TOODNormalisers(max(float(total[0]), 1.0), max(float(total[1]), 1.0))

    def loss_image(self, cls_scores, bbox_preds, priors, targets, avg_factor, breakdown=True) -> ImageLoss:
        norm = avg_factor if isinstance(avg_factor, TOODNormalisers) else TOODNormalisers(float(avg_factor), 1.0)
        if self.initial_stage:
            cls_raw = self.initial_loss_cls.per_prior(cls_scores, targets.labels)
            weight = self.initial_loss_cls.loss_weight
        else:
            cls_raw = self.loss_cls.elementwise(cls_scores, (targets.labels, targets.extras["alignment_metrics"]))
            weight = self.loss_cls.loss_weight
        cls_per_prior = cls_raw * targets.label_weights * weight / (1.0 + _EPS) / norm.cls
        pos = targets.sampling_result.pos_inds
        bbox_per_prior = bbox_preds.new_zeros(len(priors))
        if pos.numel() > 0:
            strides = priors.prior_strides[pos][:, :1]
            giou = self.loss_bbox.elementwise(bbox_preds[pos] / strides, targets.bbox_targets[pos] / strides)
            el = giou * targets.extras["box_weights"][pos] * self.loss_bbox.loss_weight / (1.0 + _EPS) / norm.bbox
            bbox_per_prior = bbox_per_prior.index_put((pos,), el)
            loss_bbox = bbox_per_prior.sum()
        else:
            loss_bbox = bbox_preds.sum() * 0
        terms = {"loss_cls": cls_per_prior.sum(), "loss_bbox": loss_bbox}
        return ImageLoss(cls_per_prior, bbox_per_prior, cls_raw.detach(), terms, float(norm.cls),
                         decoded_pred_boxes=bbox_preds.detach())

    def predict(self, cls_scores, bbox_preds, priors, img_shape, record: bool = True, **overrides):
        """Per level the top ``nms_pre`` (anchor, class) pairs with probability > ``score_thr``,
        their predicted boxes unclipped, then size filter, per-class NMS, ``max_per_img``."""
        cfg = self.test_config(**overrides)
        probs = cls_scores
        raw_stage = torch.full(probs.shape, Stage.BELOW_SCORE_THR, dtype=torch.uint8, device=probs.device)
        above = probs > cfg["score_thr"]
        raw_stage[above] = Stage.OUTSIDE_NMS_PRE
        sc, pr, lb, n_above, start = [], [], [], 0, 0
        for count in priors.num_per_level:
            s, p, c, n = _filter_topk(probs[start:start + count], above[start:start + count], cfg["nms_pre"])
            sc.append(s), pr.append(p + start), lb.append(c)
            n_above, start = n_above + n, start + count
        scores, prior_idx, labels = torch.cat(sc), torch.cat(pr), torch.cat(lb)
        counts = {"raw": int(probs.numel()), "score_thr": n_above, "nms_pre": int(scores.numel())}
        result = _nms_stages(bbox_preds[prior_idx], scores, labels, prior_idx, cfg["min_bbox_size"],
                             cfg["iou_threshold"], cfg["max_per_img"], class_agnostic=False, counts=counts,
                             record=record)
        raw_stage[result.cand_prior, result.cand_label] = result.cand_stage
        result.raw_stage = raw_stage
        result.params = dict(score_layout=self.score_layout, record=record, **cfg)
        return result

    def init_predictions(self, priors):
        """A freshly initialised TOODHead: probabilities 0.01 (both branches' bias
        ``bias_init_with_prob(0.01)``), boxes of the anchor centre +- one stride (exp(0) = 1)."""
        a = len(priors)
        centers, strides = priors.centers, priors.prior_strides
        boxes = torch.cat([centers - strides, centers + strides], dim=1)
        return priors.tensor.new_full((a, self.num_classes), 0.01), boxes

    def empty_predictions(self, priors):
        a = len(priors)
        return priors.tensor.new_zeros((a, self.num_classes)), priors.tensor.new_zeros((a, 4))


BATCHED_LOSSES.add(TOODHeadCore.loss_image)
