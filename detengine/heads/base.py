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
from ..transfers import host_values

__all__ = ["Targets", "ImageLoss", "HeadCore", "anchor_inside_flags", "valid_region", "PaddedGTs", "batch_inside_flags",
           "batch_positives", "same_grid"]


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


def batch_inside_flags(priors: list[Priors], img_shapes, allowed_border: float = 0) -> Tensor:
    """(B, A) :func:`anchor_inside_flags` of a batch's images, whose priors share one grid."""
    valid = torch.stack([p.valid for p in priors])
    if allowed_border < 0:
        return valid
    boxes = priors[0].tensor
    hw = host_values([tuple(s[:2]) for s in img_shapes], boxes.device, boxes.dtype)
    return anchor_inside_flags(boxes, valid, (hw[:, :1], hw[:, 1:]), allowed_border)   # (B, 1) sizes broadcast


def batch_positives(gt_inds: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The positives of a batch's (B, A) ``gt_inds``: their flat indices into the joined priors
    (image i's prior j at ``i * A + j``), their image, their prior and their 0-based GT."""
    a = gt_inds.shape[1]
    flat = gt_inds.reshape(-1)
    pos = torch.nonzero(flat > 0).squeeze(-1)
    return pos, pos.div(a, rounding_mode="floor"), pos.remainder(a), flat[pos] - 1


def same_grid(priors: list[Priors]) -> bool:
    """Whether a batch's images have one prior grid (one input size; valid flags may differ)."""
    first = priors[0].tensor
    return all(p.tensor is first or (p.tensor.shape == first.shape and p.num_per_level == priors[0].num_per_level)
               for p in priors)


@dataclass
class PaddedGTs:
    """A batch's GT boxes padded to the most any image has, for assigning a batch in one pass.

    boxes (Tensor[B, G, 4]) xyxy, zeros past an image's own; labels (Tensor[B, G] long);
    mask (Tensor[B, G] bool) the real boxes; counts: each image's number of boxes.
    """

    boxes: Tensor
    labels: Tensor
    mask: Tensor
    counts: list[int]

    @classmethod
    def of(cls, gt_boxes: list[Tensor], gt_labels: list[Tensor], like: Tensor) -> "PaddedGTs":
        counts = [int(b.shape[0]) for b in gt_boxes]
        n, g = len(counts), max(counts, default=0)
        if g == 0:
            return cls(like.new_zeros((n, 0, 4)), torch.zeros((n, 0), dtype=torch.long, device=like.device),
                       torch.zeros((n, 0), dtype=torch.bool, device=like.device), counts)
        # each real box's slot, copied once (pad_sequence copies an image at a time: a launch each on a
        # GPU; and a tensor of counts made on the device is a host sync there)
        slots = host_values([i * g + j for i, c in enumerate(counts) for j in range(c)], like.device)
        device = like.device
        boxes = like.new_zeros((n * g, 4)).index_copy_(0, slots, torch.cat([b.reshape(-1, 4) for b in gt_boxes]).to(like))
        labels = torch.zeros(n * g, dtype=torch.long, device=device).index_copy_(
            0, slots, torch.cat([lb.reshape(-1) for lb in gt_labels]).to(device, torch.long))
        mask = torch.zeros(n * g, dtype=torch.bool, device=device).index_fill_(0, slots, True)
        return cls(boxes.view(n, g, 4), labels.view(n, g), mask.view(n, g), counts)


def valid_region(meta: dict, input_shape) -> tuple[int, int]:
    """The (h, w) whose priors count as valid: mmdetection's ``pad_shape`` (each image rounded up
    to the data preprocessor's ``pad_size_divisor``; after a pipeline ``Pad``, the padded size),
    so priors over padding inside it are valid, those past it (batch padding) are not."""
    return tuple(int(v) for v in meta.get("pad_shape", meta.get("img_shape", input_shape)))


def _batch_targets_pay(t: Tensor) -> bool:
    """Whether a training step makes its batch's targets in one pass (:meth:`HeadCore.batch_targets`):
    off the CPU, where each operation is a launch. On the CPU the images' own are faster: a batch pads
    every image to the most boxes any has (RetinaNet 640 px, batch 8 with 1-40 boxes: 116 ms per image
    against 760 ms batched, 1 thread)."""
    return t.device.type != "cpu"


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
                   avg_factor: float, breakdown: bool = True) -> ImageLoss:
        """The image's losses, per prior and reduced. ``breakdown=False`` (:meth:`batch_loss_terms`, a
        training step): only ``terms`` is read, so per-prior parts the terms do not need may be left None
        (on a GPU each is launches for nothing)."""
        raise NotImplementedError

    def batch_targets(self, priors: list[Priors], gt_boxes: list[Tensor], gt_labels: list[Tensor], img_shapes,
                      gt_boxes_ignore=None, cls_scores: Tensor | None = None, bbox_preds: Tensor | None = None):
        """The batch's targets in one pass, for a training step (no trace, no assignment statistics):
        ``(joined, avg_parts)``, the images' :meth:`targets` concatenated in prior order as
        :meth:`join_targets` gives them (no assignment or sampling record) and each image's
        :meth:`avg_factor_of`; None where the head or its assigner has no batched form (the step then
        makes each image's targets). On a GPU each operation is a launch: one pass instead of B."""
        return None

    @staticmethod
    def join_targets(targets: list[Targets]) -> Targets:
        """The images' targets concatenated in prior order (image i's prior j at ``i * A + j``), with
        the positives' indices so shifted; no assignment or sampling record."""
        a = int(targets[0].labels.shape[0])
        cat = [torch.cat([getattr(t, name) for t in targets])
               for name in ("labels", "label_weights", "bbox_targets", "bbox_weights", "inside")]
        pos = torch.cat([t.sampling_result.pos_inds + i * a for i, t in enumerate(targets)])
        extras = {k: torch.cat([t.extras[k] for t in targets]) for k in targets[0].extras}
        return Targets(None, _Positives(pos), *cat, extras=extras)

    @staticmethod
    def split_targets(joined: Targets, n: int) -> list[Targets]:
        """Each image's view of joined targets (:meth:`join_targets`, :meth:`batch_targets`) for a
        per-image ``loss_image`` that reads only per-prior targets and the positives' indices (no
        assignment or sampling record)."""
        a = int(joined.labels.shape[0]) // n
        names = ("labels", "label_weights", "bbox_targets", "bbox_weights", "inside")
        pos = joined.sampling_result.pos_inds
        image = pos.div(a, rounding_mode="floor") if a else pos
        return [Targets(None, _Positives(pos[image == i] - i * a), *(getattr(joined, k)[i * a:(i + 1) * a] for k in names),
                        extras={k: v[i * a:(i + 1) * a] for k, v in joined.extras.items()}) for i in range(n)]

    def batch_loss_terms(self, cls_scores: Tensor, bbox_preds: Tensor, priors: list[Priors],
                         targets: list[Targets] | Targets, avg_factor) -> dict[str, Tensor] | None:
        """The batch's named losses in one call: :meth:`loss_image` over the batch's priors, targets and
        positives concatenated (``targets``: each image's, or :meth:`batch_targets`'s joined ones).
        Every term of a registered ``loss_image`` (``BATCHED_LOSSES``) is a per-prior sum over one
        batch-wide normaliser, so this is the images' sum (float order aside); None for the others
        (SSD's hard-negative mining, for one, is per image: its own override). On a GPU each operation is a launch: one
        call instead of B saves B - 1 times the loss's launches."""
        if type(self).loss_image not in BATCHED_LOSSES:
            return None
        a = int(cls_scores.shape[1])
        if isinstance(targets, list):
            if any(not torch.is_tensor(v) or v.shape[:1] != (a,) for t in targets for v in t.extras.values()):
                return None                              # an extra that is not one value per prior
            targets = self.join_targets(targets)
        loss = self.loss_image(cls_scores.reshape(-1, cls_scores.shape[-1]),
                               bbox_preds.reshape(-1, bbox_preds.shape[-1]), _PriorBoxes(priors), targets, avg_factor,
                               breakdown=False)
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
