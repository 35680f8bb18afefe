"""The losses the anchor-free heads add (FCOS, ATSS, GFL), with mmdetection 3.3.0's semantics and
the call convention of :mod:`detengine.losses`: ``IoULoss`` (UnitBox's ``-log IoU``, Yu et al.
2016), ``CrossEntropyLoss`` with ``use_sigmoid=True`` (binary cross-entropy on logits: FCOS's and
ATSS's centerness branch) and ``DistributionFocalLoss`` (GFL's box distribution).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import losses
from .boxes import bbox_overlaps

__all__ = ["iou_loss", "IoULoss", "CrossEntropyLoss", "distribution_focal_loss", "DistributionFocalLoss",
           "focal_loss_with_prob", "FocalLoss"]


def iou_loss(pred: Tensor, target: Tensor, mode: str = "log", eps: float = 1e-6) -> Tensor:
    """(N,) loss of aligned xyxy boxes from their IoU clamped to >= ``eps``: ``-log IoU``
    (``"log"``, UnitBox), ``1 - IoU`` (``"linear"``) or ``1 - IoU^2`` (``"square"``)."""
    ious = bbox_overlaps(pred, target, is_aligned=True).clamp(min=eps)
    if mode == "log":
        return -ious.log()
    if mode == "linear":
        return 1 - ious
    if mode == "square":
        return 1 - ious ** 2
    raise ValueError(f"mode must be 'log', 'linear' or 'square', got {mode!r}")


class IoULoss(losses.GIoULoss):
    """mmdetection's ``IoULoss``: decoded boxes (N, 4) against targets (N, 4); weight (N,) or
    (N, 4) (averaged over the 4), no positive weight -> a zero that keeps the graph."""

    def __init__(self, *, linear: bool = False, eps: float = 1e-6, mode: str = "log", **kw):
        super().__init__(eps=eps, **kw)
        if mode not in ("log", "linear", "square"):
            raise ValueError(f"mode must be 'log', 'linear' or 'square', got {mode!r}")
        self.mode = "linear" if linear else mode

    def elementwise(self, pred, target):
        return iou_loss(pred, target, self.mode, self.eps)


class CrossEntropyLoss(losses.CrossEntropyLoss):
    """:class:`detengine.losses.CrossEntropyLoss`, and with ``use_sigmoid=True`` mmdetection's
    ``binary_cross_entropy``: logits against a target of the same shape (soft values in [0, 1],
    entries < 0 or equal to ``ignore_index`` weigh 0), or class indices (N,) one-hot over the C
    columns (index C = background: an all-zero row)."""

    def __init__(self, *, use_sigmoid: bool = False, ignore_index: int = -100, class_weight=None, **kw):
        super().__init__(use_sigmoid=False, ignore_index=ignore_index, class_weight=class_weight, **kw)
        if use_sigmoid and class_weight is not None:
            raise ValueError("CrossEntropyLoss(use_sigmoid=True, class_weight=...) is not built here")
        self.use_sigmoid = bool(use_sigmoid)

    def elementwise(self, pred, target):
        if not self.use_sigmoid:
            return super().elementwise(pred, target)
        if target.dim() == pred.dim():
            valid = ((target >= 0) & (target != self.ignore_index)).to(pred.dtype)
            return F.binary_cross_entropy_with_logits(pred, target.to(pred.dtype), reduction="none") * valid
        labels = target.long()
        keep = (labels >= 0) & (labels != self.ignore_index)
        onehot = pred.new_zeros(pred.shape)
        fg = keep & (labels < pred.shape[-1])
        onehot[fg.nonzero().view(-1), labels[fg]] = 1
        loss = F.binary_cross_entropy_with_logits(pred, onehot, reduction="none")
        return loss * keep[:, None].to(pred.dtype)



def distribution_focal_loss(pred: Tensor, label: Tensor) -> Tensor:
    """(N,) DFL (Li et al. 2020, "Generalized Focal Loss", eq. 6) of ``pred`` (N, n + 1) logits of
    the distribution over ``{0, ..., n}`` against continuous targets ``label`` (N,) in ``[0, n)``:
    cross-entropy at the two integers around the target, weighted by the distance to the other."""
    left = label.long()
    right = left + 1
    weight_left = right.float() - label
    weight_right = label - left.float()
    return (F.cross_entropy(pred, left, reduction="none") * weight_left
            + F.cross_entropy(pred, right, reduction="none") * weight_right)


class DistributionFocalLoss(losses._Loss):
    """mmdetection's ``DistributionFocalLoss``: (N, n + 1) logits against (N,) distances in bins."""

    def elementwise(self, pred, target):
        return distribution_focal_loss(pred, target)


def focal_loss_with_prob(prob: Tensor, labels: Tensor, gamma: float = 2.0, alpha: float = 0.25) -> Tensor:
    """(N, C) focal loss of PROBABILITIES ``prob`` against class indices ``labels`` (N,), ``C`` =
    background (mmdetection's ``py_focal_loss_with_prob``: TOOD's initial epochs); under autocast in float32
    with autocast off (:func:`~detengine.losses.probabilities_off_autocast`)."""
    if torch.is_autocast_enabled(prob.device.type):
        with losses.probabilities_off_autocast(prob):
            return focal_loss_with_prob(prob.float(), labels, gamma, alpha)
    num_classes = prob.size(1)
    target = F.one_hot(labels.long(), num_classes=num_classes + 1)[:, :num_classes].type_as(prob)
    pt = (1 - prob) * target + prob * (1 - target)
    focal_weight = (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)
    return F.binary_cross_entropy(prob, target, reduction="none") * focal_weight


class FocalLoss(losses.FocalLoss):
    """:class:`detengine.losses.FocalLoss`, and with ``activated=True`` on probabilities
    (class-index targets only, as mmdetection)."""

    def __init__(self, *, activated: bool = False, **kw):
        super().__init__(**kw)
        self.activated = bool(activated)

    def elementwise(self, pred, target):
        if not self.activated:
            return super().elementwise(pred, target)
        if target.dim() == pred.dim():
            raise ValueError("FocalLoss(activated=True) takes class indices (N,), as mmdetection")
        return focal_loss_with_prob(pred, target, self.gamma, self.alpha)

    def per_prior(self, pred, target):
        if not self.activated:
            return super().per_prior(pred, target)
        return self.elementwise(pred, target).sum(dim=1)
