"""RTMDet's head logic (mmdetection 3.x ``RTMDetHead.loss_by_feat`` / ``predict_by_feat``)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..assigners import DynamicSoftLabelAssigner
from ..postprocess import postprocess_dense
from ..samplers import PseudoSampler
from .anchor_head import AnchorHeadCore, assign_priors
from .base import BATCHED_LOSSES, ImageLoss, PaddedGTs, Targets, anchor_inside_flags, batch_inside_flags, same_grid

__all__ = ["RTMDetHeadCore"]

_EPS = torch.finfo(torch.float32).eps


class RTMDetHeadCore(AnchorHeadCore):
    """Point priors, dynamic soft-label assignment on the head's own predictions, QFL against the
    matched IoU, GIoU on decoded boxes weighted by that IoU; both normalised by the batch sum of
    matched IoUs (clamped to >= 1). ``bbox_preds`` are distances in pixels (already x stride).
    """

    def __init__(self, **kw):
        kw.setdefault("score_layout", "sigmoid")
        super().__init__(**kw)

    def needs_predictions(self) -> bool:
        return True

    def decode(self, priors: Tensor, bbox_preds: Tensor, max_shape=None) -> Tensor:
        return self.bbox_coder.decode(priors, bbox_preds, max_shape=max_shape)

    def targets(self, priors, gt_boxes, gt_labels, img_shape, gt_boxes_ignore=None, cls_scores=None,
                bbox_preds=None) -> Targets:
        """``_get_targets_single``: labels, decoded GT boxes and the soft ``assign_metrics``."""
        if cls_scores is None or bbox_preds is None:
            cls_scores, bbox_preds = self.init_predictions(priors)
        pred_boxes = self.decode(priors.tensor, bbox_preds).detach()
        inside = anchor_inside_flags(priors.tensor, priors.valid, img_shape, self.allowed_border)
        assign_result = assign_priors(self.assigner, priors, inside, gt_boxes, gt_labels, gt_boxes_ignore,
                                      cls_scores.detach(), pred_boxes)
        if not bool(inside.all()):
            assign_result = assign_result.unmap(inside)
        sampling = self.sampler.sample(assign_result, priors.tensor, gt_boxes)
        a = len(priors)
        labels = priors.tensor.new_full((a,), self.num_classes, dtype=torch.long)
        label_weights = priors.tensor.new_zeros(a)
        bbox_targets = priors.tensor.new_zeros((a, 4))
        metrics = priors.tensor.new_zeros(a)
        pos, neg = sampling.pos_inds, sampling.neg_inds
        if pos.numel() > 0:
            bbox_targets[pos] = sampling.pos_gt_boxes
            labels[pos] = gt_labels[sampling.pos_assigned_gt_inds].long()
            label_weights[pos] = 1.0 if self.pos_weight <= 0 else self.pos_weight
            metrics[pos] = assign_result.max_overlaps[pos].to(metrics.dtype)
        if neg.numel() > 0:
            label_weights[neg] = 1.0
        bbox_weights = metrics[:, None].expand(a, 4).clone()
        return Targets(assign_result, sampling, labels, label_weights, bbox_targets, bbox_weights, inside,
                       extras={"assign_metrics": metrics})

    def batch_targets(self, priors, gt_boxes, gt_labels, img_shapes, gt_boxes_ignore=None, cls_scores=None,
                      bbox_preds=None):
        """:meth:`targets` of every image in one pass (the dynamic soft-label assigner's batched form);
        None where a GT's k-th cheapest prior ties (``DynamicSoftLabelAssigner.assign_batch``)."""
        if not (type(self).targets is RTMDetHeadCore.targets and type(self.assigner) is DynamicSoftLabelAssigner
                and type(self.sampler) is PseudoSampler and cls_scores is not None and bbox_preds is not None
                and len(priors) > 0 and same_grid(priors) and priors[0].is_point):
            return None                                    # (anchor priors: assign_priors' centre form)
        points = priors[0].tensor
        n, a = len(priors), len(priors[0])
        pred_boxes = self.decode(points.repeat(n, 1), bbox_preds.detach().reshape(n * a, -1)).view(n, a, 4)
        inside = batch_inside_flags(priors, img_shapes, self.allowed_border)
        gts = PaddedGTs.of(gt_boxes, gt_labels, points)
        out = self.assigner.assign_batch(points, inside, gts, pred_scores=cls_scores.detach(), pred_boxes=pred_boxes)
        if out is None:
            return None
        gt_inds, matched_ious = out
        joined, img, prior, gt = self._joined_targets(points, gt_inds, gts, inside)
        pos = joined.sampling_result.pos_inds
        metrics = points.new_zeros(n * a)
        if pos.numel() > 0:
            joined.bbox_targets[pos] = gts.boxes[img, gt]
            metrics[pos] = matched_ious.reshape(-1)[pos].to(metrics.dtype)
        joined.bbox_weights = metrics[:, None].expand(-1, 4).clone()
        joined.extras["assign_metrics"] = metrics
        return joined, metrics.view(n, a).sum(dim=1).tolist()

    def avg_factor_of(self, targets: Targets) -> float:
        return float(targets.extras["assign_metrics"].sum())

    @staticmethod
    def reduce_avg_factor(values, across_ranks: bool = False) -> float:
        """Batch normaliser: ``clamp(sum of matched IoUs, min=1)``; with ``across_ranks`` (the
        trainer's step under torchrun) the sum is averaged over the ranks first (mmdetection's
        ``reduce_mean``, in float32 as there), so every rank divides by the same number."""
        from ..train.distributed import is_distributed, reduce_mean
        total = float(sum(values))
        if across_ranks and is_distributed():
            total = float(reduce_mean(torch.tensor(total, dtype=torch.float32)))
        return max(total, 1.0)

    def loss_image(self, cls_scores, bbox_preds, priors, targets, avg_factor, breakdown=True) -> ImageLoss:
        # each loss computed once, reduced twice: the per-prior breakdown and mmdetection's terms
        # (its calls ``loss_cls(...)``, ``loss_bbox(..., avg_factor=1.0)``: the same operations)
        metrics = targets.extras["assign_metrics"]
        cls_raw = self.loss_cls.elementwise(cls_scores, (targets.labels, metrics))  # (A,)
        cls_per_prior = cls_raw * targets.label_weights * self.loss_cls.loss_weight / (1.0 + _EPS) / avg_factor \
            if breakdown else None
        decoded = self.decode(priors.tensor, bbox_preds)
        pos = targets.sampling_result.pos_inds
        bbox_per_prior = decoded.new_zeros(len(priors)) if breakdown else None
        if pos.numel() > 0:
            pos_decoded, w = decoded[pos], metrics[pos]
            giou = self.loss_bbox.elementwise(pos_decoded, targets.bbox_targets[pos])
            if breakdown:
                el = self.loss_bbox.reduce(giou, w, reduction_override="none")
                bbox_per_prior[pos] = el / (1.0 + _EPS) / avg_factor
            loss_bbox = self.loss_bbox.reduce_elementwise(pos_decoded, giou, weight=w, avg_factor=1.0)
        else:
            loss_bbox = decoded.sum() * 0
        loss_cls = self.loss_cls.reduce(cls_raw, targets.label_weights, avg_factor=1.0)
        terms = {"loss_cls": loss_cls / avg_factor, "loss_bbox": loss_bbox / avg_factor}
        return ImageLoss(cls_per_prior, bbox_per_prior, cls_raw, terms, float(avg_factor),
                         decoded_pred_boxes=decoded.detach())

    def predict(self, cls_scores, bbox_preds, priors, img_shape, record: bool = True, **overrides):
        cfg = self.test_config(**overrides)
        return postprocess_dense(cls_scores, bbox_preds, priors.tensor, priors.num_per_level, self.decode,
                                 score_layout="sigmoid", img_shape=img_shape, record=record, **cfg)

    def init_predictions(self, priors):
        """A freshly initialised RTMDetSepBNHead: cls bias ``bias_init_with_prob(0.01)``, reg
        weights ~N(0, 0.01) so distances ~0 (``exp_on_reg``: ~1) times the stride."""
        cls, reg = self.empty_predictions(priors)
        cls.fill_(-4.59511985013459)
        if getattr(self, "exp_on_reg", False):
            reg = priors.tensor[:, 2:3].expand(-1, 4).clone()
        return cls, reg


BATCHED_LOSSES.add(RTMDetHeadCore.loss_image)
