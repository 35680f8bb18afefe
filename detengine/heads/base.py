"""What every dense-head core shares: target and loss records, prior/feature-size plumbing.

A *head core* holds a head's non-learned logic (priors, assigner, sampler, coder, losses,
post-processing), built from the ``bbox_head`` / ``train_cfg`` / ``test_cfg`` of a config. The
inspection trace and the trainable detectors both call it, so what the GUI shows is what training
computes. Per-image methods take flat tensors: scores (A, K), regression (A, 4), in prior order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..assigners.result import AssignResult
from ..priors import Priors
from ..samplers import SamplingResult

__all__ = ["Targets", "ImageLoss", "HeadCore", "anchor_inside_flags", "valid_region"]


@dataclass
class Targets:
    """Training targets of one image over all A priors.

    labels (Tensor[A] long): class for positives, ``num_classes`` (background) otherwise.
    label_weights (Tensor[A]): 1 for priors in the classification loss, 0 for ignored ones.
    bbox_targets (Tensor[A, 4]): encoded targets (decoded GT boxes for RTMDet) at positives.
    bbox_weights (Tensor[A, 4]): 1 (or the soft weight) at positives.
    inside (Tensor[A] bool): priors that took part (valid flags and allowed border).
    extras: head-specific targets (e.g. RTMDet's ``assign_metrics``).
    """

    assign_result: AssignResult
    sampling_result: SamplingResult
    labels: Tensor
    label_weights: Tensor
    bbox_targets: Tensor
    bbox_weights: Tensor
    inside: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def num_pos(self) -> int:
        return int(self.sampling_result.pos_inds.numel())

    def __repr__(self) -> str:
        return f"Targets(A={int(self.labels.shape[0])}, pos={self.num_pos}, {self.assign_result!r})"


@dataclass
class ImageLoss:
    """Loss of one image, per prior and reduced, exactly as the detector optimises it.

    cls_per_prior (Tensor[A]): classification loss of each prior after weighting and division
        by the avg factor, so that ``cls_per_prior.sum() == loss_cls`` (SSD: negatives not
        mined are 0). bbox_per_prior (Tensor[A]): the same for regression (0 off positives).
    cls_raw (Tensor[A]): un-normalised per-prior classification loss (before mining/weights).
    hard_negative_mask (Tensor[A] bool): negatives picked by hard-negative mining (SSD only).
    avg_factor: the normaliser used.  terms: named reduced losses (``loss_cls``, ``loss_bbox``).
    """

    cls_per_prior: Tensor
    bbox_per_prior: Tensor
    cls_raw: Tensor
    terms: dict[str, Tensor]
    avg_factor: float
    hard_negative_mask: Tensor | None = None
    decoded_pred_boxes: Tensor | None = None

    @property
    def total(self) -> Tensor:
        return sum(self.terms.values())

    def __repr__(self) -> str:
        terms = ", ".join(f"{k}={float(v):.6g}" for k, v in self.terms.items())
        return f"ImageLoss({terms}, avg_factor={self.avg_factor})"


def anchor_inside_flags(priors: Tensor, valid: Tensor, img_shape, allowed_border: float = 0) -> Tensor:
    """Valid priors that also lie inside the image grown by ``allowed_border`` (< 0: no check)."""
    if allowed_border < 0:
        return valid
    h, w = img_shape[:2]
    return (valid & (priors[:, 0] >= -allowed_border) & (priors[:, 1] >= -allowed_border)
            & (priors[:, 2] < w + allowed_border) & (priors[:, 3] < h + allowed_border))


def valid_region(meta: dict, input_shape) -> tuple[int, int]:
    """The (h, w) whose priors count as valid: mmdetection's ``pad_shape`` (each image rounded up
    to the data preprocessor's ``pad_size_divisor``; after a pipeline ``Pad``, the padded size),
    so priors over padding inside it are valid, those past it (batch padding) are not."""
    return tuple(int(v) for v in meta.get("pad_shape", meta.get("img_shape", input_shape)))


class HeadCore:
    """Interface of the head cores. Subclasses set ``prior_generator`` and implement the rest."""

    num_classes: int
    score_layout: str  # "softmax" (background last), "sigmoid" or "softmax_bg_first" (d2l)
    prior_generator = None
    assigner = None

    def featmap_sizes(self, input_shape: tuple[int, int]) -> list[tuple[int, int]]:
        """Feature-map sizes (h, w) the network produces for an input of ``input_shape``."""
        raise NotImplementedError

    def priors(self, input_shape, pad_shape=None, featmap_sizes=None, device="cpu") -> Priors:
        """Priors of an input of ``input_shape = (h, w)``; priors past ``pad_shape`` (mmdetection's:
        :func:`valid_region`) are invalid.
        Cached per (feature sizes, pad shape, device): priors never change for a given input."""
        sizes = [tuple(int(v) for v in s) for s in (featmap_sizes or self.featmap_sizes(input_shape))]
        key = (tuple(sizes), tuple(pad_shape) if pad_shape is not None else None, str(device))
        cache = self.__dict__.setdefault("_priors_cache", {})
        if key not in cache:
            if len(cache) > 32:
                cache.clear()
            cache[key] = self.prior_generator.grid_priors(sizes, pad_shape=pad_shape, device=device)
        return cache[key]

    @property
    def num_base_priors(self) -> list[int]:
        return self.prior_generator.num_base_priors

    def cls_channels(self) -> int:
        return self.num_classes + 1 if self.score_layout.startswith("softmax") else self.num_classes

    def targets(self, priors: Priors, gt_boxes: Tensor, gt_labels: Tensor, img_shape,
                gt_boxes_ignore: Tensor | None = None, cls_scores: Tensor | None = None,
                bbox_preds: Tensor | None = None) -> Targets:
        raise NotImplementedError

    def avg_factor_of(self, targets: Targets) -> float:
        """This image's contribution to the batch normaliser."""
        raise NotImplementedError

    @staticmethod
    def reduce_avg_factor(values, across_ranks: bool = False) -> float:
        """The batch normaliser from the images' contributions (default: their sum).
        ``across_ranks``: the trainer's step under torchrun (heads that average over the ranks
        do so only then, so a loss computed on one rank alone never waits for the others)."""
        return float(sum(values))

    def loss_image(self, cls_scores: Tensor, bbox_preds: Tensor, priors: Priors, targets: Targets,
                   avg_factor: float) -> ImageLoss:
        raise NotImplementedError

    def batch_loss_terms(self, cls_scores: Tensor, bbox_preds: Tensor, priors: list[Priors],
                         targets: list[Targets], avg_factor) -> dict[str, Tensor] | None:
        """The batch's named losses in one call: :meth:`loss_image` over the batch's priors, targets and
        positives concatenated. Every term of a registered ``loss_image`` (``BATCHED_LOSSES``) is a
        per-prior sum over one batch-wide normaliser, so this is the images' sum (float order aside);
        None for the others (SSD's hard-negative mining, for one, is per image). On a GPU each
        operation is a launch: one call instead of B saves B - 1 times the loss's launches."""
        if type(self).loss_image not in BATCHED_LOSSES:
            return None
        a = int(cls_scores.shape[1])
        if any(not torch.is_tensor(v) or v.shape[:1] != (a,) for t in targets for v in t.extras.values()):
            return None                                  # an extra that is not one value per prior
        cat = [torch.cat([getattr(t, name) for t in targets])
               for name in ("labels", "label_weights", "bbox_targets", "bbox_weights", "inside")]
        pos = torch.cat([t.sampling_result.pos_inds + i * a for i, t in enumerate(targets)])
        extras = {k: torch.cat([t.extras[k] for t in targets]) for k in targets[0].extras}
        joined = Targets(None, _Positives(pos), *cat, extras=extras)
        loss = self.loss_image(cls_scores.reshape(-1, cls_scores.shape[-1]),
                               bbox_preds.reshape(-1, bbox_preds.shape[-1]), _PriorBoxes(priors), joined, avg_factor)
        return loss.terms

    def predict(self, cls_scores: Tensor, bbox_preds: Tensor, priors: Priors, img_shape, record: bool = True,
                **overrides):
        raise NotImplementedError

    def init_predictions(self, priors: Priors) -> tuple[Tensor, Tensor]:
        """(cls_scores (A, K), bbox_preds (A, 4)) of a freshly initialised head: what the
        assignment looks like before training, for assigners that need predictions."""
        raise NotImplementedError

    def empty_predictions(self, priors: Priors) -> tuple[Tensor, Tensor]:
        a = len(priors)
        return priors.tensor.new_zeros((a, self.cls_channels())), priors.tensor.new_zeros((a, 4))


class _PriorBoxes:
    """What a batched ``loss_image`` reads of :class:`Priors`, for a batch's priors concatenated: the
    boxes (points), their count and (GFL) each prior's level stride."""

    def __init__(self, priors):
        self.tensor = torch.cat([p.tensor for p in priors])
        self._priors = priors

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    @property
    def prior_strides(self):
        return torch.cat([p.prior_strides for p in self._priors])


class _Positives:
    """What a batched ``loss_image`` reads of a :class:`SamplingResult`: the positives' indices."""

    def __init__(self, pos_inds):
        self.pos_inds = pos_inds


# loss_image methods that read only per-prior targets, the positives and a batch-wide normaliser, so
# a batch's priors concatenated give the images' summed terms (each head's module adds its own)
BATCHED_LOSSES: set = set()
