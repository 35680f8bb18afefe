"""Losses with mmdetection's reduction semantics, each able to return per-element values.

Every loss class is called as ``loss(pred, target, weight=None, avg_factor=None,
reduction_override=None)``; ``reduction_override="none"`` gives the per-element values the GUI
draws, anything else the reduced value the detector optimises. Reduction with ``avg_factor`` is
``sum / (avg_factor + float32 eps)``, without it a plain mean, as mmdetection's
``weight_reduce_loss``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .boxes import bbox_overlaps

__all__ = [
    "weight_reduce_loss", "smooth_l1_loss", "l1_loss", "sigmoid_focal_loss", "sigmoid_focal_loss_dense",
    "sigmoid_focal_loss_per_prior", "quality_focal_loss", "quality_focal_loss_dense",
    "giou_loss", "CrossEntropyLoss", "SmoothL1Loss", "L1Loss", "FocalLoss", "QualityFocalLoss",
    "GIoULoss",
]

_EPS = torch.finfo(torch.float32).eps


def weight_reduce_loss(loss: Tensor, weight: Tensor | None = None, reduction: str = "mean",
                       avg_factor: float | Tensor | None = None) -> Tensor:
    """Multiply by ``weight`` (broadcast), then reduce: none / sum / mean, or sum / avg_factor."""
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        if reduction == "none":
            return loss
        return loss.sum() if reduction == "sum" else loss.mean()
    if reduction == "mean":
        return loss.sum() / (avg_factor + _EPS)
    if reduction == "none":
        return loss
    raise ValueError('avg_factor can not be used with reduction="sum"')


def smooth_l1_loss(pred: Tensor, target: Tensor, beta: float = 1.0) -> Tensor:
    """Element-wise smooth L1 (Fast R-CNN eq. 3): ``0.5 d^2 / beta`` below ``beta``, else ``d - beta / 2``."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if target.numel() == 0:
        return pred * 0
    diff = torch.abs(pred - target)
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Element-wise ``|pred - target|``."""
    if target.numel() == 0:
        return pred * 0
    return torch.abs(pred - target)


def _focal_negative_term(x: Tensor, gamma: float, alpha: float) -> Tensor:
    """``(1 - alpha) p^gamma softplus(x)``: the focal loss of every logit as a negative.

    softplus(x) = relu(x) - log(sigmoid(|x|)) and sigmoid(|x|) = max(p, 1 - p), both >= 0.5, so
    the log stays accurate; much cheaper than ``F.softplus`` on CPU.
    """
    p = torch.sigmoid(x)
    loss = torch.maximum(p, 1 - p).log_().neg_().add_(torch.relu(x))
    if gamma == 2.0:
        loss.mul_(p).mul_(p)
    else:
        loss.mul_(p.pow_(gamma))
    return loss.mul_(1 - alpha)


def _focal_positive_term(x: Tensor, gamma: float, alpha: float) -> Tensor:
    """``alpha (1 - p)^gamma softplus(-x)``: the focal loss of logits whose target is 1."""
    return alpha * (1 - torch.sigmoid(x)).pow(gamma) * F.softplus(-x)


def _positives(labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    pos = ((labels >= 0) & (labels < num_classes)).nonzero().view(-1)
    return pos, labels[pos].long()


def sigmoid_focal_loss(pred: Tensor, labels: Tensor, gamma: float = 2.0, alpha: float = 0.25) -> Tensor:
    """(N, C) focal loss (Lin et al. 2017, eq. 5) of logits ``pred`` against class indices
    ``labels`` (N,), where ``C`` (num classes) means background.

    Same values as ``torchvision.ops.sigmoid_focal_loss`` on the one-hot targets (tests hold them
    to 1e-6), without the one-hot matrix: every entry as a negative, then the few positive
    entries replaced. The dense form over RetinaNet's 76,725 x 80 logits dominated the trace.
    """
    loss = _focal_negative_term(pred, gamma, alpha)
    pos, cls = _positives(labels, pred.size(1))
    if pos.numel():
        loss[pos, cls] = _focal_positive_term(pred[pos, cls], gamma, alpha)
    return loss


def sigmoid_focal_loss_dense(pred: Tensor, target: Tensor, gamma: float = 2.0, alpha: float = 0.25) -> Tensor:
    """(N, C) focal loss against a dense (N, C) target: one-hot, or soft values in [0, 1].

    mmdetection's ``py_sigmoid_focal_loss``, which its ``FocalLoss`` runs whenever the target
    has the prediction's rank (``pred.dim() == target.dim()``)."""
    if pred.shape != target.shape:
        raise ValueError(f"a dense focal-loss target must have the prediction's shape {tuple(pred.shape)}, "
                         f"got {tuple(target.shape)}")
    p = pred.sigmoid()
    t = target.type_as(pred)
    pt = (1 - p) * t + p * (1 - t)
    focal_weight = (alpha * t + (1 - alpha) * (1 - t)) * pt.pow(gamma)
    return F.binary_cross_entropy_with_logits(pred, t, reduction="none") * focal_weight


def _blocks_pay(t: Tensor) -> bool:
    """Whether row blocks are worth their launches: on the CPU only (RetinaNet 2 x 76,725 x 20 logits,
    1 thread: 19 against 37 ms); a loss with a gradient to follow never takes them (``_FocalRows``).
    bench/bench_launches.py patches this to count a GPU step's kernels on the CPU."""
    return t.is_cpu


def sigmoid_focal_loss_per_prior(pred: Tensor, labels: Tensor, gamma: float = 2.0, alpha: float = 0.25,
                                 rows: int = 512) -> Tensor:
    """(N,) ``sigmoid_focal_loss(...).sum(1)``. With a gradient to follow: one block and the backward
    written out (:class:`_FocalRows`). Without (a trace, the GUI): in cache-sized row blocks on the CPU
    (2-4x faster on RetinaNet-sized inputs, bench/bench_trace.py), in one block elsewhere (on a GPU each
    block's launches cost more than its work: RetinaNet's 150 blocks an image made its training step
    18x the network's on an H200, bench/RESULTS.md)."""
    if pred.requires_grad and torch.is_grad_enabled() and pred.shape[0]:
        return _FocalRows.apply(pred, labels, gamma, alpha)
    if not _blocks_pay(pred):
        rows = max(rows, pred.shape[0])
    out = torch.cat([_focal_negative_term(block, gamma, alpha).sum(1)
                     for block in pred.split(rows)]) if pred.shape[0] else pred.new_zeros(0)
    pos, cls = _positives(labels, pred.size(1))
    if pos.numel():
        x = pred[pos, cls]
        correction = _focal_positive_term(x, gamma, alpha) - _focal_negative_term(x, gamma, alpha)
        out = out.index_add(0, pos, correction)
    return out


class _FocalRows(torch.autograd.Function):
    """:func:`sigmoid_focal_loss_per_prior` in one block with its gradient written out, as mmcv's
    compiled ``sigmoid_focal_loss`` has it (mmdetection's on a GPU). Autograd's chain of the same
    forward took 43 operations and 67 in its backward (RetinaNet's focal loss was 110 of its 250
    launches a batch on a GPU; six (N, C) clones for the in-place steps); here 27 and 23, with only
    ``p`` and ``softplus(x)`` kept, and 4x faster on the CPU (2 x 76,725 x 20 logits, 1 thread:
    118 -> 29 ms with the backward). Values: the forward's bit for bit.

    With ``p = sigmoid(x)``, ``softplus'(x) = p`` and ``p' = p (1 - p)``:
    negative ``(1 - a) p^g softplus(x)``: ``d/dx = (1 - a) p^g (g (1 - p) softplus(x) + p)``;
    positive ``a (1 - p)^g softplus(-x)``: ``d/dx = -a (1 - p)^g (g p softplus(-x) + (1 - p))``,
    written over the negative's value at each positive entry (autograd adds ``pos - neg`` to it:
    the same sum, rounded once less)."""

    @staticmethod
    def forward(ctx, pred, labels, gamma, alpha):
        x = pred.to(torch.promote_types(pred.dtype, torch.float32))   # half under autocast: the loss in float32
        p = torch.sigmoid(x)
        sp = torch.maximum(p, 1 - p).log_().neg_().add_(torch.relu(x))    # softplus(x), as _focal_negative_term
        loss = (sp * p).mul_(p) if gamma == 2.0 else sp * p.pow(gamma)
        out = loss.mul_(1 - alpha).sum(1)
        pos, cls = _positives(labels, pred.size(1))
        if pos.numel():        # the negative term at the positives: the same operations, already done
            out = out.index_add(0, pos, _focal_positive_term(x[pos, cls], gamma, alpha) - loss[pos, cls])
        ctx.save_for_backward(x, p, sp, pos, cls)
        ctx.gamma, ctx.alpha, ctx.dtype = gamma, alpha, pred.dtype
        return out

    @staticmethod
    @once_differentiable        # a second derivative raises rather than being silently wrong
    def backward(ctx, grad_out):
        x, p, sp, pos, cls = ctx.saved_tensors
        gamma, alpha = ctx.gamma, ctx.alpha
        grad = (1 - p).mul_(sp).mul_(gamma).add_(p)
        grad = grad.mul_(p).mul_(p) if gamma == 2.0 else grad.mul_(p.pow(gamma))
        grad.mul_(grad_out.unsqueeze(1) * (1 - alpha))
        if pos.numel():
            pp = p[pos, cls]
            q = 1 - pp
            d = (pp * F.softplus(-x[pos, cls])).mul_(gamma).add_(q)
            grad[pos, cls] = d.mul_(q.pow(gamma)).mul_(grad_out[pos] * -alpha)
        return grad.to(ctx.dtype), None, None, None


def quality_focal_loss(pred: Tensor, labels: Tensor, scores: Tensor, beta: float = 2.0,
                       activated: bool = False) -> Tensor:
    """(N,) QFL (Li et al. 2020, "Generalized Focal Loss", eq. 5), summed over classes.

    ``labels`` (N,) class index, ``C`` = background; ``scores`` (N,) the soft target (IoU) of the
    labelled class. Negatives are pushed to 0 with weight ``sigmoid^beta``. ``activated``: ``pred``
    holds probabilities already (mmdetection's ``quality_focal_loss_with_prob``).
    """
    if activated and torch.is_autocast_enabled(pred.device.type):      # see probabilities_off_autocast
        with probabilities_off_autocast(pred):
            return quality_focal_loss(pred.float(), labels, scores, beta, activated)
    bg = pred.size(1)
    pos = ((labels >= 0) & (labels < bg)).nonzero().squeeze(1)
    if pred.requires_grad and torch.is_grad_enabled() and not scores.requires_grad:
        return _QFLRows.apply(pred, pos, labels[pos].long(), scores[pos].type_as(pred), beta, activated)
    dense = pred.new_zeros(pred.shape)
    dense[pos, labels[pos].long()] = scores[pos].type_as(pred)
    return _qfl(pred, dense, (pos, labels[pos].long()), beta, activated)


def quality_focal_loss_dense(pred: Tensor, target: Tensor, beta: float = 2.0, activated: bool = False) -> Tensor:
    """(N,) QFL against a dense (N, C) soft target (mmdetection's ``quality_focal_loss_tensor_target``):
    every non-zero entry is a positive with that soft label, every zero a negative."""
    if pred.shape != target.shape:
        raise ValueError(f"a dense QFL target must have the prediction's shape {tuple(pred.shape)}, "
                         f"got {tuple(target.shape)}")
    if activated and torch.is_autocast_enabled(pred.device.type):
        with probabilities_off_autocast(pred):
            return quality_focal_loss_dense(pred.float(), target, beta, activated)
    target = target.type_as(pred)
    return _qfl(pred, target, (target != 0).nonzero(as_tuple=True), beta, activated)


def _qfl(pred: Tensor, target: Tensor, pos: tuple[Tensor, Tensor], beta: float, activated: bool) -> Tensor:
    prob = pred if activated else pred.sigmoid()
    bce = F.binary_cross_entropy if activated else F.binary_cross_entropy_with_logits
    loss = bce(pred, pred.new_zeros(pred.shape), reduction="none") * prob.pow(beta)
    scale = target[pos] - prob[pos]
    loss[pos] = bce(pred[pos], target[pos], reduction="none") * scale.abs().pow(beta)
    return loss.sum(dim=1)


_BCE_EPS = float(torch.tensor(1e-12, dtype=torch.float32))  # torch's BCE backward clamp: 1e-12 as a float32


class _QFLRows(torch.autograd.Function):
    """:func:`quality_focal_loss` with its gradient written out (the classification loss in training of
    GFL and RTMDet, of logits, and of TOOD, of probabilities: ``activated``): the forward is
    :func:`_qfl`'s operations in its order (bit for bit), the backward 17-20 operations where
    autograd's chain of the forward took ~35. The target scores take no gradient (mmdetection detaches
    them: the IoU of the detached decoded box).

    With ``p = sigmoid(x)`` (or ``p`` itself when activated), ``s = bce(., 0)`` and ``d = t - p``:
    negative ``s p^b``: of the logit ``d/dx = p^b (p + b (1 - p) s)``, of the probability
    ``d/dp = p^b s' + b s p^(b-1)``, ``s' = p / max(p (1 - p), 1e-12)`` as torch's own BCE backward;
    positive ``bce(., t) |d|^b``: ``d/dx = -d |d|^b - b bce |d|^(b-1) sign(d) p (1 - p)``,
    ``d/dp = (p - t) / max(p (1 - p), 1e-12) |d|^b - b bce |d|^(b-1) sign(d)``."""

    @staticmethod
    def forward(ctx, pred, pos, cls, target, beta, activated):
        p = pred if activated else pred.sigmoid()
        bce = F.binary_cross_entropy if activated else F.binary_cross_entropy_with_logits
        sp = bce(pred, pred.new_zeros(pred.shape), reduction="none")
        pb = p.pow(beta)
        loss = sp * pb
        pp = p[pos, cls]
        d = target - pp
        a = d.abs()
        ab = a.pow(beta)
        b = bce(pred[pos, cls], target, reduction="none")
        loss[pos, cls] = b * ab
        ctx.save_for_backward(p, sp, pb, pos, cls, pp, d, a, ab, b)
        ctx.beta, ctx.activated = beta, activated
        return loss.sum(dim=1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        p, sp, pb, pos, cls, pp, d, a, ab, b = ctx.saved_tensors
        beta = ctx.beta
        if ctx.activated:
            grad = (p * (1 - p)).clamp_(min=_BCE_EPS)
            grad = torch.div(p, grad, out=grad).mul_(pb)
            grad.add_((p.pow(beta - 1) if beta != 2.0 else p).mul(sp).mul_(beta))   # p may be the input: not in place
        else:
            grad = (1 - p).mul_(sp).mul_(beta).add_(p).mul_(pb)
        grad.mul_(grad_out.unsqueeze(1))
        if pos.numel():
            slope = a.pow(beta - 1).mul_(d.sign()) if beta != 2.0 else d        # |d|^(b-1) sign(d)
            if ctx.activated:
                g = (pp * (1 - pp)).clamp_(min=_BCE_EPS)
                g = torch.div(-d, g).mul_(ab).sub_(slope.mul(b).mul_(beta))
            else:
                g = (pp * (1 - pp)).mul_(slope).mul_(b).mul_(beta).add_(d * ab).neg_()
            grad[pos, cls] = g.mul_(grad_out.index_select(0, pos))
        return grad, None, None, None, None, None


def probabilities_off_autocast(t: Tensor):
    """The context for a loss of probabilities under mixed precision: CUDA's autocast refuses
    ``F.binary_cross_entropy`` ("unsafe to autocast"; TOOD's losses, mmdetection's too, stop there under
    AMP), so such a loss runs with autocast off, in float32 (its inputs cast by the caller)."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def giou_loss(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """(N,) ``1 - GIoU`` of aligned xyxy boxes (Rezatofighi et al. 2019); degenerate boxes give 1."""
    return 1 - bbox_overlaps(pred, target, mode="giou", is_aligned=True, eps=eps)


class _Loss:
    """Common call: per-element values, weighting and reduction, times ``loss_weight``."""

    def __init__(self, *, reduction: str = "mean", loss_weight: float = 1.0):
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(f"reduction must be none / mean / sum, got {reduction!r}")
        self.reduction = reduction
        self.loss_weight = float(loss_weight)

    def elementwise(self, pred: Tensor, target) -> Tensor:
        raise NotImplementedError

    def per_prior(self, pred: Tensor, target) -> Tensor:
        """(N,) un-weighted loss of each row (summed over classes / coordinates)."""
        loss = self.elementwise(pred, target)
        return loss.sum(dim=1) if loss.dim() == 2 else loss

    def _weight(self, weight: Tensor | None, loss: Tensor) -> Tensor | None:
        return weight

    def __call__(self, pred: Tensor, target, weight: Tensor | None = None, avg_factor=None,
                 reduction_override: str | None = None) -> Tensor:
        return self.reduce_elementwise(pred, self.elementwise(pred, target), weight, avg_factor, reduction_override)

    def reduce_elementwise(self, pred: Tensor, loss: Tensor, weight: Tensor | None = None, avg_factor=None,
                           reduction_override: str | None = None) -> Tensor:
        """:meth:`__call__` given ``loss = elementwise(pred, target)`` already computed (one loss for a
        per-prior breakdown and the optimised term)."""
        return self.reduce(loss, weight, avg_factor, reduction_override)

    def reduce(self, loss: Tensor, weight: Tensor | None = None, avg_factor=None,
               reduction_override: str | None = None) -> Tensor:
        """Weight, reduce and scale already computed :meth:`elementwise` values."""
        reduction = reduction_override or self.reduction
        loss = weight_reduce_loss(loss, self._weight(weight, loss), reduction, avg_factor)
        return self.loss_weight * loss


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits (N, C) against class indices (N,); ``ignore_index`` gives 0."""

    def __init__(self, *, use_sigmoid: bool = False, ignore_index: int = -100, class_weight=None, **kw):
        super().__init__(**kw)
        if use_sigmoid:
            raise ValueError("CrossEntropyLoss(use_sigmoid=True) is not supported; use FocalLoss or QFL")
        self.ignore_index = ignore_index
        self.class_weight = class_weight

    def elementwise(self, pred, target):
        cw = None if self.class_weight is None else pred.new_tensor(self.class_weight)
        return F.cross_entropy(pred, target.long(), weight=cw, reduction="none", ignore_index=self.ignore_index)


class SmoothL1Loss(_Loss):
    def __init__(self, *, beta: float = 1.0, **kw):
        super().__init__(**kw)
        self.beta = beta

    def elementwise(self, pred, target):
        return smooth_l1_loss(pred, target, self.beta)


class L1Loss(_Loss):
    def elementwise(self, pred, target):
        return l1_loss(pred, target)


class FocalLoss(_Loss):
    """Sigmoid focal loss; ``target`` is (N,) class indices with ``C`` = background, or a dense
    (N, C) one-hot / soft target (mmdetection's rule: a target of the prediction's rank)."""

    def __init__(self, *, use_sigmoid: bool = True, gamma: float = 2.0, alpha: float = 0.25, **kw):
        super().__init__(**kw)
        if not use_sigmoid:
            raise ValueError("only the sigmoid focal loss is supported (use_sigmoid=True)")
        self.gamma, self.alpha = gamma, alpha

    def elementwise(self, pred, target):
        if target.dim() == pred.dim():
            return sigmoid_focal_loss_dense(pred, target, self.gamma, self.alpha)
        return sigmoid_focal_loss(pred, target, self.gamma, self.alpha)

    def per_prior(self, pred, target):
        if target.dim() == pred.dim():
            return self.elementwise(pred, target).sum(dim=1)
        return sigmoid_focal_loss_per_prior(pred, target, self.gamma, self.alpha)

    def _weight(self, weight, loss):
        if weight is not None and weight.shape != loss.shape:
            if weight.size(0) == loss.size(0):
                return weight.view(-1, 1)  # per-prior weight over all classes
            return weight.view(loss.size(0), -1)
        return weight


class QualityFocalLoss(_Loss):
    """QFL; ``target`` is the pair ``(labels (N,), scores (N,))`` or a dense (N, C) soft target
    (as mmdetection); ``activated=True`` when ``pred`` holds probabilities, not logits."""

    def __init__(self, *, use_sigmoid: bool = True, beta: float = 2.0, activated: bool = False, **kw):
        super().__init__(**kw)
        if not use_sigmoid:
            raise ValueError("QualityFocalLoss needs use_sigmoid=True (mmdetection supports nothing else)")
        self.beta, self.activated = beta, activated

    def elementwise(self, pred, target):
        if isinstance(target, Tensor):
            return quality_focal_loss_dense(pred, target, self.beta, self.activated)
        labels, scores = target
        return quality_focal_loss(pred, labels, scores, self.beta, self.activated)


class GIoULoss(_Loss):
    """``1 - GIoU`` of decoded boxes (N, 4) against targets (N, 4); weight (N,) or (N, 4)."""

    def __init__(self, *, eps: float = 1e-6, **kw):
        super().__init__(**kw)
        self.eps = eps

    def elementwise(self, pred, target):
        return giou_loss(pred, target, self.eps)

    def _weight(self, weight, loss):
        if weight is not None and weight.dim() > 1:
            return weight.mean(-1)
        return weight

    def reduce_elementwise(self, pred, loss, weight=None, avg_factor=None, reduction_override=None):
        if weight is not None and not torch.any(weight > 0) and (reduction_override or self.reduction) != "none":
            w = weight.unsqueeze(1) if pred.dim() == weight.dim() + 1 else weight
            return (pred * w).sum()  # no positive: a zero that keeps the graph
        return self.reduce(loss, weight, avg_factor, reduction_override)
