"""d2l TinySSD's head logic (d2l sec. 14.7: ``multibox_target``, ``calc_loss``, ``multibox_detection``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..postprocess import postprocess_d2l
from ..samplers import batch_hard_negative_mask, hard_negative_mask
from .anchor_head import AnchorHeadCore, assign_priors
from .base import ImageLoss, PaddedGTs, Targets

__all__ = ["TinySSDHeadCore"]


class TinySSDHeadCore(AnchorHeadCore):
    """Greedy assignment, d2l offsets, CE over every anchor (mean) + masked L1 (mean over A * 4).

    Scores are (A, C + 1) logits with background FIRST (d2l's layout). Targets use the engine's
    convention (``labels`` = C for background). Each image's loss is a mean; the batch loss is
    the mean over images (``reduce_avg_factor`` = number of images).
    """

    def __init__(self, *, neg_pos_ratio: int | None = None, **kw):
        kw.setdefault("score_layout", "softmax_bg_first")
        super().__init__(**kw)
        self.neg_pos_ratio = neg_pos_ratio  # None: d2l's means; k: SSD-style mining (an option)

    def targets(self, priors, gt_boxes, gt_labels, img_shape, gt_boxes_ignore=None, cls_scores=None,
                bbox_preds=None) -> Targets:
        inside = priors.valid
        assign_result = assign_priors(self.assigner, priors, inside, gt_boxes, gt_labels, None)
        if not bool(inside.all()):
            assign_result = assign_result.unmap(inside)
        sampling = self.sampler.sample(assign_result, priors.tensor, gt_boxes)
        a = len(priors)
        labels = priors.tensor.new_full((a,), self.num_classes, dtype=torch.long)
        bbox_targets = priors.tensor.new_zeros((a, 4))
        bbox_weights = priors.tensor.new_zeros((a, 4))
        pos = sampling.pos_inds
        if pos.numel() > 0:
            labels[pos] = gt_labels[sampling.pos_assigned_gt_inds].long()
            bbox_targets[pos] = self.bbox_coder.encode(sampling.pos_priors, sampling.pos_gt_boxes)
            bbox_weights[pos] = 1.0
        label_weights = inside.to(priors.tensor.dtype)
        return Targets(assign_result, sampling, labels, label_weights, bbox_targets, bbox_weights, inside)

    def batch_targets(self, priors, gt_boxes, gt_labels, img_shapes, gt_boxes_ignore=None, cls_scores=None,
                      bbox_preds=None):
        """:meth:`targets` of every image in one pass, where the assigner has a batched form (d2l's greedy
        matching: :meth:`~detengine.assigners.D2LGreedyAssigner.assign_batch`)."""
        if not self._batchable(TinySSDHeadCore, priors):
            return None
        boxes = priors[0].tensor
        inside = torch.stack([p.valid for p in priors])
        gts = PaddedGTs.of(gt_boxes, gt_labels, boxes)
        gt_inds = self.assigner.assign_batch(boxes, inside, gts, num_level_priors=priors[0].num_per_level)
        if gt_inds is None:
            return None
        joined, img, prior, gt = self._joined_targets(boxes, gt_inds, gts, inside)
        joined.label_weights = inside.reshape(-1).to(boxes.dtype)      # every inside prior, as targets()
        pos = joined.sampling_result.pos_inds
        if pos.numel() > 0:
            joined.bbox_targets[pos] = self.bbox_coder.encode(boxes[prior], gts.boxes[img, gt])
        return joined, [1.0] * len(priors)

    def avg_factor_of(self, targets) -> float:
        return 1.0

    @staticmethod
    def reduce_avg_factor(values, across_ranks: bool = False) -> float:
        return float(len(values))

    def d2l_class_targets(self, labels):
        """Engine labels (background = C) -> d2l's (background = 0, class k = k + 1)."""
        return torch.where(labels == self.num_classes, torch.zeros_like(labels), labels + 1)

    def loss_image(self, cls_scores, bbox_preds, priors, targets, avg_factor, breakdown=True) -> ImageLoss:
        if self.neg_pos_ratio:
            return self._mined_loss(cls_scores, bbox_preds, priors, targets, avg_factor)
        a = len(priors)
        cls_raw = F.cross_entropy(cls_scores, self.d2l_class_targets(targets.labels), reduction="none")
        mask = targets.bbox_weights
        bbox_el = torch.abs(bbox_preds * mask - targets.bbox_targets * mask)  # (A, 4)
        n = max(a, 1)  # d2l takes plain means; no prior at all gives 0, not NaN
        cls_per_prior = cls_raw * self.loss_cls.loss_weight / n / avg_factor
        bbox_per_prior = bbox_el.sum(dim=1) * self.loss_bbox.loss_weight / (4 * n) / avg_factor
        terms = {"loss_cls": cls_raw.sum() / n * self.loss_cls.loss_weight / avg_factor,
                 "loss_bbox": bbox_el.sum() / (4 * n) * self.loss_bbox.loss_weight / avg_factor}
        return ImageLoss(cls_per_prior, bbox_per_prior, cls_raw, terms, float(avg_factor))

    def batch_loss_terms(self, cls_scores, bbox_preds, priors, targets, avg_factor):
        """:meth:`loss_image` of a batch's images in one call (d2l's means over each image's A priors, or
        with ``neg_pos_ratio`` each image's own hard negatives and positives' count): the images' summed
        terms, float order aside."""
        if type(self).loss_image is not TinySSDHeadCore.loss_image:
            return None
        n, a = int(cls_scores.shape[0]), int(cls_scores.shape[1])
        if isinstance(targets, list):
            targets = self.join_targets(targets)
        labels = targets.labels
        cls_raw = F.cross_entropy(cls_scores.reshape(n * a, -1), self.d2l_class_targets(labels), reduction="none")
        bbox_preds = bbox_preds.reshape(n * a, -1)
        mask = targets.bbox_weights
        w_cls, w_bbox = self.loss_cls.loss_weight, self.loss_bbox.loss_weight
        if not self.neg_pos_ratio:
            m = max(a, 1)
            bbox_el = torch.abs(bbox_preds * mask - targets.bbox_targets * mask)
            return {"loss_cls": cls_raw.sum() / m * w_cls / avg_factor,
                    "loss_bbox": bbox_el.sum() / (4 * m) * w_bbox / avg_factor}
        pos = (labels < self.num_classes).view(n, a)
        hard = batch_hard_negative_mask(cls_raw.detach().view(n, a), pos, ~pos & targets.inside.view(n, a),
                                        self.neg_pos_ratio)
        norm = pos.sum(dim=1, keepdim=True).clamp(min=1).to(cls_raw.dtype)
        cls = torch.where(pos | hard, cls_raw.view(n, a), 0) * w_cls / norm
        bbox = (torch.abs(bbox_preds - targets.bbox_targets) * mask).sum(1).view(n, a) * w_bbox / norm
        return {"loss_cls": cls.sum() / avg_factor, "loss_bbox": bbox.sum() / avg_factor}

    def _mined_loss(self, cls_scores, bbox_preds, priors, targets, avg_factor) -> ImageLoss:
        """Option ``neg_pos_ratio=k``: SSD's normalisation instead of d2l's means: CE of the
        positives and the k * num_pos hardest negatives, L1 of the positives, both / num_pos."""
        cls_raw = F.cross_entropy(cls_scores, self.d2l_class_targets(targets.labels), reduction="none")
        pos = targets.labels < self.num_classes
        hard = hard_negative_mask(cls_raw.detach(), pos, ~pos & targets.inside, self.neg_pos_ratio)
        norm = float(max(int(pos.sum()), 1))
        cls_per_prior = torch.where(pos | hard, cls_raw, torch.zeros_like(cls_raw)) * self.loss_cls.loss_weight / norm
        mask = targets.bbox_weights
        bbox_per_prior = (torch.abs(bbox_preds - targets.bbox_targets) * mask).sum(1) * self.loss_bbox.loss_weight / norm
        terms = {"loss_cls": cls_per_prior.sum() / avg_factor, "loss_bbox": bbox_per_prior.sum() / avg_factor}
        return ImageLoss(cls_per_prior / avg_factor, bbox_per_prior / avg_factor, cls_raw.detach(), terms,
                         float(avg_factor), hard_negative_mask=hard)

    def predict(self, cls_scores, bbox_preds, priors, img_shape, record: bool = True, **overrides):
        t = dict(nms_threshold=self.test_cfg.get("nms", {}).get("iou_threshold", 0.5),
                 pos_threshold=self.test_cfg.get("score_thr", 0.009999999))
        if "iou_threshold" in overrides:
            t["nms_threshold"] = overrides.pop("iou_threshold")
        if "score_thr" in overrides:
            t["pos_threshold"] = overrides.pop("score_thr")
        if overrides:
            raise ValueError(f"unknown post-processing parameters for TinySSD: {sorted(overrides)}")
        return postprocess_d2l(cls_scores, bbox_preds, priors.tensor, self.decode, **t)

    def test_config(self, **overrides) -> dict:
        return dict(score_thr=self.test_cfg.get("score_thr", 0.009999999),
                    iou_threshold=self.test_cfg.get("nms", {}).get("iou_threshold", 0.5), **overrides)

    def init_predictions(self, priors):
        return self.empty_predictions(priors)
