"""YOLOX's head logic (Ge et al. 2021, "YOLOX: Exceeding YOLO Series in 2021"), as mmdetection 3.3.0's
``YOLOXHead.loss_by_feat`` / ``_get_targets_single`` / ``predict_by_feat`` / ``_bbox_decode``.

Layout of the head outputs, per image, in point order (level, row, column; one point per cell):

- ``cls_scores`` (Tensor[A, C + 1]): the C class logits, then the objectness logit in the last
  column (as FCOS carries its centerness);
- ``bbox_preds`` (Tensor[A, 4]): the raw regression ``(dx, dy, log w, log h)`` in stride units;
  :meth:`YOLOXHeadCore.decode` makes xyxy boxes of it around the prior ``(x, y)``.

Priors are ``MlvlPointGenerator(strides, offset=0)`` points ``[x, y, stride, stride]`` at the
cells' TOP-LEFT corners (boxes are regressed from there). SimOTA judges the cell centres: it gets
the points shifted by half a stride (``offset_priors``), the predictions' joint scores
``sqrt(sigmoid(class) x sigmoid(objectness))`` and their decoded boxes.

Losses, all normalised by the batch's ``max(reduce_mean(number of positives), 1)``:
``loss_cls`` (sigmoid cross-entropy summed over classes, positives only, target the one-hot
class times the positive's predicted-box IoU), ``loss_bbox`` (5 x (1 - IoU^2) of the decoded
boxes, positives only), ``loss_obj`` (sigmoid cross-entropy of the objectness of EVERY point,
target 1 at the positives) and, once switched on (``use_l1``: mmdetection's
``YOLOXModeSwitchHook``, the last ``num_last_epochs`` epochs), ``loss_l1`` of the raw regression
against the GT's ``((cx - x) / s, (cy - y) / s, log(w / s + 1e-8), log(h / s + 1e-8))``.

Test time: score = max class sigmoid x objectness sigmoid of each point (one candidate per
point, its best class), kept when ``>= score_thr``; boxes decoded (not clipped); per-class NMS
(``test_cfg.nms``, mmcv's ``batched_nms``). mmdetection's YOLOXHead applies no ``nms_pre``,
``min_bbox_size`` or ``max_per_img`` (a ``max_per_img`` in ``test_cfg`` is not read there, nor
here; it can be given as an override, e.g. by the window's NMS view).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..assigners import SimOTAAssigner
from ..postprocess import Stage, _nms_stages
from ..samplers import PseudoSampler
from .base import BATCHED_LOSSES, HeadCore, ImageLoss, PaddedGTs, Targets, _Positives, batch_positives, same_grid

__all__ = ["YOLOXHeadCore", "YOLOXImageLoss", "MODE_SWITCH_HOOK", "mode_switch_epoch", "apply_mode_switch",
           "yolox_decode", "offset_priors", "l1_targets"]

MODE_SWITCH_HOOK = "YOLOXModeSwitchHook"
_PRIOR_LOGIT = -4.59511985013459          # bias_init_with_prob(0.01)


def yolox_decode(priors: Tensor, bbox_preds: Tensor) -> Tensor:
    """mmdetection's ``YOLOXHead._bbox_decode``: centre ``(dx, dy) x stride + (x, y)``, size
    ``exp(log w, log h) x stride``, as xyxy. ``priors`` (A, 4) ``[x, y, sw, sh]``, preds (..., A, 4)."""
    xys = (bbox_preds[..., :2] * priors[:, 2:]) + priors[:, :2]
    whs = bbox_preds[..., 2:].exp() * priors[:, 2:]
    return torch.stack([xys[..., 0] - whs[..., 0] / 2, xys[..., 1] - whs[..., 1] / 2,
                        xys[..., 0] + whs[..., 0] / 2, xys[..., 1] + whs[..., 1] / 2], -1)


def offset_priors(points: Tensor) -> Tensor:
    """(A, 4) the points moved to their cell centres, ``[x + sw / 2, y + sh / 2, sw, sh]``: what
    SimOTA assigns on (``_get_targets_single``'s ``offset_priors``)."""
    return torch.cat([points[:, :2] + points[:, 2:] * 0.5, points[:, 2:]], dim=-1)


def l1_targets(gt_boxes: Tensor, points: Tensor, eps: float = 1e-8) -> Tensor:
    """(P, 4) ``_get_l1_target``: the GT centre's offset from the (uncentred) point in strides and
    ``log(size / stride + eps)``."""
    cxcy = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    wh = gt_boxes[:, 2:] - gt_boxes[:, :2]
    out = gt_boxes.new_zeros((gt_boxes.shape[0], 4))
    out[:, :2] = (cxcy - points[:, :2]) / points[:, 2:]
    out[:, 2:] = torch.log(wh / points[:, 2:] + eps)
    return out


@dataclass
class YOLOXImageLoss(ImageLoss):
    """:class:`ImageLoss` plus the objectness loss of every point and the L1 loss of the positives
    (when on), each normalised so that its per-prior sum is the term."""

    obj_per_prior: Tensor | None = None
    l1_per_prior: Tensor | None = None

    def extra_per_prior(self) -> dict[str, Tensor]:
        """The terms beyond class and box, per prior (the trace's loss breakdown)."""
        out = {} if self.obj_per_prior is None else {"loss_obj": self.obj_per_prior}
        if self.l1_per_prior is not None:
            out["loss_l1"] = self.l1_per_prior
        return out


class YOLOXHeadCore(HeadCore):
    """YOLOXHead: offset-0 points, SimOTA on the head's own joint scores and decoded boxes, IoU-aware
    class targets, objectness over every point, IoU (square) loss, optional L1 loss; test time
    class x objectness, one candidate per point, mmcv's batched NMS."""

    regresses_distances = False     # point priors, but a raw (dx, dy, log w, log h), not distances

    def __init__(self, *, num_classes, prior_generator, featmap_rule, assigner, loss_cls, loss_bbox, loss_obj,
                 loss_l1, sampler=None, test_cfg=None, train_cfg=None, use_l1: bool = False):
        self.num_classes = int(num_classes)
        self.prior_generator, self.featmap_rule = prior_generator, featmap_rule
        self.assigner, self.sampler = assigner, sampler or PseudoSampler()
        self.loss_cls, self.loss_bbox, self.loss_obj, self.loss_l1 = loss_cls, loss_bbox, loss_obj, loss_l1
        self.score_layout = "sigmoid+objectness"
        self.test_cfg, self.train_cfg = dict(test_cfg or {}), dict(train_cfg or {})
        self.use_l1 = bool(use_l1)        # mmdetection's flag, set by YOLOXModeSwitchHook
        self.l1_from_epoch: int | None = None   # the hook's switch epoch (0-based), when a run has one
        self.epoch: int | None = None

    # ------------------------------------------------------------------ training stage
    def set_epoch(self, epoch: int | None) -> None:
        """The training epoch (0-based; the trainer calls this at each epoch's start). From
        ``l1_from_epoch`` on the L1 loss is on (mmdetection's hook switches once and for good;
        resuming a run past that epoch switches it again)."""
        self.epoch = None if epoch is None else int(epoch)
        if self.l1_from_epoch is not None and self.epoch is not None and self.epoch >= self.l1_from_epoch:
            self.use_l1 = True

    # ------------------------------------------------------------------ priors, decoding
    def featmap_sizes(self, input_shape):
        return self.featmap_rule(input_shape)

    def cls_channels(self) -> int:
        return self.num_classes + 1              # + the objectness logit

    def needs_predictions(self) -> bool:
        return True

    def decode(self, priors: Tensor, bbox_preds: Tensor, max_shape=None) -> Tensor:
        """``_bbox_decode`` (YOLOX never clips to the image: ``max_shape`` is not used)."""
        return yolox_decode(priors, bbox_preds)

    # ------------------------------------------------------------------ targets and loss
    def targets(self, priors, gt_boxes, gt_labels, img_shape, gt_boxes_ignore=None, cls_scores=None,
                bbox_preds=None) -> Targets:
        """``_get_targets_single``: SimOTA on the points' cell centres with the detached joint scores
        and decoded boxes. Every point takes part (YOLOX uses no valid flags). ``extras``:
        ``obj_targets`` (A,) 1 at the positives, ``iou_targets`` (A,) the positives' predicted-box
        IoU with their GT (the class target's value), ``l1_targets`` (A, 4) at the positives."""
        if cls_scores is None or bbox_preds is None:
            cls_scores, bbox_preds = self.init_predictions(priors)
        points = priors.tensor
        # in float32 and outside autocast (mixed-precision training): SimOTA's class cost is a plain
        # binary_cross_entropy of probabilities, which autocast refuses
        with torch.autocast(device_type=points.device.type, enabled=False):
            cls_scores, bbox_preds = cls_scores.detach().float(), bbox_preds.detach().float()
            decoded = self.decode(points, bbox_preds)
            scores = (cls_scores[:, :self.num_classes].sigmoid()
                      * cls_scores[:, self.num_classes].unsqueeze(1).sigmoid()).sqrt()
            assign_result = self.assigner.assign(offset_priors(points), gt_boxes, gt_labels, pred_scores=scores,
                                                 pred_boxes=decoded, gt_boxes_ignore=gt_boxes_ignore)
        sampling = self.sampler.sample(assign_result, points, gt_boxes)
        a, pos = len(priors), sampling.pos_inds
        labels = points.new_full((a,), self.num_classes, dtype=torch.long)
        label_weights = points.new_zeros(a)           # the class loss takes the positives only
        bbox_targets = points.new_zeros((a, 4))
        bbox_weights = points.new_zeros((a, 4))
        obj_targets = points.new_zeros(a)
        iou_targets = points.new_zeros(a)
        l1 = points.new_zeros((a, 4))
        if pos.numel() > 0:
            labels[pos] = gt_labels[sampling.pos_assigned_gt_inds].long()
            label_weights[pos] = 1.0
            bbox_targets[pos] = sampling.pos_gt_boxes
            bbox_weights[pos] = 1.0
            obj_targets[pos] = 1.0
            iou_targets[pos] = assign_result.max_overlaps[pos].to(iou_targets.dtype)
            l1[pos] = l1_targets(sampling.pos_gt_boxes, points[pos])
        inside = torch.ones(a, dtype=torch.bool, device=points.device)
        return Targets(assign_result, sampling, labels, label_weights, bbox_targets, bbox_weights, inside,
                       extras={"obj_targets": obj_targets, "iou_targets": iou_targets, "l1_targets": l1})

    def batch_targets(self, priors, gt_boxes, gt_labels, img_shapes, gt_boxes_ignore=None, cls_scores=None,
                      bbox_preds=None):
        """:meth:`targets` of every image in one pass (SimOTA's batched form,
        :meth:`~detengine.assigners.SimOTAAssigner.assign_batch`)."""
        if not (type(self).targets is YOLOXHeadCore.targets and type(self.assigner) is SimOTAAssigner
                and type(self.sampler) is PseudoSampler and len(priors) > 0 and same_grid(priors)
                and cls_scores is not None and bbox_preds is not None):
            return None
        points, c = priors[0].tensor, self.num_classes
        n, a = len(priors), int(points.shape[0])
        inside = torch.ones((n, a), dtype=torch.bool, device=points.device)        # YOLOX: every point
        gts = PaddedGTs.of(gt_boxes, gt_labels, points)
        with torch.autocast(device_type=points.device.type, enabled=False):        # as targets()
            cls_scores, bbox_preds = cls_scores.detach().float(), bbox_preds.detach().float()
            decoded = self.decode(points, bbox_preds)
            scores = (cls_scores[..., :c].sigmoid() * cls_scores[..., c].unsqueeze(-1).sigmoid()).sqrt()
            gt_inds, ious = self.assigner.assign_batch(offset_priors(points), inside, gts, pred_scores=scores,
                                                       pred_boxes=decoded)
        pos, img, prior, gt = batch_positives(gt_inds)
        labels = torch.full((n * a,), c, dtype=torch.long, device=points.device)
        labels[pos] = gts.labels[img, gt]
        ones = points.new_zeros(n * a).index_fill_(0, pos, 1.0)
        bbox_targets = points.new_zeros((n * a, 4))
        pos_boxes = gts.boxes[img, gt]
        bbox_targets[pos] = pos_boxes
        iou_targets = points.new_zeros(n * a)
        iou_targets[pos] = ious.reshape(-1)[pos].to(iou_targets.dtype)
        l1 = points.new_zeros((n * a, 4))
        l1[pos] = l1_targets(pos_boxes, points[prior])
        joined = Targets(None, _Positives(pos), labels, ones, bbox_targets, ones[:, None].expand(-1, 4).clone(),
                         inside.reshape(-1), extras={"obj_targets": ones.clone(), "iou_targets": iou_targets,
                                                     "l1_targets": l1})
        return joined, [float(v) for v in torch.bincount(img, minlength=n).tolist()]

    def avg_factor_of(self, targets: Targets) -> float:
        return float(targets.num_pos)

    @staticmethod
    def reduce_avg_factor(values, across_ranks: bool = False) -> float:
        """``num_total_samples = max(reduce_mean(number of positives in the batch), 1)``; the mean
        over the ranks only under torchrun (``across_ranks``), in float32 as there."""
        from ..train.distributed import is_distributed, reduce_mean
        total = torch.tensor(float(sum(values)), dtype=torch.float32)
        if across_ranks and is_distributed():
            total = reduce_mean(total)
        return max(float(total), 1.0)

    def loss_image(self, cls_scores, bbox_preds, priors, targets, avg_factor, breakdown=True) -> YOLOXImageLoss:
        """This image's share of ``loss_by_feat``: each term is the image's sum (times the loss
        weight) over the batch normaliser, so the images' terms add up to mmdetection's."""
        n = float(avg_factor)
        c = self.num_classes
        cls_scores, bbox_preds = cls_scores.float(), bbox_preds.float()   # half under autocast: exp() in float32
        logits, obj = cls_scores[:, :c], cls_scores[:, c]
        decoded = self.decode(priors.tensor, bbox_preds)
        pos = targets.sampling_result.pos_inds
        a = len(priors)
        obj_el = self.loss_obj.elementwise(obj, targets.extras["obj_targets"])                 # (A,)
        obj_per_prior = cls_raw = cls_per_prior = bbox_per_prior = l1_per_prior = None
        if breakdown:
            obj_per_prior = obj_el * self.loss_obj.loss_weight / n
            cls_raw = logits.new_zeros(a)
            cls_per_prior, bbox_per_prior = logits.new_zeros(a), logits.new_zeros(a)
            l1_per_prior = logits.new_zeros(a) if self.use_l1 else None
        if pos.numel() > 0:
            onehot = torch.nn.functional.one_hot(targets.labels[pos], c).to(logits.dtype)
            cls_target = onehot * targets.extras["iou_targets"][pos].unsqueeze(-1)
            cls_el = self.loss_cls.elementwise(logits[pos], cls_target).sum(-1)                 # (P,)
            bbox_el = self.loss_bbox.elementwise(decoded[pos], targets.bbox_targets[pos])       # (P,)
            if breakdown:
                cls_raw = cls_raw.index_put((pos,), cls_el.detach())
                cls_per_prior = cls_per_prior.index_put((pos,), cls_el * self.loss_cls.loss_weight / n)
                bbox_per_prior = bbox_per_prior.index_put((pos,), bbox_el * self.loss_bbox.loss_weight / n)
            loss_cls = self.loss_cls.loss_weight * cls_el.sum() / n
            loss_bbox = self.loss_bbox.loss_weight * bbox_el.sum() / n
        else:  # no positive: zeros that keep both branches in the graph, as the reference
            loss_cls, loss_bbox = logits.sum() * 0, decoded.sum() * 0
        terms = {"loss_cls": loss_cls, "loss_bbox": loss_bbox,
                 "loss_obj": self.loss_obj.loss_weight * obj_el.sum() / n}
        if self.use_l1:
            if pos.numel() > 0:
                l1_el = self.loss_l1.elementwise(bbox_preds[pos], targets.extras["l1_targets"][pos]).sum(-1)
                if breakdown:
                    l1_per_prior = l1_per_prior.index_put((pos,), l1_el * self.loss_l1.loss_weight / n)
                terms["loss_l1"] = self.loss_l1.loss_weight * l1_el.sum() / n
            else:
                terms["loss_l1"] = bbox_preds.sum() * 0
        return YOLOXImageLoss(cls_per_prior, bbox_per_prior, cls_raw, terms, n,
                              decoded_pred_boxes=decoded.detach() if breakdown else None,
                              obj_per_prior=obj_per_prior, l1_per_prior=l1_per_prior)

    # ------------------------------------------------------------------ test time
    def test_config(self, **overrides) -> dict:
        """``score_thr`` (0.01, the config's), ``iou_threshold`` / ``class_agnostic`` of
        ``test_cfg.nms``; ``max_per_img`` only as an override (mmdetection's YOLOXHead has none)."""
        t = self.test_cfg
        nms = t.get("nms") or {}
        cfg = dict(score_thr=t.get("score_thr", 0.01), iou_threshold=nms.get("iou_threshold", 0.65))
        if nms.get("class_agnostic"):
            cfg["class_agnostic"] = True
        unknown = set(overrides) - {"score_thr", "iou_threshold", "class_agnostic", "max_per_img"}
        if unknown:
            raise ValueError(f"unknown post-processing parameters {sorted(unknown)}; known: "
                             f"['class_agnostic', 'iou_threshold', 'max_per_img', 'score_thr']")
        cfg.update(overrides)
        return cfg

    def predict(self, cls_scores, bbox_preds, priors, img_shape, record: bool = True, **overrides):
        """``predict_by_feat`` of one image (``rescale=False``, ``with_nms=True``) with the record:
        each point's best class, kept when class x objectness >= ``score_thr``, batched NMS.
        ``raw_stage`` is (A, 1): one candidate per point."""
        cfg = self.test_config(**overrides)
        c = self.num_classes
        probs = cls_scores[:, :c].sigmoid()
        obj = cls_scores[:, c].sigmoid()
        max_scores, labels = torch.max(probs, 1)
        valid = obj * max_scores >= cfg["score_thr"]
        prior_idx = valid.nonzero().view(-1)
        scores = max_scores[prior_idx] * obj[prior_idx]
        boxes = self.decode(priors.tensor[prior_idx], bbox_preds[prior_idx])
        counts = {"raw": int(probs.shape[0]), "score_thr": int(prior_idx.numel())}
        max_per_img = cfg.get("max_per_img")
        result = _nms_stages(boxes, scores, labels[prior_idx], prior_idx, None, cfg["iou_threshold"], max_per_img,
                             class_agnostic=bool(cfg.get("class_agnostic", False)), counts=counts, record=record)
        result.counts.pop("min_bbox_size", None)
        if max_per_img is None:
            result.counts.pop("max_per_img", None)
        raw_stage = torch.full((probs.shape[0], 1), Stage.BELOW_SCORE_THR, dtype=torch.uint8, device=probs.device)
        raw_stage[prior_idx, 0] = result.cand_stage
        result.raw_stage = raw_stage
        result.params = dict(score_layout=self.score_layout, score_factor="objectness", record=record, **cfg)
        return result

    # ------------------------------------------------------------------ untrained outputs
    def init_predictions(self, priors):
        """A freshly initialised YOLOXHead: class and objectness biases ``bias_init_with_prob(0.01)``
        (logits -4.595); the regression taken as 0 (boxes one stride wide at each point; the
        Kaiming-initialised weights give small values around 0)."""
        a = len(priors)
        return (priors.tensor.new_full((a, self.cls_channels()), _PRIOR_LOGIT), priors.tensor.new_zeros((a, 4)))

    def empty_predictions(self, priors):
        a = len(priors)
        return priors.tensor.new_zeros((a, self.cls_channels())), priors.tensor.new_zeros((a, 4))


# ---------------------------------------------------------------------- YOLOXModeSwitchHook
def mode_switch_epoch(cfg: dict, max_epochs: int) -> tuple[int | None, tuple[str, ...]]:
    """``custom_hooks``' ``YOLOXModeSwitchHook`` as (the 0-based epoch it switches at, its
    ``skip_type_keys``); (None, ()) without one. mmdetection switches before the first epoch with
    ``epoch + 1 >= max_epochs - num_last_epochs``, i.e. at ``max_epochs - num_last_epochs - 1``
    (so 16 epochs of 300 run with L1 when num_last_epochs is 15), never before epoch 0."""
    hooks = [h for h in cfg.get("custom_hooks") or [] if isinstance(h, dict) and h.get("type") == MODE_SWITCH_HOOK]
    if not hooks:
        return None, ()
    if len(hooks) > 1:
        raise ValueError(f"custom_hooks: more than one {MODE_SWITCH_HOOK}")
    hook = hooks[0]
    unknown = set(hook) - {"type", "num_last_epochs", "skip_type_keys", "priority"}
    if unknown:
        raise ValueError(f"custom_hooks {MODE_SWITCH_HOOK}: unknown arguments {sorted(unknown)}")
    last = int(hook.get("num_last_epochs", 15))
    skip = tuple(hook.get("skip_type_keys", ("Mosaic", "RandomAffine", "MixUp")))
    return max(int(max_epochs) - last - 1, 0), skip


def apply_mode_switch(model, cfg: dict, max_epochs: int) -> list[str]:
    """Carry out ``YOLOXModeSwitchHook`` for a run of ``max_epochs``: the YOLOX head core turns its
    L1 loss on at the hook's epoch (through ``set_epoch``). The hook's other half, dropping the
    pipeline steps ``skip_type_keys``, is done by the training set when the train pipeline is
    mmdetection's ``MultiImageMixDataset`` (:func:`detengine.train.data.train_stages_for`, as
    mmdetection); a plain ``train_pipeline`` needs a ``PipelineSwitchHook`` at the same epoch.
    Returns notes for the run's log (a hook on a model without a YOLOX head, the steps the wrapper
    skips, steps the hook would drop that no PipelineSwitchHook drops)."""
    epoch, skip = mode_switch_epoch(cfg, max_epochs)
    if epoch is None:
        return []
    core = getattr(model, "core", None)
    if not isinstance(core, YOLOXHeadCore):
        return [f"custom_hooks: {MODE_SWITCH_HOOK} acts on a YOLOXHead only; this model's head is "
                f"{type(core).__name__}: ignored"]
    core.l1_from_epoch = epoch
    notes = [f"{MODE_SWITCH_HOOK}: the L1 box loss is added from epoch {epoch + 1} of {max_epochs}"]
    dataset = (cfg.get("train_dataloader") or {}).get("dataset")
    if isinstance(dataset, dict) and dataset.get("type") == "MultiImageMixDataset":    # mmdetection's own layout
        stepped = {s.get("type") for s in dataset.get("pipeline") or [] if isinstance(s, dict)}
        notes.append(f"{MODE_SWITCH_HOOK}: the MultiImageMixDataset skips {[t for t in skip if t in stepped]} from epoch "
                     f"{epoch + 1} (its skip_type_keys, as mmdetection's hook sets them)")
        return notes
    stepped = [s.get("type") for s in cfg.get("train_pipeline") or [] if isinstance(s, dict)]
    kept = sorted({t for t in stepped if t in skip})
    switches = [h for h in cfg.get("custom_hooks") or [] if isinstance(h, dict) and h.get("type") == "PipelineSwitchHook"]
    if kept and not switches:
        notes.append(f"{MODE_SWITCH_HOOK}: its skip_type_keys {kept} stay in the train pipeline (the pipeline side "
                     f"of the hook is a PipelineSwitchHook here, at switch_epoch={epoch})")
    others = sorted({int(h.get("switch_epoch", -1)) for h in switches} - {epoch})
    if others:
        notes.append(f"{MODE_SWITCH_HOOK} adds the L1 loss at epoch {epoch + 1}, but the PipelineSwitchHook switches "
                     f"the pipeline at epoch {', '.join(str(e + 1) for e in others)} (for {max_epochs} epochs the "
                     f"hook's epoch is switch_epoch={epoch})")
    return notes


BATCHED_LOSSES.add(YOLOXHeadCore.loss_image)
