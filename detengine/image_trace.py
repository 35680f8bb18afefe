"""Traces of a user's image: its pixels through the config's test pipeline, its boxes mapped to
network-input pixels, and :func:`detengine.trace.inspect` with (optionally) a detector's real
head outputs. What the debug views of the window draw.

:class:`ImageTracer` caches per image what does not change when the user edits boxes or moves a
slider: the network input (resize / pad / normalise) and the detector's head outputs. An edit
then costs one ``inspect`` (a few ms for SSD300).

With a model, the trace's loss is the detector's own: ``inspect`` runs the same head core on the
same outputs with the same normalisation as ``DenseDetector.loss`` on a batch of this one image
(the tests check the totals agree), and post-processing clips to the un-padded input as
``DenseDetector.predict`` does.
"""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .config import merge_dicts
from .data.collate import collate
from .data.transform_base import map_boxes
from .data.transforms import boxes_to_original
from .heads.base import valid_region
from .trace import DebugTrace, head_core_for, inspect

__all__ = ["ImageInput", "ImageTrace", "ImageTracer", "prepare_image", "boxes_to_input", "num_classes_override"]


def num_classes_override(num_classes: int) -> dict:
    """``model_overrides`` that give the head ``num_classes`` classes (the project's)."""
    return {"bbox_head": {"num_classes": int(num_classes)}}


@dataclass
class ImageInput:
    """One image as the network sees it: ``batch`` (1, 3, H, W) padded and normalised, and its
    ``meta`` (``ori_shape``, ``img_shape``, ``pad_shape``, ``homography``) as mmdetection's
    pipeline and data preprocessor leave them."""

    batch: Tensor
    meta: dict

    @property
    def batch_shape(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.batch.shape[-2:])

    @property
    def img_shape(self) -> tuple[int, int]:
        """Where decoded boxes are clipped (after a pipeline ``Pad``: the padded size, as mmdetection)."""
        return tuple(int(v) for v in self.meta["img_shape"])

    @property
    def pad_shape(self) -> tuple[int, int]:
        """The region whose priors are valid (mmdetection's ``pad_shape``)."""
        return valid_region(self.meta, self.batch_shape)

    def to_input(self, boxes) -> Tensor:
        return boxes_to_input(boxes, self.meta)

    def to_original(self, boxes, clip: bool = True) -> np.ndarray:
        """(N, 4) input-pixel boxes -> original pixels; ``clip=False`` keeps priors that reach
        past the image at their true size."""
        t = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        if clip:
            return np.asarray(boxes_to_original(t, self.meta), dtype=np.float64)
        inverse = np.linalg.inv(np.asarray(self.meta["homography"], np.float64)) \
            if self.meta.get("homography") is not None else None
        if inverse is None:
            sx, sy = self.meta.get("scale_factor", (1.0, 1.0))
            return t.double().numpy() / np.array([sx, sy, sx, sy])
        return map_boxes(t.double().numpy(), inverse)

    def points_to_original(self, points) -> np.ndarray:
        """(N, 2) input-pixel points -> original pixels."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        return self.to_original(np.concatenate([p, p], axis=1), clip=False)[:, :2]


def boxes_to_input(boxes, meta: dict) -> Tensor:
    """(N, 4) xyxy original-pixel boxes -> network-input pixels through the pipeline's homography
    (or ``scale_factor``), as the pipeline maps the training boxes."""
    arr = np.asarray(boxes, np.float64).reshape(-1, 4)
    if meta.get("homography") is not None:
        out = map_boxes(arr, np.asarray(meta["homography"], np.float64))
    else:
        sx, sy = meta.get("scale_factor", (1.0, 1.0))
        out = arr * np.array([sx, sy, sx, sy])
    return torch.as_tensor(out, dtype=torch.float32)


def prepare_image(test_pipeline, image: np.ndarray, size_divisor: int | None = None) -> ImageInput:
    """Run the config's test pipeline (with normalisation) on an RGB uint8 (H, W, 3) image."""
    h, w = image.shape[:2]
    results = {"image": image, "boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
               "ignore_boxes": np.zeros((0, 4), np.float32),
               "meta": {"ori_shape": (h, w), "img_shape": (h, w), "homography": np.eye(3)}}
    out = test_pipeline(results)
    batch = collate([out], size_divisor=size_divisor)
    return ImageInput(batch["images"], batch["metas"][0])


@dataclass
class ImageTrace:
    """A :class:`DebugTrace` (network-input pixels) of one image, and how to map it back.

    ``gt_index[k]`` is the position, among the boxes given, of the trace's GT ``k``;
    ``ignore_index`` the same for its ignored (crowd) boxes."""

    trace: DebugTrace
    input: ImageInput
    gt_index: list[int]
    ignore_index: list[int]
    model_name: str | None = None
    parameters: dict = field(default_factory=dict)

    def to_original(self, boxes, clip: bool = True) -> np.ndarray:
        return self.input.to_original(boxes, clip)

    def decoded_predictions(self, indices) -> Tensor:
        """(N, 4) the model's boxes (input pixels) at priors ``indices``, decoded by the head's coder."""
        trace = self.trace
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if trace.bbox_preds is None or idx.numel() == 0:
            return torch.zeros(0, 4)
        core = head_core_for(trace.model_cfg)
        return core.decode(trace.priors.tensor[idx], trace.bbox_preds[idx]).detach()


def coverage_rows(trace: DebugTrace) -> np.ndarray:
    """Per GT of ``trace``: ``(best IoU, positives, w, h in input px)``, an (G, 4) array."""
    cov, gt = trace.coverage, trace.gt_boxes.reshape(-1, 4)
    if not len(gt):
        return np.zeros((0, 4))
    wh = (gt[:, 2:] - gt[:, :2]).numpy()
    return np.stack([cov.best_iou.numpy(), cov.num_pos.numpy(), wh[:, 0], wh[:, 1]], axis=1)


class ImageTracer:
    """Traces images under one config. ``model`` (a ``DenseDetector`` or None) gives the loss
    and NMS views real head outputs; without it, heads whose assigner needs predictions use
    what an untrained head outputs (``"init"``)."""

    def __init__(self, cfg: dict, *, num_classes: int | None = None, model=None, model_name: str | None = None):
        from .train.data import test_pipeline_for

        self.cfg = copy.deepcopy(cfg)
        if num_classes is not None:
            self.cfg["model"] = merge_dicts(self.cfg["model"], num_classes_override(num_classes))
        self.model_cfg = self.cfg["model"]
        self.test_pipeline = test_pipeline_for(self.cfg)
        divisor = (self.model_cfg.get("data_preprocessor") or {}).get("pad_size_divisor")
        self.size_divisor = divisor if divisor and divisor > 1 else None
        self.model = model.eval() if model is not None else None
        self.model_name = model_name
        self._lock = threading.Lock()
        self._inputs: dict = {}
        self._outputs: dict = {}
        self._sizes: dict = {}

    @property
    def num_classes(self) -> int:
        return int(self.model_cfg["bbox_head"]["num_classes"])

    def image_input(self, key, image: np.ndarray) -> ImageInput:
        with self._lock:
            found = self._inputs.get(key)
        if found is None:
            found = prepare_image(self.test_pipeline, image, self.size_divisor)
            with self._lock:
                self._inputs = {key: found}            # one image at a time: the one on screen
        return found

    def input_for_size(self, height: int, width: int) -> ImageInput:
        """The network-input geometry of an image of this size (the test pipeline run on a blank
        image; cached per size, since a dataset has few distinct sizes)."""
        key = ("size", int(height), int(width))
        with self._lock:
            found = self._sizes.get(key)
        if found is None:
            found = prepare_image(self.test_pipeline, np.zeros((int(height), int(width), 3), np.uint8),
                                  self.size_divisor)
            # only the geometry is needed: keep the shape, not the (possibly 13 MB) pixels
            found = ImageInput(torch.zeros(1, 1, 1, 1).expand(found.batch.shape), found.meta)
            with self._lock:
                if len(self._sizes) > 64:
                    self._sizes = {}
                self._sizes[key] = found
        return found

    def coverage_of(self, height: int, width: int, boxes, labels, iscrowd=None, *, model_overrides=None):
        """Targets-only trace of an image known by its size and boxes (the dataset scan): per GT
        ``(best IoU, positives, w, h in input px)`` as an (G, 4) array, plus the input scale."""
        image_input = self.input_for_size(height, width)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        labels = np.asarray(labels, np.int64).reshape(-1)
        crowd = np.zeros(len(boxes), bool) if iscrowd is None else np.asarray(iscrowd, bool).reshape(-1)
        model_cfg = merge_dicts(self.model_cfg, model_overrides) if model_overrides else self.model_cfg
        gt_in = image_input.to_input(boxes[~crowd])
        trace = inspect(image_input.batch_shape, gt_in, torch.as_tensor(labels[~crowd]), {"model": model_cfg}, None,
                        gt_boxes_ignore=image_input.to_input(boxes[crowd]), pad_shape=image_input.pad_shape,
                        img_shape=image_input.img_shape,
                        postprocess=False)
        return coverage_rows(trace), np.flatnonzero(~crowd), trace.priors

    def coverage_with_model(self, key, image: np.ndarray, boxes, labels, iscrowd=None, *, model_overrides=None):
        """:meth:`coverage_of` for an assigner that weighs the predictions: the image's pixels
        through the tracer's model, exactly the trace the Assignment view shows."""
        result = self.trace(key, image, boxes, labels, iscrowd, model_overrides=model_overrides)
        return coverage_rows(result.trace), np.asarray(result.gt_index, np.int64), result.trace.priors

    def assigner_uses_predictions(self, model_overrides: dict | None = None) -> bool:
        """Whether the configured assigner weighs the head's predictions (DynamicSoftLabel)."""
        model_cfg = merge_dicts(self.model_cfg, model_overrides) if model_overrides else self.model_cfg
        return bool(head_core_for(model_cfg).needs_predictions())

    def head_outputs(self, key, image_input: ImageInput):
        """(cls (A, K), reg (A, 4), feature sizes) of the model on this image (cached)."""
        with self._lock:
            found = self._outputs.get(key)
        if found is None:
            with torch.no_grad():
                cls, reg, sizes = self.model(image_input.batch)
            found = (cls[0].float(), reg[0].float(), sizes)
            with self._lock:
                self._outputs = {key: found}
        return found

    def trace(self, key, image: np.ndarray, boxes, labels, iscrowd=None, *, model_overrides: dict | None = None,
              postprocess_overrides: dict | None = None, image_input: ImageInput | None = None) -> ImageTrace:
        """Trace image ``key`` (pixels ``image``) with GT ``boxes`` (N, 4) in original pixels,
        ``labels`` (N,) in ``0..C-1`` and ``iscrowd`` (N,) flags (crowd boxes are ignored).
        ``image_input``: a network input already made (a training sample,
        :func:`detengine.sample_pipeline.sample_input`) instead of the test pipeline on ``image``."""
        if image_input is None:
            image_input = self.image_input(key, image)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        labels = np.asarray(labels, np.int64).reshape(-1)
        crowd = np.zeros(len(boxes), bool) if iscrowd is None else np.asarray(iscrowd, bool).reshape(-1)
        gt_index = [i for i in range(len(boxes)) if not crowd[i]]
        ignore_index = [i for i in range(len(boxes)) if crowd[i]]
        model_cfg = merge_dicts(self.model_cfg, model_overrides) if model_overrides else self.model_cfg
        predictions, sizes = None, None
        if self.model is not None:
            cls, reg, sizes = self.head_outputs(key, image_input)
            predictions = (cls, reg)
        trace = inspect(image_input.batch_shape, image_input.to_input(boxes[gt_index]),
                        torch.as_tensor(labels[gt_index]), {"model": model_cfg}, predictions,
                        gt_boxes_ignore=image_input.to_input(boxes[ignore_index]), pad_shape=image_input.pad_shape,
                        img_shape=image_input.img_shape,
                        featmap_sizes=sizes, postprocess=False)
        if trace.cls_scores is not None:
            core = head_core_for(model_cfg)
            trace.postprocess = core.predict(trace.cls_scores, trace.bbox_preds, trace.priors, image_input.img_shape,
                                             **(postprocess_overrides or {}))
        params = {"model_overrides": model_overrides or {}, "postprocess_overrides": postprocess_overrides or {}}
        return ImageTrace(trace, image_input, gt_index, ignore_index, self.model_name if self.model else None, params)
