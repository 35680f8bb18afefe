"""ATSS's head logic (Zhang et al. 2020, "Bridging the Gap Between Anchor-based and Anchor-free
Detection"), as mmdetection 3.3.0's ``ATSSHead.loss_by_feat`` / ``predict_by_feat``.

Outputs as FCOS's (:mod:`detengine.heads.fcos`): ``cls_scores`` (A, C + 1) with the centerness
logit last, ``bbox_preds`` (A, 4) DeltaXYWH deltas of the anchors.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import Targets
from .fcos import _EPS, CenternessHeadCore, CenternessNormalisers

__all__ = ["ATSSHeadCore", "anchor_centerness_target"]


def anchor_centerness_target(anchors: Tensor, gt_boxes: Tensor) -> Tensor:
    """(P,) FCOS's centerness of each anchor's centre inside its GT box (``ATSSHead.centerness_target``)."""
    if anchors.shape[0] == 0:
        return anchors.new_zeros(0)
    cx = (anchors[:, 2] + anchors[:, 0]) / 2
    cy = (anchors[:, 3] + anchors[:, 1]) / 2
    lr = torch.stack([cx - gt_boxes[:, 0], gt_boxes[:, 2] - cx], dim=1)
    tb = torch.stack([cy - gt_boxes[:, 1], gt_boxes[:, 3] - cy], dim=1)
    return torch.sqrt((lr.min(dim=-1).values / lr.max(dim=-1).values) * (tb.min(dim=-1).values / tb.max(dim=-1).values))


class ATSSHeadCore(CenternessHeadCore):
    """ATSSHead: ``AnchorHead`` targets (the ATSS assigner, a pseudo sampler, the GT boxes as box
    targets: ``reg_decoded_bbox``), the centerness of each positive anchor's centre in its GT;
    focal loss over the weighted anchors and the centerness BCE divided by
    ``reduce_mean(sum of max(num_pos, 1) per image)``; GIoU of the decoded positives weighted by
    their centerness, divided by ``max(reduce_mean(sum of centerness targets), 1)``."""

    def targets(self, priors, gt_boxes, gt_labels, img_shape, gt_boxes_ignore=None, cls_scores=None,
                bbox_preds=None) -> Targets:
        targets = super().targets(priors, gt_boxes, gt_labels, img_shape, gt_boxes_ignore)
        pos = targets.sampling_result.pos_inds
        centerness = priors.tensor.new_zeros(len(priors))
        if pos.numel() > 0:
            centerness[pos] = anchor_centerness_target(priors.tensor[pos], targets.bbox_targets[pos])
        targets.extras["centerness_targets"] = centerness
        return targets

    def batch_targets(self, priors, gt_boxes, gt_labels, img_shapes, gt_boxes_ignore=None, cls_scores=None,
                      bbox_preds=None):
        """:meth:`targets` of every image in one pass (the ATSS assigner's batched form)."""
        made = self._batch_anchor_targets(ATSSHeadCore, priors, gt_boxes, gt_labels, img_shapes, gt_boxes_ignore)
        if made is None:
            return None
        joined, num_pos = made
        pos = joined.sampling_result.pos_inds
        anchors = priors[0].tensor
        centerness = anchors.new_zeros(joined.labels.shape[0])
        if pos.numel() > 0:
            centerness[pos] = anchor_centerness_target(anchors[pos.remainder(len(anchors))], joined.bbox_targets[pos])
        joined.extras["centerness_targets"] = centerness
        sums = centerness.view(len(priors), -1).sum(dim=1).tolist()
        return joined, [(float(max(n, 1)), float(c)) for n, c in zip(num_pos, sums)]

    def avg_factor_of(self, targets: Targets) -> tuple[float, float]:
        return float(max(targets.num_pos, 1)), float(targets.extras["centerness_targets"].sum())

    @classmethod
    def reduce_avg_factor(cls, values, across_ranks: bool = False) -> CenternessNormalisers:
        """``avg_factor = reduce_mean(sum of max(num_pos, 1))`` and
        ``bbox_avg_factor = reduce_mean(sum of centerness targets).clamp(min=1)``."""
        num_pos, centerness = cls._batch_totals(values, across_ranks)
        return CenternessNormalisers(num_pos, max(centerness, 1.0))

    def _bbox_divisor(self, norm: CenternessNormalisers) -> float:
        return (1.0 + _EPS) * norm.centerness   # avg_factor=1.0 per level, then / bbox_avg_factor

    def _positive_losses(self, ctr_logits, bbox_preds, anchors, targets, pos) -> tuple[Tensor, Tensor]:
        """Per positive anchor: GIoU (or the configured box loss) of its decoded deltas against its
        GT box times its centerness target and loss weight; the weighted centerness BCE."""
        ctr_t = targets.extras["centerness_targets"][pos]
        pred_boxes = self.bbox_coder.decode(anchors, bbox_preds)
        bbox_el = self.loss_bbox.elementwise(pred_boxes, targets.bbox_targets[pos]) * ctr_t * self.loss_bbox.loss_weight
        ctr_el = self.loss_centerness.elementwise(ctr_logits, ctr_t) * self.loss_centerness.loss_weight
        return bbox_el, ctr_el

    def init_predictions(self, priors):
        """A freshly initialised ATSSHead: class bias ``bias_init_with_prob(0.01)``, centerness and
        deltas ~0 (weights ~N(0, 0.01))."""
        cls, reg = self.empty_predictions(priors)
        cls[:, :self.num_classes] = -4.59511985013459
        return cls, reg
