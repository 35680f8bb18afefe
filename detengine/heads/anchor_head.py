"""Anchor-based dense heads: RetinaNet's ``AnchorHead`` logic and SSD's (mmdetection 3.x)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..assigners import DynamicSoftLabelAssigner, SimOTAAssigner
from ..postprocess import postprocess_dense
from ..priors import Priors
from ..samplers import PseudoSampler, batch_hard_negative_mask, hard_negative_mask
from .base import (
    BATCHED_LOSSES,
    HeadCore,
    ImageLoss,
    PaddedGTs,
    Targets,
    _Positives,
    _PriorBoxes,
    anchor_inside_flags,
    batch_inside_flags,
    batch_positives,
    same_grid,
)

__all__ = ["AnchorHeadCore", "SSDHeadCore"]

_EPS = torch.finfo(torch.float32).eps


def assign_priors(assigner, priors: Priors, inside: Tensor, gt_boxes, gt_labels, gt_boxes_ignore,
                  cls_scores=None, pred_boxes=None):
    """Run any assigner on the inside priors, giving each the inputs it needs (the point-based
    ones, DSL and SimOTA, the anchors' centres with their level's stride)."""
    everything = bool(inside.all())
    tensor = priors.tensor if everything else priors.tensor[inside]
    if isinstance(assigner, (DynamicSoftLabelAssigner, SimOTAAssigner)) and not priors.is_point:
        # point form [cx, cy, stride_w, stride_h] of the anchors
        tensor = torch.cat([priors.centers[inside], priors.prior_strides[inside]], dim=1)
    if everything:
        num_level_priors = priors.num_per_level
    else:
        num_level_priors = [int(v.sum()) for v in priors.split(inside)]
    kwargs = dict(gt_boxes_ignore=gt_boxes_ignore, num_level_priors=num_level_priors)
    if cls_scores is not None:
        kwargs.update(pred_scores=cls_scores if everything else cls_scores[inside],
                      pred_boxes=pred_boxes if everything else pred_boxes[inside])
    return assigner.assign(tensor, gt_boxes, gt_labels, **kwargs)


class AnchorHeadCore(HeadCore):
    """mmdetection ``AnchorHead`` (RetinaNet): assign, pseudo-sample, encode, sigmoid focal +
    regression loss normalised by ``sum over images of max(num_pos, 1)``."""

    def __init__(self, *, num_classes, prior_generator, featmap_rule, bbox_coder, assigner, loss_cls,
                 loss_bbox, score_layout="sigmoid", sampler=None, allowed_border=-1, pos_weight=-1,
                 reg_decoded_bbox=False, test_cfg=None, train_cfg=None):
        self.num_classes = int(num_classes)
        self.prior_generator = prior_generator
        self.featmap_rule = featmap_rule
        self.bbox_coder = bbox_coder
        self.assigner = assigner
        self.sampler = sampler or PseudoSampler()
        self.loss_cls = loss_cls
        self.loss_bbox = loss_bbox
        self.score_layout = score_layout
        self.allowed_border = allowed_border
        self.pos_weight = pos_weight
        self.reg_decoded_bbox = reg_decoded_bbox
        self.test_cfg = dict(test_cfg or {})
        self.train_cfg = dict(train_cfg or {})

    def featmap_sizes(self, input_shape):
        return self.featmap_rule(input_shape)

    def needs_predictions(self) -> bool:
        """Prediction-weighted assigners (DSL, task-aligned, SimOTA) put in the place of the
        config's: the model's scores and decoded boxes go to the assigner, as in the heads that
        ship with them (RTMDet, TOOD, YOLOX)."""
        return bool(getattr(self.assigner, "needs_predictions", False)) or \
            isinstance(self.assigner, DynamicSoftLabelAssigner)

    def assigner_scores(self, cls_scores: Tensor) -> Tensor:
        """What the assigner weighs: DSL takes logits (it applies the sigmoid itself, as
        RTMDetHead gives it); task-aligned and SimOTA take probabilities (TOODHead's sigmoid
        scores; YOLOX's) - the sigmoid, or the softmax without the background column."""
        if isinstance(self.assigner, DynamicSoftLabelAssigner):
            return cls_scores
        if self.score_layout == "sigmoid":
            return cls_scores.sigmoid()
        probs = cls_scores.softmax(-1)
        return probs[:, 1:] if self.score_layout == "softmax_bg_first" else probs[:, :self.num_classes]

    def decode(self, priors: Tensor, bbox_preds: Tensor, max_shape=None) -> Tensor:
        return self.bbox_coder.decode(priors, bbox_preds, max_shape=max_shape)

    def targets(self, priors, gt_boxes, gt_labels, img_shape, gt_boxes_ignore=None, cls_scores=None,
                bbox_preds=None) -> Targets:
        """mmdetection ``_get_targets_single`` with ``unmap_outputs=True``."""
        inside = anchor_inside_flags(priors.tensor, priors.valid, img_shape, self.allowed_border)
        pred_boxes = None
        if self.needs_predictions() and cls_scores is not None and bbox_preds is not None:
            pred_boxes = self.decode(priors.tensor, bbox_preds).detach()
            cls_scores = self.assigner_scores(cls_scores.detach())
        else:
            cls_scores = None
        assign_result = assign_priors(self.assigner, priors, inside, gt_boxes, gt_labels, gt_boxes_ignore,
                                      cls_scores, pred_boxes)
        if not bool(inside.all()):
            assign_result = assign_result.unmap(inside)  # outside priors: ignored (-1)
        sampling = self.sampler.sample(assign_result, priors.tensor, gt_boxes)
        a = len(priors)
        labels = priors.tensor.new_full((a,), self.num_classes, dtype=torch.long)
        label_weights = priors.tensor.new_zeros(a)
        bbox_targets = priors.tensor.new_zeros((a, 4))
        bbox_weights = priors.tensor.new_zeros((a, 4))
        pos, neg = sampling.pos_inds, sampling.neg_inds
        if pos.numel() > 0:
            if self.reg_decoded_bbox:
                bbox_targets[pos] = sampling.pos_gt_boxes
            else:
                bbox_targets[pos] = self.bbox_coder.encode(sampling.pos_priors, sampling.pos_gt_boxes)
            bbox_weights[pos] = 1.0
            labels[pos] = gt_labels[sampling.pos_assigned_gt_inds].long()
            label_weights[pos] = 1.0 if self.pos_weight <= 0 else self.pos_weight
        if neg.numel() > 0:
            label_weights[neg] = 1.0
        return Targets(assign_result, sampling, labels, label_weights, bbox_targets, bbox_weights, inside)

    def batch_targets(self, priors, gt_boxes, gt_labels, img_shapes, gt_boxes_ignore=None, cls_scores=None,
                      bbox_preds=None):
        """:meth:`targets` of every image in one pass, where the assigner has a batched form
        (``assign_batch``: MaxIoU, ATSS) and takes no predictions, the sampler is the pseudo sampler and
        the head makes its targets as this class does."""
        made = self._batch_anchor_targets(AnchorHeadCore, priors, gt_boxes, gt_labels, img_shapes, gt_boxes_ignore)
        if made is None:
            return None
        joined, num_pos = made
        return joined, [float(max(n, 1)) for n in num_pos]

    def _batch_anchor_targets(self, owner, priors, gt_boxes, gt_labels, img_shapes, gt_boxes_ignore):
        """:meth:`targets` (this class's) of the batch joined, and each image's number of positives;
        None where ``owner``'s batched form does not make this head's targets or the assigner has none
        for this batch."""
        if not self._batchable(owner, priors):
            return None
        boxes = priors[0].tensor
        inside = batch_inside_flags(priors, img_shapes, self.allowed_border)
        gts = PaddedGTs.of(gt_boxes, gt_labels, boxes)
        gt_inds = self.assigner.assign_batch(boxes, inside, gts, gt_boxes_ignore=gt_boxes_ignore,
                                             num_level_priors=priors[0].num_per_level)
        if gt_inds is None:
            return None
        joined, img, prior, gt = self._joined_targets(boxes, gt_inds, gts, inside)
        pos = joined.sampling_result.pos_inds
        if pos.numel() > 0:
            pos_gt_boxes = gts.boxes[img, gt]
            joined.bbox_targets[pos] = pos_gt_boxes if self.reg_decoded_bbox else \
                self.bbox_coder.encode(boxes[prior], pos_gt_boxes)
        return joined, torch.bincount(img, minlength=len(priors)).tolist()

    def _batchable(self, owner, priors) -> bool:
        """Whether :meth:`batch_targets` as ``owner`` writes it makes this head's targets."""
        return (type(self).targets is owner.targets and callable(getattr(self.assigner, "assign_batch", None))
                and type(self.sampler) is PseudoSampler and not self.needs_predictions() and len(priors) > 0
                and same_grid(priors))

    def _joined_targets(self, boxes, gt_inds, gts, inside):
        """The batch's :class:`Targets` from its (B, A) ``gt_inds``, as :meth:`targets` fills them (pseudo
        sampler: every positive and negative), box targets left 0 for the head to fill; and the
        positives' image, prior and 0-based GT."""
        b, a = gt_inds.shape
        pos, img, prior, gt = batch_positives(gt_inds)
        labels = torch.full((b * a,), self.num_classes, dtype=torch.long, device=boxes.device)
        labels[pos] = gts.labels[img, gt]
        label_weights = (gt_inds.reshape(-1) == 0).to(boxes.dtype)
        label_weights[pos] = 1.0 if self.pos_weight <= 0 else self.pos_weight
        bbox_weights = boxes.new_zeros((b * a, 4))
        bbox_weights[pos] = 1.0
        joined = Targets(None, _Positives(pos), labels, label_weights, boxes.new_zeros((b * a, 4)), bbox_weights,
                         inside.reshape(-1))
        return joined, img, prior, gt

    def avg_factor_of(self, targets: Targets) -> float:
        """mmdetection ``SamplingResult.avg_factor``: ``max(num_pos, 1)`` per image."""
        return float(max(targets.num_pos, 1))

    def loss_image(self, cls_scores, bbox_preds, priors, targets, avg_factor, breakdown=True) -> ImageLoss:
        """Focal (or any class-index loss) over weighted priors + regression on positives."""
        cls_raw = self.loss_cls.per_prior(cls_scores, targets.labels)  # (A,), summed over classes
        # reduced from the per-prior sums: mmdetection weights every (A, C) entry, same total
        cls_weighted = cls_raw * targets.label_weights * self.loss_cls.loss_weight
        loss_cls = cls_weighted.sum() / (avg_factor + _EPS)
        pred = self.decode(priors.tensor, bbox_preds) if self.reg_decoded_bbox else bbox_preds
        bbox_el = self.loss_bbox.elementwise(pred, targets.bbox_targets)  # (A, 4)
        cls_per_prior = bbox_per_prior = None
        if breakdown:
            cls_per_prior = cls_weighted / (avg_factor + _EPS)
            bbox_per_prior = (bbox_el * targets.bbox_weights).sum(dim=1) * self.loss_bbox.loss_weight / (avg_factor + _EPS)
        terms = {"loss_cls": loss_cls, "loss_bbox": self.loss_bbox.reduce(bbox_el, targets.bbox_weights, avg_factor)}
        return ImageLoss(cls_per_prior, bbox_per_prior, cls_raw.detach(), terms, float(avg_factor))

    def predict(self, cls_scores, bbox_preds, priors, img_shape, record: bool = True, **overrides):
        """Detections with the suppression record (``record=False``: without who suppressed whom,
        for evaluation and export); ``overrides`` replace test_cfg values."""
        cfg = self.test_config(**overrides)
        return postprocess_dense(cls_scores, bbox_preds, priors.tensor, priors.num_per_level, self.decode,
                                 score_layout=self.score_layout, img_shape=img_shape, record=record, **cfg)

    def test_config(self, **overrides) -> dict:
        """Flat post-processing parameters from ``test_cfg`` (mmdetection names) and overrides."""
        t = self.test_cfg
        cfg = dict(score_thr=t.get("score_thr", 0.05), nms_pre=t.get("nms_pre", 1000),
                   iou_threshold=t.get("nms", {}).get("iou_threshold", 0.5),
                   max_per_img=t.get("max_per_img", 100), min_bbox_size=t.get("min_bbox_size", 0))
        unknown = set(overrides) - set(cfg)
        if unknown:
            raise ValueError(f"unknown post-processing parameters {sorted(unknown)}; known: {sorted(cfg)}")
        cfg.update(overrides)
        return cfg

    def init_predictions(self, priors):
        """Zero regression and the prior-probability 0.01 bias of RetinaNet's cls conv init."""
        cls, reg = self.empty_predictions(priors)
        if self.score_layout == "sigmoid":
            cls.fill_(-4.59511985013459)  # bias_init_with_prob(0.01) = -log((1 - 0.01) / 0.01)
        return cls, reg


BATCHED_LOSSES.add(AnchorHeadCore.loss_image)      # RetinaNet's (SSD's mining is per image: its own batch_loss_terms)


class SSDHeadCore(AnchorHeadCore):
    """mmdetection ``SSDHead``: softmax with background last, all positives plus the
    ``neg_pos_ratio * num_pos`` negatives with the largest CE (SSD paper sec. 2.2), smooth L1."""

    def __init__(self, *, neg_pos_ratio=3, smoothl1_beta=1.0, mining="mmdet", **kw):
        kw.setdefault("score_layout", "softmax")
        super().__init__(**kw)
        self.neg_pos_ratio = int(neg_pos_ratio)
        self.smoothl1_beta = float(smoothl1_beta)
        self.mining = mining

    def loss_image(self, cls_scores, bbox_preds, priors, targets, avg_factor, breakdown=True) -> ImageLoss:
        """``loss_by_feat_single``: (pos CE + top-k negative CE) / avg_factor; smooth L1 on
        positives / (avg_factor + eps)."""
        labels = targets.labels
        cls_raw = F.cross_entropy(cls_scores, labels, reduction="none")
        loss_cls_all = cls_raw * targets.label_weights
        pos_mask = (labels >= 0) & (labels < self.num_classes)
        neg_pool = labels == self.num_classes  # includes ignored priors (weight 0), as the reference
        hard = hard_negative_mask(loss_cls_all, pos_mask, neg_pool, self.neg_pos_ratio, self.mining)
        counted = pos_mask | hard
        cls_per_prior = torch.where(counted, loss_cls_all, torch.zeros_like(loss_cls_all)) / avg_factor
        loss_cls = (loss_cls_all[pos_mask].sum() + loss_cls_all[hard].sum()) / avg_factor
        pred = self.decode(priors.tensor, bbox_preds) if self.reg_decoded_bbox else bbox_preds
        bbox_el = self.loss_bbox.elementwise(pred, targets.bbox_targets)
        bbox_per_prior = (bbox_el * targets.bbox_weights).sum(dim=1) * self.loss_bbox.loss_weight / (avg_factor + _EPS)
        loss_bbox = self.loss_bbox.reduce(bbox_el, targets.bbox_weights, avg_factor)
        terms = {"loss_cls": loss_cls * self.loss_cls.loss_weight, "loss_bbox": loss_bbox}
        return ImageLoss(cls_per_prior * self.loss_cls.loss_weight, bbox_per_prior, cls_raw, terms, float(avg_factor),
                         hard_negative_mask=hard)

    def batch_loss_terms(self, cls_scores, bbox_preds, priors, targets, avg_factor):
        """:meth:`loss_image` of a batch's images in one call, each image's hard negatives its own
        (:func:`~detengine.samplers.batch_hard_negative_mask`): the images' summed terms, float order aside."""
        if type(self).loss_image is not SSDHeadCore.loss_image:
            return None
        n, a = int(cls_scores.shape[0]), int(cls_scores.shape[1])
        if isinstance(targets, list):
            targets = self.join_targets(targets)
        labels = targets.labels
        loss_cls_all = F.cross_entropy(cls_scores.reshape(n * a, -1), labels, reduction="none") * targets.label_weights
        pos_mask = (labels >= 0) & (labels < self.num_classes)
        hard = batch_hard_negative_mask(loss_cls_all.view(n, a), pos_mask.view(n, a),
                                        (labels == self.num_classes).view(n, a), self.neg_pos_ratio, self.mining)
        loss_cls = torch.where(pos_mask | hard.view(-1), loss_cls_all, 0).sum() / avg_factor
        bbox_preds = bbox_preds.reshape(n * a, -1)
        pred = self.decode(_PriorBoxes(priors).tensor, bbox_preds) if self.reg_decoded_bbox else bbox_preds
        loss_bbox = self.loss_bbox.reduce(self.loss_bbox.elementwise(pred, targets.bbox_targets), targets.bbox_weights,
                                          avg_factor)
        return {"loss_cls": loss_cls * self.loss_cls.loss_weight, "loss_bbox": loss_bbox}

    def init_predictions(self, priors):
        """Zero logits (uniform softmax) and zero deltas: an untrained SSD head's output."""
        return self.empty_predictions(priors)
