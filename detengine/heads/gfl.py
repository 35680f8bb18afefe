"""GFL's head logic (Li et al. 2020, "Generalized Focal Loss"), as mmdetection 3.3.0's
``GFLHead.loss_by_feat`` / ``_predict_by_feat_single``.

Layout of the head outputs, per image, in anchor order (level, row, column; one anchor per cell):

- ``cls_scores`` (Tensor[A, C]): joint class-and-quality logits (sigmoid);
- ``bbox_preds`` (Tensor[A, 4 * (reg_max + 1)]): per side (left, top, right, bottom, side-major:
  channel ``side * (reg_max + 1) + bin``) the logits of a distribution over the distances
  ``0, 1, ..., reg_max`` in stride units; the distance is its expectation (``integral``).

Training works in stride units, as mmdetection: anchor centres and GT boxes divided by the stride.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..boxes import bbox_overlaps
from .anchor_head import AnchorHeadCore
from .base import BATCHED_LOSSES, ImageLoss, Targets

__all__ = ["GFLHeadCore", "GFLNormalisers", "GFLImageLoss", "anchor_centers"]

_EPS = torch.finfo(torch.float32).eps


def anchor_centers(anchors: Tensor) -> Tensor:
    """(N, 2) centres of (N, 4) xyxy anchors (``GFLHead.anchor_center``)."""
    return torch.stack([(anchors[..., 2] + anchors[..., 0]) / 2, (anchors[..., 3] + anchors[..., 1]) / 2], dim=-1)


@dataclass(frozen=True)
class GFLNormalisers:
    """``num_pos`` (the sum of ``max(num_pos, 1)`` per image, averaged over ranks) divides QFL;
    ``weight`` (the sum of the positives' max class sigmoid, averaged over ranks, clamped to
    >= 1) divides the GIoU and DFL terms."""

    num_pos: float
    weight: float

    def __float__(self) -> float:
        return float(self.num_pos)


@dataclass
class GFLImageLoss(ImageLoss):
    """:class:`ImageLoss` plus the DFL term of each anchor (0 off positives) and the QFL score
    target (the IoU of each positive's decoded prediction with its GT; 0 elsewhere)."""

    dfl_per_prior: Tensor | None = None
    quality_targets: Tensor | None = None

    def extra_per_prior(self) -> dict[str, Tensor]:
        return {} if self.dfl_per_prior is None else {"loss_dfl": self.dfl_per_prior}


class GFLHeadCore(AnchorHeadCore):
    """GFLHead: ATSS targets on one anchor per cell (the GT boxes as box targets); QFL over every
    weighted anchor against the IoU of the decoded prediction; GIoU and DFL on the positives,
    weighted by their max class sigmoid (detached). Test time: class sigmoid, boxes from the
    expected distances times the stride, then mmdetection's NMS."""

    def __init__(self, *, loss_dfl, reg_max: int = 16, **kw):
        kw.setdefault("score_layout", "sigmoid")
        kw["reg_decoded_bbox"] = True
        super().__init__(**kw)
        self.loss_dfl = loss_dfl
        self.reg_max = int(reg_max)
        self.project = torch.linspace(0, self.reg_max, self.reg_max + 1)   # the Integral layer's buffer
        self._level_sizes = torch.tensor([float((b[0, 2] - b[0, 0]) * (b[0, 3] - b[0, 1])) ** 0.5
                                          for b in self.prior_generator.base_anchors])
        self._level_strides = torch.tensor([float(s[0]) for s in self.prior_generator.strides])

    def reg_channels(self) -> int:
        return 4 * (self.reg_max + 1)

    def integral(self, bbox_preds: Tensor) -> Tensor:
        """(N, 4) expected distances (bins) of (N, 4 * (reg_max + 1)) distribution logits."""
        x = F.softmax(bbox_preds.reshape(-1, self.reg_max + 1), dim=1)
        return F.linear(x, self.project.type_as(x)).reshape(-1, 4)

    def anchor_strides(self, anchors: Tensor) -> Tensor:
        """(N,) the stride of each anchor's level, from its size (one anchor size per level)."""
        size = ((anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])).clamp(min=0).sqrt()
        level = (size[:, None] - self._level_sizes.to(size)).abs().argmin(dim=1)
        return self._level_strides.to(anchors)[level]

    def decode(self, priors: Tensor, bbox_preds: Tensor, max_shape=None) -> Tensor:
        """(N, 4) xyxy pixel boxes: anchor centre -+ expected distance x stride (clipped to
        ``max_shape``)."""
        distances = self.integral(bbox_preds) * self.anchor_strides(priors)[:, None]
        return self.bbox_coder.decode(anchor_centers(priors), distances, max_shape=max_shape)

    def targets(self, priors, gt_boxes, gt_labels, img_shape, gt_boxes_ignore=None, cls_scores=None,
                bbox_preds=None) -> Targets:
        """``get_targets`` (ATSS, GT boxes at positives) and, given the head's class logits, each
        positive's weight: its max class sigmoid (``extras["weight_targets"]``, 0 elsewhere)."""
        targets = super().targets(priors, gt_boxes, gt_labels, img_shape, gt_boxes_ignore)
        weights = priors.tensor.new_zeros(len(priors))
        pos = targets.sampling_result.pos_inds
        if cls_scores is not None and pos.numel() > 0:
            weights[pos] = cls_scores.detach().sigmoid().max(dim=1).values[pos].to(weights.dtype)
        targets.extras["weight_targets"] = weights
        return targets

    def batch_targets(self, priors, gt_boxes, gt_labels, img_shapes, gt_boxes_ignore=None, cls_scores=None,
                      bbox_preds=None):
        """:meth:`targets` of every image in one pass (the assigner's batched form: ATSS)."""
        made = self._batch_anchor_targets(GFLHeadCore, priors, gt_boxes, gt_labels, img_shapes, gt_boxes_ignore)
        if made is None:
            return None
        joined, num_pos = made
        weights = joined.bbox_weights.new_zeros(joined.labels.shape[0])
        pos = joined.sampling_result.pos_inds
        if cls_scores is not None and pos.numel() > 0:
            scores = cls_scores.detach().reshape(-1, cls_scores.shape[-1])[pos]
            weights[pos] = scores.sigmoid().max(dim=1).values.to(weights.dtype)
        joined.extras["weight_targets"] = weights
        sums = weights.view(len(priors), -1).sum(dim=1).tolist()
        return joined, [(float(max(n, 1)), float(w)) for n, w in zip(num_pos, sums)]

    def avg_factor_of(self, targets: Targets) -> tuple[float, float]:
        return float(max(targets.num_pos, 1)), float(targets.extras["weight_targets"].sum())

    @classmethod
    def reduce_avg_factor(cls, values, across_ranks: bool = False) -> GFLNormalisers:
        """``avg_factor = reduce_mean(sum of max(num_pos, 1))``; the box normaliser
        ``reduce_mean(sum of weight targets).clamp(min=1)``."""
        from ..train.distributed import is_distributed, reduce_mean
        pairs = [v if isinstance(v, (tuple, list)) else (v, 0.0) for v in values]
        total = torch.tensor([sum(p[0] for p in pairs), sum(p[1] for p in pairs)], dtype=torch.float32)
        if across_ranks and is_distributed():
            total = reduce_mean(total)
        return GFLNormalisers(float(total[0]), max(float(total[1]), 1.0))

    def _positive_terms(self, cls_scores, bbox_preds, priors, targets, pos):
        """Per positive (stride units): QFL score target, GIoU x weight, DFL (4 sides) x weight."""
        anchors = priors.tensor[pos]
        strides = priors.prior_strides[pos][:, :1]                         # (P, 1)
        centers = anchor_centers(anchors) / strides
        weight = cls_scores.detach().sigmoid().max(dim=1).values[pos]
        pred_boxes = self.bbox_coder.decode(centers, self.integral(bbox_preds[pos]))
        target_boxes = targets.bbox_targets[pos] / strides
        score = bbox_overlaps(pred_boxes.detach(), target_boxes, is_aligned=True)
        giou = self.loss_bbox.elementwise(pred_boxes, target_boxes) * weight
        corners = self.bbox_coder.encode(centers, target_boxes, self.reg_max).reshape(-1)
        dfl = self.loss_dfl.elementwise(bbox_preds[pos].reshape(-1, self.reg_max + 1), corners).reshape(-1, 4)
        return score, giou, (dfl * weight[:, None]).sum(dim=1)

    def loss_image(self, cls_scores, bbox_preds, priors, targets, avg_factor, breakdown=True) -> GFLImageLoss:
        norm = avg_factor if isinstance(avg_factor, GFLNormalisers) else GFLNormalisers(float(avg_factor), 1.0)
        pos = targets.sampling_result.pos_inds
        score = cls_scores.new_zeros(len(priors))
        bbox_per_prior = cls_scores.new_zeros(len(priors))
        dfl_per_prior = cls_scores.new_zeros(len(priors))
        if pos.numel() > 0:
            pos_score, giou, dfl = self._positive_terms(cls_scores, bbox_preds, priors, targets, pos)
            score[pos] = pos_score.to(score.dtype)
            bbox_per_prior = bbox_per_prior.index_put((pos,), giou * self.loss_bbox.loss_weight / (1.0 + _EPS) / norm.weight)
            dfl_per_prior = dfl_per_prior.index_put((pos,), dfl * self.loss_dfl.loss_weight / (4.0 + _EPS) / norm.weight)
            loss_bbox, loss_dfl = bbox_per_prior.sum(), dfl_per_prior.sum()
        else:                                               # zeros that keep the graph, as the reference
            loss_bbox = loss_dfl = bbox_preds.sum() * 0
        cls_raw = self.loss_cls.elementwise(cls_scores, (targets.labels, score))          # (A,)
        cls_per_prior = cls_raw * targets.label_weights * self.loss_cls.loss_weight / (norm.num_pos + _EPS)
        terms = {"loss_cls": cls_per_prior.sum(), "loss_bbox": loss_bbox, "loss_dfl": loss_dfl}
        decoded = self.decode(priors.tensor, bbox_preds).detach() if breakdown else None
        return GFLImageLoss(cls_per_prior, bbox_per_prior, cls_raw.detach(), terms, float(norm.num_pos),
                            decoded_pred_boxes=decoded, dfl_per_prior=dfl_per_prior, quality_targets=score)

    def init_predictions(self, priors):
        """A freshly initialised GFLHead: class bias ``bias_init_with_prob(0.01)``, distribution
        logits ~0 (weights ~N(0, 0.01)): a uniform distribution, distances reg_max / 2 strides."""
        cls, reg = self.empty_predictions(priors)
        cls.fill_(-4.59511985013459)
        return cls, reg

    def empty_predictions(self, priors):
        a = len(priors)
        return priors.tensor.new_zeros((a, self.num_classes)), priors.tensor.new_zeros((a, self.reg_channels()))


BATCHED_LOSSES.add(GFLHeadCore.loss_image)
