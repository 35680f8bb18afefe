"""A dense single-stage detector: backbone -> neck -> head convs, with the head core's logic.

``loss(batch)`` and ``predict(batch)`` call the same :class:`~detengine.heads.base.HeadCore`
methods as :func:`detengine.trace.inspect`, so a trace of a training image shows exactly what the
optimiser sees.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..heads import base as head_base
from ..heads.base import HeadCore, valid_region
from ..postprocess import PostprocessResult

_HALF = (torch.float16, torch.bfloat16)

__all__ = ["DenseDetector", "Detections"]


@dataclass
class Detections:
    """Detections of one image: ``boxes`` (K, 4) xyxy in ORIGINAL image pixels, ``scores`` (K,),
    ``labels`` (K,) contiguous class indices, and the post-processing ``record`` (input pixels)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    record: PostprocessResult
    meta: dict


class DenseDetector(nn.Module):
    """``backbone`` -> ``neck`` (optional) -> ``head`` giving (B, A, K) scores and (B, A, 4) boxes."""

    def __init__(self, *, model_cfg: dict, backbone: nn.Module, neck: nn.Module | None, head: nn.Module,
                 core: HeadCore):
        super().__init__()
        self.model_cfg = model_cfg
        self.backbone, self.neck, self.head = backbone, neck, head
        self.core = core

    @property
    def num_classes(self) -> int:
        return self.core.num_classes

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
        """``images`` (B, 3, H, W) -> scores (B, A, K), regression (B, A, 4), feature sizes per level."""
        feats = self.backbone(images)
        if self.neck is not None:
            feats = self.neck(feats)
        sizes = [tuple(int(v) for v in f.shape[-2:]) for f in feats]
        cls, reg = self.head(feats)
        return cls, reg, sizes

    def priors_for(self, images: Tensor, sizes, metas=None) -> list:
        """Per image priors; valid flags follow each image's ``pad_shape`` (mmdetection's
        ``valid_flags(featmap_sizes, img_meta['pad_shape'])``)."""
        shape = tuple(images.shape[-2:])
        if metas is None:
            return [self.core.priors(shape, featmap_sizes=sizes, device=images.device)] * images.shape[0]
        return [self.core.priors(shape, pad_shape=valid_region(m, shape), featmap_sizes=sizes,
                                 device=images.device) for m in metas]

    def loss(self, batch: dict, trace_index: int | None = None):
        """Named losses summed over the batch (mmdetection's per-image normalisation), and the
        :class:`~detengine.trace.DebugTrace` of image ``trace_index`` when asked for."""
        return self.loss_from_outputs(batch, self(batch["images"]), trace_index)

    def loss_from_outputs(self, batch: dict, outputs, trace_index: int | None = None, across_ranks: bool = False):
        """:meth:`loss` on head outputs already computed (a DistributedDataParallel forward);
        ``across_ranks``: normalise as mmdetection does under torchrun (a collective: every rank
        must make the same call). Under mixed precision (``--amp``) the outputs come in half: the
        targets and losses are computed in float32 with autocast off (mmdetection 2.x's ``force_fp32`` on
        every head's loss; autograd casts the gradients back), so no loss mixes half and float tensors
        (FCOS's, ATSS's, GFL's and TOOD's per-prior sums did, and stopped the step)."""
        cls, reg, sizes = outputs
        if cls.dtype in _HALF or reg.dtype in _HALF or torch.is_autocast_enabled(cls.device.type):
            with torch.autocast(device_type=cls.device.type, enabled=False):
                return self._loss_from_outputs(batch, (cls.float(), reg.float(), sizes), trace_index, across_ranks)
        return self._loss_from_outputs(batch, outputs, trace_index, across_ranks)

    def _loss_from_outputs(self, batch: dict, outputs, trace_index: int | None, across_ranks: bool):
        images = batch["images"]
        cls, reg, sizes = outputs
        priors = self.priors_for(images, sizes, batch.get("metas"))
        shape = tuple(images.shape[-2:])
        ignores = batch.get("gt_boxes_ignore") or [None] * images.shape[0]
        img_shapes = [tuple(m.get("img_shape", shape)) for m in batch.get("metas") or [{}] * images.shape[0]]
        # a training step: the batch's targets and losses in one pass where the head can (on a GPU each
        # operation is a launch); a trace and the assignment statistics need every image's own
        step = trace_index is None and images.shape[0] > 1
        batched = self.core.batch_targets(priors, batch["gt_boxes"], batch["gt_labels"], img_shapes, ignores, cls, reg) \
            if step and head_base._batch_targets_pay(cls) and not getattr(self, "want_assign_stats", False) else None
        if batched is not None:
            targets, parts = batched
            avg = self.core.reduce_avg_factor(parts, across_ranks=across_ranks)
        else:
            targets = [self.core.targets(p, b, l, s, gt_boxes_ignore=ig, cls_scores=c, bbox_preds=r)
                       for p, b, l, s, ig, c, r in zip(priors, batch["gt_boxes"], batch["gt_labels"], img_shapes,
                                                       ignores, cls, reg)]
            avg = self.core.reduce_avg_factor([self.core.avg_factor_of(t) for t in targets], across_ranks=across_ranks)
        losses = self.core.batch_loss_terms(cls, reg, priors, targets, avg) if step else None
        per_image = None
        if losses is None:
            if batched is not None:                          # a head without a batched loss, on joined targets
                targets = self.core.split_targets(targets, images.shape[0])
            per_image = [self.core.loss_image(c, r, p, t, avg) for c, r, p, t in zip(cls, reg, priors, targets)]
            losses = {k: sum(loss.terms[k] for loss in per_image) for k in per_image[0].terms}
        if getattr(self, "want_assign_stats", False):       # the trainer asks at its logging interval
            from ..assign_stats import assignment_stats
            self.assign_stats = assignment_stats(targets, priors, batch["gt_boxes"])
        trace = None
        if trace_index is not None:
            trace = self._trace(batch, trace_index, shape, priors, targets, cls, reg, per_image)
        return losses, trace

    def _trace(self, batch, i, shape, priors, targets, cls, reg, per_image):
        from ..trace import assemble_trace
        ignore = (batch.get("gt_boxes_ignore") or [torch.zeros(0, 4)] * len(priors))[i]
        meta = (batch.get("metas") or [{}] * len(priors))[i]
        return assemble_trace(self.model_cfg, self.core, shape, meta.get("pad_shape"), priors[i], batch["gt_boxes"][i],
                              batch["gt_labels"][i], ignore, targets[i], cls[i], reg[i], "model", per_image[i])

    @torch.no_grad()
    def predict(self, batch: dict, record: bool = True, **overrides) -> list[Detections]:
        """Detections per image, mapped back to original image pixels through each image's meta;
        ``record=False`` (evaluation, export) skips who-suppressed-whom, same detections."""
        from ..data.transforms import boxes_to_original
        images = batch["images"]
        cls, reg, sizes = self(images)
        priors = self.priors_for(images, sizes, batch.get("metas"))
        metas = batch.get("metas") or [{} for _ in priors]
        out = []
        for c, r, p, meta in zip(cls, reg, priors, metas):
            # as mmdetection: decoded boxes clipped at img_shape (after a Pad, the padded size),
            # then rescaled to the original image without clipping again
            img_shape = tuple(meta.get("img_shape", images.shape[-2:]))
            result = self.core.predict(c.float(), r.float(), p, img_shape, record=record, **overrides)
            boxes = boxes_to_original(result.boxes, meta, clip=False) if meta else result.boxes
            out.append(Detections(boxes, result.scores, result.labels, result, meta))
        return out
