"""The inspection trace: every stage of a dense head's training targets, loss and
post-processing for one image, in one call.

``inspect(image_shape, gt_boxes, gt_labels, config, predictions=None)`` returns a
:class:`DebugTrace`. The GUI only renders traces; the same head core computes the detector's
training loss, so the trace shows what training does.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor

from .assigners.result import AssignResult
from .boxes import bbox_overlaps, check_boxes
from .builder import build_head_core, default_input_shape
from .config import Config, load_config
from .heads.base import HeadCore, ImageLoss, Targets
from .postprocess import PostprocessResult
from .priors import Priors
from .samplers import SamplingResult

__all__ = ["DebugTrace", "GTCoverage", "inspect", "model_config", "head_core_for"]

_CORE_CACHE: dict[str, HeadCore] = {}


@dataclass
class GTCoverage:
    """How well the priors cover each GT (the "why is my small object never detected?" table).

    best_iou (G,), best_prior (G,) flat index, best_level (G,), best_base_index (G,),
    num_iou_ge_05 / num_iou_ge_04 (G,): priors with IoU >= 0.5 / 0.4 (-1 for point priors),
    num_pos (G,), num_pos_per_level (G, L). :attr:`weak` is the one rule the window and the CLI
    flag GTs by.
    """

    best_iou: Tensor
    best_prior: Tensor
    best_level: Tensor
    best_base_index: Tensor
    num_iou_ge_05: Tensor
    num_iou_ge_04: Tensor
    num_pos: Tensor
    num_pos_per_level: Tensor

    @property
    def weak(self) -> Tensor:
        """(G,) bool: the GT has no positive prior, or (anchor priors) no prior reaches IoU 0.5 with
        it, so it is positive only through a forced / low-quality match if at all."""
        return (self.num_pos == 0) | (self.num_iou_ge_05 == 0)

    def rows(self) -> list[dict]:
        """One plain dict per GT."""
        weak = self.weak
        return [dict(gt=i, weak=bool(weak[i]), best_iou=float(self.best_iou[i]), best_prior=int(self.best_prior[i]),
                     best_level=int(self.best_level[i]), best_base_index=int(self.best_base_index[i]),
                     num_iou_ge_05=int(self.num_iou_ge_05[i]), num_iou_ge_04=int(self.num_iou_ge_04[i]),
                     num_pos=int(self.num_pos[i]), num_pos_per_level=self.num_pos_per_level[i].tolist())
                for i in range(int(self.best_iou.shape[0]))]


@dataclass
class DebugTrace:
    """Everything the debug views draw for one image. Shapes: A priors, G GTs, L levels."""

    model_cfg: dict
    head_type: str
    num_classes: int
    score_layout: str
    input_shape: tuple[int, int]
    pad_shape: tuple[int, int] | None
    priors: Priors
    gt_boxes: Tensor
    gt_labels: Tensor
    gt_boxes_ignore: Tensor
    assign_result: AssignResult
    sampling_result: SamplingResult
    targets: Targets
    assigner_name: str
    assigner_params: dict
    predictions_source: str | None = None
    cls_scores: Tensor | None = field(default=None, repr=False)
    bbox_preds: Tensor | None = field(default=None, repr=False)
    loss: ImageLoss | None = None
    postprocess: PostprocessResult | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @cached_property
    def coverage(self) -> GTCoverage:
        """Per-GT coverage table (derived from the assignment on first use)."""
        ar = self.assign_result
        return coverage(self.priors, self.gt_boxes, ar, ar.extras.get("iou"))

    @cached_property
    def loss_breakdown(self) -> dict | None:
        """Loss per level, per GT, positives vs negatives (derived from ``loss`` on first use)."""
        if self.loss is None:
            return None
        return loss_breakdown(self.loss, self.priors, self.assign_result, int(self.gt_boxes.shape[0]))

    @cached_property
    def iou(self) -> Tensor:
        """(G, A) IoU of every GT with every prior: the assigner's own matrix when it kept one."""
        iou = self.assign_result.extras.get("iou")
        g, a = len(self.gt_boxes), len(self.priors)
        if iou is not None and tuple(iou.shape) == (g, a):
            return iou
        return bbox_overlaps(self.gt_boxes, self.priors.boxes) if g and a else torch.zeros(g, a)

    @property
    def hard_negative_mask(self) -> Tensor | None:
        return None if self.loss is None else self.loss.hard_negative_mask

    def hard_negatives(self) -> list[dict]:
        """The negatives hard-negative mining picked (SSD), hardest first: one dict each with
        ``prior``, ``level``, ``rank`` (1 = the largest CE), ``ce`` (its un-normalised cross
        entropy), ``loss`` (its share of ``loss_cls``), ``best_gt`` / ``best_iou`` (the GT it
        overlaps most: why it is a negative), ``class`` / ``score`` (the class the model gives it,
        background excluded, and that class's softmax probability); and the same for every row:
        ``mined`` (how many), ``negatives`` (the pool), ``cut_ce`` (the largest CE left unmined,
        what a negative needs to beat to be mined; None when every negative was). Empty without
        a loss or mining."""
        hard = self.hard_negative_mask
        if hard is None or not bool(hard.any()):
            return []
        ce = self.loss.cls_raw.detach().float()
        mined = hard.nonzero().view(-1)
        mined = mined[torch.argsort(ce[mined], descending=True, stable=True)]
        negatives = self.assign_result.gt_inds == 0
        left = negatives & ~hard
        cut = float(ce[left].max()) if bool(left.any()) else None
        iou = self.iou
        if len(self.gt_boxes):
            best_iou, best_gt = iou[:, mined].max(0)
        else:
            best_iou, best_gt = torch.zeros(len(mined)), torch.full((len(mined),), -1)
        if self.cls_scores is not None:
            probs = self.cls_scores[mined].float().softmax(-1)
            probs = probs[:, 1:] if self.score_layout == "softmax_bg_first" else probs[:, :self.num_classes]
        else:
            probs = torch.zeros(len(mined), max(self.num_classes, 1))
        score, cls = probs.max(-1)
        return [dict(prior=int(p), level=int(self.priors.level[p]), rank=r + 1, ce=float(ce[p]),
                     loss=float(self.loss.cls_per_prior[p]), best_gt=int(best_gt[r]) if len(self.gt_boxes) else None,
                     best_iou=float(best_iou[r]), **{"class": int(cls[r])}, score=float(score[r]),
                     mined=len(mined), negatives=int(negatives.sum()), cut_ce=cut)
                for r, p in enumerate(mined.tolist())]

    def summary(self) -> str:
        """A readable multi-line report (what ``python -m detengine inspect`` prints)."""
        from .report import trace_summary
        return trace_summary(self)

    def to_json_dict(self) -> dict:
        """The whole trace as JSON-ready plain data (schema in the README)."""
        from .report import trace_to_json
        return trace_to_json(self)


def model_config(config) -> dict:
    """The ``model`` dict of a config given as a path, a :class:`Config`, a full config dict
    or a model dict."""
    if isinstance(config, (str, Path)):
        config = load_config(config)
    if isinstance(config, Config):
        config = config.to_dict()
    if not isinstance(config, dict):
        raise TypeError(f"config must be a path, Config or dict, got {type(config).__name__}")
    if "model" in config:
        return config["model"]
    if "bbox_head" in config:
        return config
    raise ValueError(f"config has no 'model' (keys: {sorted(config)})")


def head_core_for(model_cfg: dict) -> HeadCore:
    """Build (and cache, keyed by the config's text) the head core of a model config."""
    key = repr(model_cfg)
    core = _CORE_CACHE.get(key)
    if core is None:
        if len(_CORE_CACHE) > 16:
            _CORE_CACHE.clear()
        core = _CORE_CACHE[key] = build_head_core(model_cfg)
    return core


def _check_gt(gt_boxes, gt_labels, num_classes: int) -> tuple[Tensor, Tensor]:
    boxes = check_boxes(torch.as_tensor(gt_boxes, dtype=torch.float32), "gt_boxes")
    labels = torch.as_tensor(gt_labels, dtype=torch.long).reshape(-1)
    if labels.shape[0] != boxes.shape[0]:
        raise ValueError(f"gt_labels has {labels.shape[0]} entries for {boxes.shape[0]} boxes")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(f"gt_labels must be in [0, {num_classes}), got {labels[bad].tolist()}")
    return boxes, labels


def _check_predictions(predictions, num_priors: int, channels: int, reg_channels: int = 4) -> tuple[Tensor, Tensor]:
    if isinstance(predictions, dict):
        cls, reg = predictions["cls_scores"], predictions["bbox_preds"]
    else:
        cls, reg = predictions
    cls, reg = torch.as_tensor(cls, dtype=torch.float32), torch.as_tensor(reg, dtype=torch.float32)
    if tuple(cls.shape) != (num_priors, channels):
        raise ValueError(f"cls_scores must be (A, K) = {(num_priors, channels)}, got {tuple(cls.shape)}")
    if tuple(reg.shape) != (num_priors, reg_channels):
        raise ValueError(f"bbox_preds must be (A, {reg_channels}) = {(num_priors, reg_channels)}, got {tuple(reg.shape)}")
    for name, t in (("cls_scores", cls), ("bbox_preds", reg)):
        if bool(torch.isfinite(t.sum())):
            continue  # one reduction; the count below only runs when something is off
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise ValueError(f"{name} has {bad} NaN or infinite values: the model's outputs have diverged")
    return cls, reg


def _reg_channels(core: HeadCore) -> int:
    """Regression channels per prior: 4, or a head's own (GFL: 4 distributions of reg_max + 1 bins)."""
    return core.reg_channels() if hasattr(core, "reg_channels") else 4


def random_predictions(core: HeadCore, priors: Priors, seed: int = 0, cls_std: float = 1.0,
                       reg_std: float = 0.5) -> tuple[Tensor, Tensor]:
    """Seeded random head outputs (N(0, std) logits and regression; RTMDet: positive distances
    around one stride; YOLOX: its raw (dx, dy, log w, log h) as drawn; TOOD, whose head gives
    probabilities and boxes: the logits' sigmoid, and the anchors moved by N(0, std) strides), for
    looking at the loss and NMS stages without a model."""
    g = torch.Generator().manual_seed(seed)
    a = len(priors)
    cls = torch.randn(a, core.cls_channels(), generator=g) * cls_std
    reg = torch.randn(a, _reg_channels(core), generator=g) * reg_std
    if getattr(core, "score_layout", None) == "probability":
        cls = cls.sigmoid()
    if getattr(core, "predicts_boxes", False):
        reg = priors.tensor + reg * priors.prior_strides.repeat(1, 2)
    elif priors.is_point and getattr(core, "regresses_distances", True):
        reg = priors.tensor[:, 2:3] * torch.exp(reg)
    return cls, reg


def coverage(priors: Priors, gt_boxes: Tensor, assign_result: AssignResult, iou: Tensor | None) -> GTCoverage:
    """Per-GT best prior and positive counts. ``iou`` (G, A) if already computed."""
    g, levels = gt_boxes.shape[0], priors.num_levels
    pos = assign_result.gt_inds > 0
    per_level = torch.zeros((g, levels), dtype=torch.long, device=gt_boxes.device)
    if g and pos.any():
        gt_of = assign_result.gt_inds[pos] - 1
        flat = gt_of * levels + priors.level[pos]
        per_level = torch.bincount(flat, minlength=g * levels).view(g, levels)
    if iou is None or iou.shape != (g, len(priors)):
        iou = bbox_overlaps(gt_boxes, priors.boxes)
    if g == 0 or len(priors) == 0:
        z = torch.zeros(g, dtype=torch.long, device=gt_boxes.device)
        return GTCoverage(z.float(), z, z, z, z, z, per_level.sum(1), per_level)
    best_iou, best = iou.max(dim=1)
    n05 = (iou >= 0.5).sum(1)
    n04 = (iou >= 0.4).sum(1)
    if priors.is_point:
        n05, n04 = torch.full_like(n05, -1), torch.full_like(n04, -1)
    return GTCoverage(best_iou, best, priors.level[best], priors.base_index[best], n05, n04,
                      per_level.sum(1), per_level)


def loss_breakdown(loss: ImageLoss, priors: Priors, assign_result: AssignResult, num_gts: int) -> dict:
    """Per level, per GT, positive vs negative shares; every part sums to the terms. Heads with
    more terms (FCOS / ATSS ``loss_centerness``, GFL ``loss_dfl``) add them per level and per GT
    from their loss's ``extra_per_prior()``."""
    pos = assign_result.gt_inds > 0
    per_prior = {"loss_cls": loss.cls_per_prior, "loss_bbox": loss.bbox_per_prior}
    if hasattr(loss, "extra_per_prior"):
        per_prior.update(loss.extra_per_prior())
    names = list(per_prior)
    stacked = torch.stack([per_prior[k].detach().float() for k in names])           # (T, A)
    per_gt = stacked.new_zeros((len(names), num_gts))
    if num_gts and pos.any():
        per_gt.index_add_(1, assign_result.gt_inds[pos] - 1, stacked[:, pos])
    per_level = stacked.new_zeros((len(names), priors.num_levels)).index_add_(1, priors.level, stacked)
    cls = stacked[0]
    return {
        "terms": {k: float(v.detach()) for k, v in loss.terms.items()},
        "total": float(sum(float(v.detach()) for v in loss.terms.values())),
        "per_level": {k: per_level[i].tolist() for i, k in enumerate(names)},
        "per_gt": {k: per_gt[i].tolist() for i, k in enumerate(names)},
        "cls_positive": float(cls[pos].sum()), "cls_negative": float(cls[~pos].sum()),
        "avg_factor": loss.avg_factor,
    }


def _assigner_of(core: HeadCore):
    """The assigner the head uses now (TOOD's initial epochs: its ``initial_assigner``)."""
    return getattr(core, "active_assigner", core.assigner)


def assemble_trace(model_cfg: dict, core: HeadCore, input_shape, pad_shape, priors: Priors, gt_boxes: Tensor,
                   gt_labels: Tensor, gt_boxes_ignore: Tensor, targets: Targets, cls_scores=None, bbox_preds=None,
                   predictions_source=None, loss: ImageLoss | None = None) -> DebugTrace:
    """A :class:`DebugTrace` from stages already computed (by :func:`inspect` or a detector's loss)."""
    detach = (lambda t: None if t is None else t.detach())
    return DebugTrace(model_cfg, model_cfg["bbox_head"]["type"], core.num_classes, core.score_layout,
                      tuple(int(v) for v in input_shape), tuple(pad_shape) if pad_shape else None, priors, gt_boxes,
                      gt_labels, gt_boxes_ignore, targets.assign_result, targets.sampling_result, targets,
                      type(_assigner_of(core)).__name__, dict(vars(_assigner_of(core))), predictions_source,
                      detach(cls_scores), detach(bbox_preds), loss)


def inspect(image_shape, gt_boxes, gt_labels, config, predictions=None, *, gt_boxes_ignore=None,
            pad_shape=None, img_shape=None, featmap_sizes=None, postprocess: bool = True,
            postprocess_overrides=None, model_overrides: dict | None = None) -> DebugTrace:
    """Trace one image through a dense head's target assignment, loss and post-processing.

    Args:
        image_shape: network input ``(h, w)`` in pixels; GT boxes are in these pixels.
        gt_boxes (Tensor[G, 4]) xyxy; gt_labels (Tensor[G]) in ``[0, num_classes)``.
        config: config path, :class:`Config`, full config dict or model dict.
        predictions: ``(cls_scores (A, K), bbox_preds (A, 4))`` flat in prior order, the string
            ``"init"`` (an untrained head's output) or None (targets only; heads whose assigner
            needs predictions then use ``"init"``).
        gt_boxes_ignore (Tensor[I, 4]): crowd / ignored boxes.
        pad_shape: ``(h, w)`` whose priors are valid, mmdetection's ``pad_shape`` (the image rounded
            up to the data preprocessor's divisor; after a pipeline ``Pad``, the padded size); None:
            the whole input.
        img_shape: ``(h, w)`` of mmdetection's ``img_shape`` (the border check of ``allowed_border``
            and the clip of decoded boxes); None: the whole input.
        postprocess: run the post-processing record when predictions are given.
        postprocess_overrides: e.g. ``dict(score_thr=0.3, iou_threshold=0.5, max_per_img=50)``.
        model_overrides: merged into the model config (e.g. a different assigner).
    """
    t0 = time.perf_counter()
    model = model_config(config)
    if model_overrides:
        from .config import merge_dicts
        model = merge_dicts(model, model_overrides)
    core = head_core_for(model)
    shape = tuple(int(v) for v in (image_shape or default_input_shape(model)))
    boxes, labels = _check_gt(gt_boxes, gt_labels, core.num_classes)
    ignore = check_boxes(torch.as_tensor(gt_boxes_ignore if gt_boxes_ignore is not None else torch.zeros(0, 4),
                                         dtype=torch.float32), "gt_boxes_ignore")
    priors = core.priors(shape, pad_shape=pad_shape, featmap_sizes=featmap_sizes)
    t1 = time.perf_counter()
    source = None
    cls, reg = None, None
    if isinstance(predictions, str):
        if predictions != "init":
            raise ValueError(f"predictions must be a (cls, reg) pair, 'init' or None, got {predictions!r}")
        cls, reg = core.init_predictions(priors)
        source = "init"
    elif predictions is not None:
        cls, reg = _check_predictions(predictions, len(priors), core.cls_channels(), _reg_channels(core))
        source = "given"
    elif core.needs_predictions():
        cls, reg = core.init_predictions(priors)
        source = "init"
    img_shape = tuple(int(v) for v in img_shape) if img_shape is not None else shape
    targets = core.targets(priors, boxes, labels, img_shape, gt_boxes_ignore=ignore, cls_scores=cls, bbox_preds=reg)
    t2 = time.perf_counter()
    loss = None
    if cls is not None:
        loss = core.loss_image(cls, reg, priors, targets, core.reduce_avg_factor([core.avg_factor_of(targets)]))
    trace = assemble_trace(model, core, shape, pad_shape, priors, boxes, labels, ignore, targets, cls, reg, source, loss)
    t3 = time.perf_counter()
    if cls is not None and postprocess:
        trace.postprocess = core.predict(cls, reg, priors, img_shape, **(postprocess_overrides or {}))
    t4 = time.perf_counter()
    trace.timings_ms = {"priors": (t1 - t0) * 1e3, "targets": (t2 - t1) * 1e3, "loss": (t3 - t2) * 1e3,
                        "postprocess": (t4 - t3) * 1e3}
    return trace

