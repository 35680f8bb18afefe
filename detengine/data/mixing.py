"""mmdetection 3.3.0's multi-image transforms: the cached ``CachedMosaic`` and ``CachedMixUp``
(RTMDet) and YOLOX's ``Mosaic`` and ``MixUp``, which take their other images from the data set.

``Mosaic`` / ``MixUp`` (:class:`Mosaic`, :class:`MixUp`) run inside mmdetection's
``MultiImageMixDataset``: before the step, the data set calls the transform's ``get_indexes(
dataset)`` (random indexes, drawn from the transform's generator) and puts those samples, loaded
by the data set's own loading steps, into ``results["mix_results"]``.
:class:`detengine.train.data.SeededTrainSet` does that from the sample's seeded generator (the same
draws in any worker and after a resume). The geometry is the cached transforms' (mmdetection's
``CachedMosaic`` subclasses ``Mosaic``; its ``CachedMixUp`` repeats ``MixUp``'s code): one
implementation here, :class:`_MosaicGeometry` and :class:`_MixUpGeometry`.

Both combine the current sample with samples seen shortly before it: "the cache". mmdetection
keeps it as state inside each transform, a list to which every call appends a deep copy of its
input, popping the oldest entry (``random_pop=False``) or a random one (``True``) beyond
``max_cached_images``. Its draws are numpy's ``randint(0, len(cache) - 1)`` (the module does
``from numpy import random``), whose upper bound is exclusive: the newest entry, the current
sample itself, is never drawn nor popped, though it counts in the "more than 4 (1) entries" test.
Here: ``integers(0, len - 1)``. That state belongs to one process (each DataLoader worker has its own)
and is lost when training resumes.

Here the data set may provide the cache instead: ``results["mix_source"]`` (a
:class:`MixSource`) gives the *window* of the inputs that reached this transform at the last
``max_cached_images`` positions of the training order, the current sample last.
:class:`detengine.train.data.SeededTrainSet` computes that window as a pure function of (seed,
epoch, position), so a resumed run or another worker sees the same samples. With
``random_pop=False`` the window is exactly mmdetection's FIFO cache in one process (it fills up
the same way at the start of training, so the first 4 samples skip the mosaic and the first one
the mix-up). With ``random_pop=True`` mmdetection evicts a random entry, which no pure function
of the position reproduces; the sliding window is the deterministic reading of it (the window
holds the newest entries, mmdetection's cache some older survivors). When a later step refuses
a sample (``RandomCrop`` left no box) and another one is fetched, mmdetection's caches have
received the refused attempt as well; here every position contributes one entry (its first
attempt that reached the transform), so after a refetch the samples can differ from a
single-process mmdetection run. Without a ``mix_source`` (a
pipeline applied image by image) each transform keeps mmdetection's own list cache, pops
included, drawing from its generator.

The image is RGB (mmdetection: BGR): a ``pad_val`` triple is read in mmdetection's BGR order and
reversed. Boxes follow mmdetection's float32 arithmetic (``rescale_``, ``translate_``,
``clip_``, ``flip_``) and its ``is_inside`` filter, for the ground truth and ignore boxes alike
(mmdetection keeps ignore boxes among the ground truth with a flag).
"""
from __future__ import annotations

import copy
from typing import Protocol

import cv2
import numpy as np

from .transform_base import RandomTransform, boxes_inside, clip_boxes, compose_homography, select_boxes, set_shapes

__all__ = ["Mosaic", "MixUp", "CachedMosaic", "CachedMixUp", "MixSource", "MixWindow", "copy_results"]

_CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


class MixWindow(Protocol):
    """The cache a cached transform sees: ``len(window)`` entries, oldest first, the current last."""

    def __len__(self) -> int: ...

    def get(self, i: int) -> dict:
        """A deep copy of entry ``i`` (a results dict as it reached the transform)."""


class MixSource(Protocol):
    """What a data set puts into ``results["mix_source"]`` to provide the caches."""

    def window(self, transform, results: dict, size: int) -> MixWindow:
        """The window of ``size`` (fewer at the start of training) entries for ``transform``,
        ending with ``results`` (the input of this call)."""


def copy_results(results: dict) -> dict:
    """A deep copy of ``results`` without its ``mix_source``."""
    return copy.deepcopy({k: v for k, v in results.items() if k != "mix_source"})


def _num_boxes(results: dict) -> int:
    """Ground truth plus ignore boxes: mmdetection's ``len(gt_bboxes)``, which holds both."""
    return len(results["boxes"]) + len(results["ignore_boxes"])


def _bgr_fill(pad_val):
    """``pad_val`` (a number, or a triple in mmdetection's BGR order) for our RGB image."""
    return np.array(pad_val[::-1]) if isinstance(pad_val, (list, tuple)) else pad_val


class _ListCache:
    """mmdetection's cache: append a deep copy, pop index 0 (or a random one) beyond ``size``."""

    def __init__(self, size: int, random_pop: bool):
        self.size, self.random_pop, self.items = size, random_pop, []

    def push(self, results: dict, rng: np.random.Generator) -> _ListCache:
        self.items.append(copy_results(results))
        if len(self.items) > self.size:
            self.items.pop(int(rng.integers(0, len(self.items) - 1)) if self.random_pop else 0)
        return self

    def __len__(self) -> int:
        return len(self.items)

    def get(self, i: int) -> dict:
        return copy.deepcopy(self.items[i])


class _CachedTransform(RandomTransform):
    """A transform that reads a cache of earlier inputs: from ``results["mix_source"]`` or its own."""

    needs_mix_source = True
    min_cached = 2  # fewest entries the transform can use (the current sample included)

    def __init__(self, max_cached_images: int, random_pop: bool, prob: float, rng):
        name = type(self).__name__
        if max_cached_images < self.min_cached:
            raise ValueError(f"{name} max_cached_images must be >= {self.min_cached}, got {max_cached_images}")
        if not 0 <= prob <= 1:
            raise ValueError(f"{name} prob must be in [0, 1], got {prob}")
        super().__init__(rng)
        self.prob = prob
        self.max_cached_images, self.random_pop = int(max_cached_images), bool(random_pop)
        self._cache = _ListCache(self.max_cached_images, self.random_pop)

    def _window(self, results: dict) -> MixWindow:
        source = results.get("mix_source")
        if source is None:
            return self._cache.push(results, self.rng)
        return source.window(self, results, self.max_cached_images)


def _place(boxes: np.ndarray, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """(N, 4) float32 boxes ``* scale + shift`` in float32 (mmdetection's ``rescale_``, ``translate_``)."""
    dx, dy = shift
    return boxes * np.float32(scale) + np.array([dx, dy, dx, dy], np.float32)


def _mix_boxes(results: dict, parts: list[tuple[dict, float, tuple]]) -> tuple[dict, np.ndarray, np.ndarray]:
    """Every part's boxes placed (``(part, scale, shift)``, the current sample first), with labels
    and ids (-1 for boxes from other samples): (arrays, box ids, ignore ids)."""
    meta = results["meta"]
    box_ids = [meta.get("box_ids", np.arange(len(results["boxes"])))]
    ignore_ids = [meta.get("ignore_ids", np.arange(len(results["ignore_boxes"])))]
    for part, _, _ in parts[1:]:
        box_ids.append(np.full(len(part["boxes"]), -1, np.int64))
        ignore_ids.append(np.full(len(part["ignore_boxes"]), -1, np.int64))
    arrays = {key: np.concatenate([_place(p[key], s, t) for p, s, t in parts]).astype(np.float32).reshape(-1, 4)
              for key in ("boxes", "ignore_boxes")}
    arrays["labels"] = np.concatenate([p["labels"] for p, _, _ in parts]).astype(np.int64)
    return arrays, np.concatenate(box_ids), np.concatenate(ignore_ids)


def _source_ids(results: dict) -> list:
    """Image ids whose boxes ``results`` may hold: its own, then those it had mixed in."""
    meta = results["meta"]
    return [meta.get("image_id")] + [i for entry in meta.get("mixed", []) for i in entry["image_ids"]]


def _finish(results: dict, arrays: dict, ids: tuple, hw: tuple, clip: bool, name: str, others: list) -> dict:
    """Clip (``clip``) to ``hw``, keep the boxes inside, record the image ids mixed in (with
    those the other samples had mixed in themselves, e.g. a mix-up of a mosaic)."""
    if clip:
        arrays = dict(arrays, boxes=clip_boxes(arrays["boxes"], hw), ignore_boxes=clip_boxes(arrays["ignore_boxes"], hw))
    results.update(arrays)
    meta = results["meta"]
    meta["box_ids"], meta["ignore_ids"] = ids
    set_shapes(meta, hw)
    meta.setdefault("mixed", []).append({"transform": name, "image_ids": [i for o in others for i in _source_ids(o)]})
    select_boxes(results, boxes_inside(results["boxes"], hw), boxes_inside(results["ignore_boxes"], hw), name)
    return results


def _mix_results(results: dict, count: int, name: str) -> list[dict]:
    """Copies of the ``count`` samples the data set loaded into ``results["mix_results"]``."""
    mix = results.get("mix_results")
    if mix is None:
        raise ValueError(f"{name} takes its other image(s) from the data set (results['mix_results']): put the "
                         f"train pipeline in mmdetection's wrapper, train_dataloader.dataset = "
                         f"dict(type='MultiImageMixDataset', dataset=..., pipeline=train_pipeline)")
    if len(mix) != count:
        raise ValueError(f"{name} needs {count} sample(s) in results['mix_results'], got {len(mix)}")
    return [copy_results(m) for m in mix]


class _MosaicGeometry:
    """mmdetection's ``Mosaic`` geometry, shared by :class:`Mosaic` and :class:`CachedMosaic` (which
    subclasses it in mmdetection): four images around a random centre on a ``2 x img_scale``
    canvas filled with ``pad_val``. Needs ``img_scale``, ``center_ratio_range``,
    ``bbox_clip_border``, ``pad_val`` and ``rng``."""

    def _mosaic(self, results: dict, others: list[dict]) -> dict:
        """``results`` top-left, ``others`` (3) top-right, bottom-left, bottom-right; draws the centre
        ``(int(uniform(center_ratio_range) * w), int(uniform(...) * h))`` for ``img_scale = (w, h)``."""
        w, h = self.img_scale
        canvas = np.full((int(h * 2), int(w * 2), 3), _bgr_fill(self.pad_val), dtype=results["image"].dtype)
        center_x = int(self.rng.uniform(*self.center_ratio_range) * w)
        center_y = int(self.rng.uniform(*self.center_ratio_range) * h)
        parts = [(part, *self._paste(canvas, part, corner, (center_x, center_y)))
                 for part, corner in zip([results, *others], _CORNERS)]
        arrays, box_ids, ignore_ids = _mix_boxes(results, parts)
        _, scale, (dx, dy) = parts[0]
        meta = results["meta"]
        compose_homography(meta, np.array([[scale, 0, dx], [0, scale, dy], [0, 0, 1]], np.float64))
        old = meta.get("scale_factor", (1.0, 1.0))
        meta["scale_factor"] = (old[0] * scale, old[1] * scale)
        results["image"] = canvas
        return _finish(results, arrays, (box_ids, ignore_ids), (2 * h, 2 * w), self.bbox_clip_border,
                       type(self).__name__, others)

    def _paste(self, canvas: np.ndarray, part: dict, corner: str, center: tuple) -> tuple[float, tuple]:
        """Resize ``part``'s image into its ``corner`` of ``canvas``: (scale, (shift_x, shift_y))."""
        img = part["image"]
        h, w = img.shape[:2]
        scale = min(self.img_scale[1] / h, self.img_scale[0] / w)
        img = cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_LINEAR)
        (x1p, y1p, x2p, y2p), (x1c, y1c, x2c, y2c) = self._combine(corner, center, (img.shape[1], img.shape[0]))
        canvas[y1p:y2p, x1p:x2p] = img[y1c:y2c, x1c:x2c]
        return scale, (x1p - x1c, y1p - y1c)

    def _combine(self, corner: str, center: tuple, size: tuple) -> tuple[tuple, tuple]:
        """mmdetection's ``_mosaic_combine``: (paste x1, y1, x2, y2 on the canvas, crop x1, y1,
        x2, y2 in the resized image) for an image of ``size = (w, h)``."""
        (cx, cy), (w, h) = center, size
        max_x, max_y = self.img_scale[0] * 2, self.img_scale[1] * 2
        if corner == "top_left":
            x1, y1, x2, y2 = max(cx - w, 0), max(cy - h, 0), cx, cy
            crop = w - (x2 - x1), h - (y2 - y1), w, h
        elif corner == "top_right":
            x1, y1, x2, y2 = cx, max(cy - h, 0), min(cx + w, max_x), cy
            crop = 0, h - (y2 - y1), min(w, x2 - x1), h
        elif corner == "bottom_left":
            x1, y1, x2, y2 = max(cx - w, 0), cy, cx, min(max_y, cy + h)
            crop = w - (x2 - x1), 0, w, min(y2 - y1, h)
        else:
            x1, y1, x2, y2 = cx, cy, min(cx + w, max_x), min(max_y, cy + h)
            crop = 0, 0, min(w, x2 - x1), min(y2 - y1, h)
        return (x1, y1, x2, y2), crop


class CachedMosaic(_MosaicGeometry, _CachedTransform):
    """mmdetection's ``CachedMosaic``: four images around a random centre on a ``2 x img_scale``
    canvas filled with ``pad_val``.

    With more than 4 entries in the cache and probability ``prob``: draw 3 earlier entries
    (``integers(0, len - 1)`` each, so never the current sample; repeats allowed), the centre ``(int(
    uniform(center_ratio_range) * w), int(uniform(...) * h))`` for ``img_scale = (w, h)``; the
    current image goes top-left, the drawn ones top-right, bottom-left, bottom-right, each
    resized keeping its ratio to fit ``img_scale`` (``int()`` sizes, bilinear as mmcv's
    ``imresize``) and cropped at the canvas border exactly as mmdetection's ``_mosaic_combine``.
    Boxes are scaled and shifted likewise, clipped to the canvas (``bbox_clip_border``) and kept
    if still inside. Fewer entries, or the ``prob`` draw failing: the input unchanged."""

    min_cached = 4

    def __init__(self, *, img_scale=(640, 640), center_ratio_range=(0.5, 1.5), bbox_clip_border: bool = True,
                 pad_val=114.0, prob: float = 1.0, max_cached_images: int = 40, random_pop: bool = True, rng=None):
        super().__init__(max_cached_images, random_pop, prob, rng)
        self.img_scale = tuple(img_scale)
        self.center_ratio_range = tuple(center_ratio_range)
        self.bbox_clip_border = bbox_clip_border
        self.pad_val = pad_val

    def __call__(self, results: dict) -> dict:
        window = self._window(results)
        if len(window) <= 4 or self.rng.uniform(0, 1) > self.prob:
            return results
        others = [window.get(i) for i in [int(self.rng.integers(0, len(window) - 1)) for _ in range(3)]]
        return self._mosaic(results, others)


class Mosaic(_MosaicGeometry, RandomTransform):
    """mmdetection's ``Mosaic`` (YOLOX), inside mmdetection's ``MultiImageMixDataset``: the three
    other images come from the data set. :meth:`get_indexes` draws them (``integers(0, len)``
    three times, repeats and the sample itself allowed, as mmdetection's ``randint(0,
    len(dataset))``); the data set loads them (its loading steps only) into
    ``results["mix_results"]`` (:class:`detengine.train.data.SeededTrainSet` does, from the
    sample's own seeded generator). Then with probability ``prob`` (drawn first): the geometry
    of :class:`CachedMosaic`, centre drawn after. Without ``mix_results`` (a pipeline applied
    image by image, outside a data set) a ValueError says so."""

    def __init__(self, *, img_scale=(640, 640), center_ratio_range=(0.5, 1.5), bbox_clip_border: bool = True,
                 pad_val=114.0, prob: float = 1.0, rng=None):
        if not 0 <= prob <= 1:
            raise ValueError(f"Mosaic prob must be in [0, 1], got {prob}")
        super().__init__(rng)
        self.img_scale = tuple(img_scale)
        self.center_ratio_range = tuple(center_ratio_range)
        self.bbox_clip_border = bbox_clip_border
        self.pad_val = pad_val
        self.prob = prob

    def get_indexes(self, dataset) -> list[int]:
        """Three random indexes of ``dataset`` (anything with a length)."""
        return [int(self.rng.integers(0, len(dataset))) for _ in range(3)]

    def __call__(self, results: dict) -> dict:
        if self.rng.uniform(0, 1) > self.prob:
            return results
        others = _mix_results(results, 3, "Mosaic")
        return self._mosaic(results, others)


class _MixUpGeometry:
    """mmdetection's ``MixUp`` arithmetic, shared by :class:`MixUp` and :class:`CachedMixUp` (the
    same code twice in mmdetection). Needs ``img_scale``, ``ratio_range``, ``flip_ratio``,
    ``pad_val``, ``bbox_clip_border`` and ``rng``."""

    def _mix(self, results: dict, other: dict) -> dict:
        """Blend ``other`` (a sample with a box) into ``results``: draws the jitter, the flip and
        the crop offsets."""
        jitter = self.rng.uniform(*self.ratio_range)
        is_flip = self.rng.uniform(0, 1) > self.flip_ratio
        canvas, scale = self._jittered_canvas(other["image"], jitter, is_flip)
        th, tw = results["image"].shape[:2]
        oh, ow = canvas.shape[:2]
        padded = (np.ones((max(oh, th), max(ow, tw), 3)) * _bgr_fill(self.pad_val)).astype(np.uint8)
        padded[:oh, :ow] = canvas
        # numpy's randint(0, extra) in mmdetection: the largest offset is never drawn
        top = int(self.rng.integers(0, padded.shape[0] - th)) if padded.shape[0] > th else 0
        left = int(self.rng.integers(0, padded.shape[1] - tw)) if padded.shape[1] > tw else 0
        crop = padded[top:top + th, left:left + tw]
        moved = {key: self._move(other[key], scale, (oh, ow), is_flip, (left, top), (th, tw))
                 for key in ("boxes", "ignore_boxes")}
        parts = [(results, 1.0, (0, 0)), (dict(other, **moved), 1.0, (0, 0))]
        arrays, box_ids, ignore_ids = _mix_boxes(results, parts)
        results["image"] = (0.5 * results["image"].astype(np.float32) + 0.5 * crop.astype(np.float32)).astype(np.uint8)
        return _finish(results, arrays, (box_ids, ignore_ids), (th, tw), False, type(self).__name__, [other])

    def _jittered_canvas(self, image: np.ndarray, jitter: float, is_flip: bool) -> tuple[np.ndarray, float]:
        """``image`` resized into a ``pad_val`` canvas, jittered and flipped: (canvas, box scale)."""
        w, h = self.img_scale
        # mmdetection: ones(dtype of the image) * pad_val (float64 for a uint8 image and 114.0)
        canvas = np.ones((h, w, 3), dtype=image.dtype) * _bgr_fill(self.pad_val)
        scale = min(h / image.shape[0], w / image.shape[1])
        image = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)),
                           interpolation=cv2.INTER_LINEAR)
        canvas[:image.shape[0], :image.shape[1]] = image
        size = (int(canvas.shape[1] * jitter), int(canvas.shape[0] * jitter))
        if size != (w, h):  # (mmdetection resizes anyway: the same values)
            if canvas.dtype.kind in "iu":  # cv2 cannot resize int64 (mmdetection fails here, int pad_val)
                canvas = canvas.astype(np.float64)
            canvas = cv2.resize(canvas, size, interpolation=cv2.INTER_LINEAR)
        return (canvas[:, ::-1] if is_flip else canvas), scale * jitter

    def _move(self, boxes: np.ndarray, scale: float, canvas_hw: tuple, is_flip: bool, offset: tuple,
              hw: tuple) -> np.ndarray:
        """The drawn sample's (N, 4) boxes onto the crop, in mmdetection's float32 steps."""
        boxes = boxes * np.float32(scale)
        if self.bbox_clip_border:
            boxes = clip_boxes(boxes, canvas_hw)
        if is_flip:
            width = np.float32(canvas_hw[1])
            boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)
        boxes = _place(boxes, 1.0, (-offset[0], -offset[1]))
        return clip_boxes(boxes, hw) if self.bbox_clip_border else boxes


class CachedMixUp(_MixUpGeometry, _CachedTransform):
    """mmdetection's ``CachedMixUp``: blend the image 50/50 with an earlier one from the cache.

    With more than 1 entry in the cache and probability ``prob``: draw an earlier entry
    (``integers(0, len - 1)``, again up to ``max_iters`` times while it has no box; none: the
    input unchanged), the
    jitter ``uniform(ratio_range)`` and the flip ``uniform(0, 1) > flip_ratio``. The drawn image
    is resized keeping its ratio into an ``img_scale = (w, h)`` canvas of ``pad_val`` (top-left),
    the canvas resized by the jitter (float, bilinear), flipped, padded with ``pad_val`` to at
    least the current image's size (a uint8 copy: values truncated, as mmdetection), and cropped
    to that size at offsets ``integers(0, extra)`` (y first, drawn only when there is extra;
    mmdetection's numpy ``randint`` excludes ``extra`` itself).
    Result ``uint8(0.5 * image + 0.5 * crop)`` in float32. The drawn boxes are rescaled, clipped
    to the jittered canvas, flipped, shifted, clipped to the image; then every box (the current
    sample's too) is kept if inside. ``img_shape`` becomes the whole image, as in mmdetection."""

    def __init__(self, *, img_scale=(640, 640), ratio_range=(0.5, 1.5), flip_ratio: float = 0.5, pad_val=114.0,
                 max_iters: int = 15, bbox_clip_border: bool = True, max_cached_images: int = 20,
                 random_pop: bool = True, prob: float = 1.0, rng=None):
        if max_iters < 1:
            raise ValueError(f"CachedMixUp max_iters must be >= 1, got {max_iters}")
        super().__init__(max_cached_images, random_pop, prob, rng)
        self.img_scale = tuple(img_scale)
        self.ratio_range = tuple(ratio_range)
        self.flip_ratio = flip_ratio
        self.pad_val = pad_val
        self.max_iters = max_iters
        self.bbox_clip_border = bbox_clip_border

    def _draw(self, window: MixWindow) -> dict:
        """mmdetection's ``get_indexes``: the first drawn entry with a box, else the last drawn."""
        for _ in range(self.max_iters):
            other = window.get(int(self.rng.integers(0, len(window) - 1)))
            if _num_boxes(other):
                break
        return other

    def __call__(self, results: dict) -> dict:
        window = self._window(results)
        if len(window) <= 1 or self.rng.uniform(0, 1) > self.prob:
            return results
        other = self._draw(window)
        if not _num_boxes(other):
            return results
        return self._mix(results, other)


class MixUp(_MixUpGeometry, RandomTransform):
    """mmdetection's ``MixUp`` (YOLOX), inside mmdetection's ``MultiImageMixDataset``: the other
    image comes from the data set. :meth:`get_indexes` draws ``integers(0, len)`` and loads that
    sample, again up to ``max_iters`` times while it has no box (the last one drawn is taken
    anyway); the data set puts it, loaded, into ``results["mix_results"]``
    (:class:`detengine.train.data.SeededTrainSet`). A drawn sample without a box: the input
    unchanged (nothing more drawn). Else the arithmetic of :class:`CachedMixUp` (jitter, flip,
    crop offsets drawn in that order). No ``prob``: mmdetection's MixUp always applies."""

    def __init__(self, *, img_scale=(640, 640), ratio_range=(0.5, 1.5), flip_ratio: float = 0.5, pad_val=114.0,
                 max_iters: int = 15, bbox_clip_border: bool = True, rng=None):
        if max_iters < 1:
            raise ValueError(f"MixUp max_iters must be >= 1, got {max_iters}")
        super().__init__(rng)
        self.img_scale = tuple(img_scale)
        self.ratio_range = tuple(ratio_range)
        self.flip_ratio = flip_ratio
        self.pad_val = pad_val
        self.max_iters = max_iters
        self.bbox_clip_border = bbox_clip_border

    def get_indexes(self, dataset) -> int:
        """An index of ``dataset`` (``len`` and ``[i]``: a loaded sample, None when unreadable)
        whose sample has a box, or the last of ``max_iters`` draws."""
        for _ in range(self.max_iters):
            index = int(self.rng.integers(0, len(dataset)))
            loaded = dataset[index]
            if loaded is not None and _num_boxes(loaded):
                break
        return index

    def __call__(self, results: dict) -> dict:
        other = _mix_results(results, 1, "MixUp")[0]
        if not _num_boxes(other):
            return results
        return self._mix(results, other)
