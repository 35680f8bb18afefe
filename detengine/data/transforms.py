"""Data transforms as in mmdetection 3.x pipelines: numpy/cv2 in, torch out.

A transform is a callable on a results dict and returns it::

    {"image": (H, W, 3) uint8 or float32 RGB, "boxes": (G, 4) float32 xyxy,
     "labels": (G,) int64, "ignore_boxes": (I, 4) float32 xyxy, "meta": dict}

(:func:`detengine.data.folder.sample_to_results` makes one from a sample). ``meta`` holds
``image_id, file_name, ori_shape (h, w), img_shape (h, w)`` (the current image; after a
:class:`Pad`, the padded image, as mmcv 2.x's ``Pad`` sets it), ``content_shape (h, w)`` (the
real pixels inside a padded image), ``pad_shape (h, w)``, ``scale_factor (sx, sy)`` (product of every resize), ``flip`` and
``flip_direction`` (net flip), and ``homography``: the 3x3 map from original pixels to current
pixels, composed by every geometric transform (as mmdetection's ``homography_matrix``), which
:func:`boxes_to_original` inverts. ``box_ids`` / ``ignore_ids`` give each remaining box's row in
the original sample, and ``dropped`` lists ``{"transform", "boxes", "ignore_boxes"}`` (original
rows) for every transform that removed boxes (left the image, became empty, or had their centre
cropped away). Boxes mixed in from other samples (:mod:`detengine.data.mixing`) have id -1, and
``meta["mixed"]`` lists ``{"transform", "image_ids"}`` of those samples; ``homography`` and
``scale_factor`` stay those of the sample's own pixels.

A transform may return None (:class:`RandomCrop` with no box left): :class:`Compose` then stops
and returns None, and the training set fetches another sample, as mmdetection's dataset does.

The image stays RGB throughout (mmdetection works in BGR); where mmdetection's meaning depends
on channel order the RGB equivalent is used and said so in the class docstring. Randomness
comes only from a ``numpy.random.Generator`` held by each random transform; :class:`Compose`
(and :func:`build_pipeline`) can hand one seeded generator to all of them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from ..boxes import bbox_overlaps
from .transform_base import (
    RandomTransform,
    Transform,
    as_generator,
    boxes_inside,
    clip_and_drop,
    clip_boxes,
    compose_homography,
    image_hw,
    map_boxes,
    select_boxes,
    set_shapes,
)

__all__ = [
    "Compose", "boxes_to_original", "PhotoMetricDistortion", "YOLOXHSVRandomAug", "Expand",
    "MinIoURandomCrop", "RandomCrop", "RandomAffine", "Resize", "KeepRatioResize", "RandomResize",
    "RandomChoiceResize", "FilterAnnotations", "RandomFlip", "Pad", "Normalize", "ToTensor", "rescale_size", "flip",
    "project_boxes",
]

_INTERP = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
           "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}
_FLIP_AXES = {None: (False, False), "horizontal": (True, False), "vertical": (False, True),
              "diagonal": (True, True)}
_AXES_FLIP = {v: k for k, v in _FLIP_AXES.items()}


# --------------------------------------------------------------------------- photometric


class PhotoMetricDistortion(RandomTransform):
    """mmdetection's ``PhotoMetricDistortion``: each step with probability 0.5, contrast either
    second or second to last: brightness, [contrast], HSV saturation, hue, [contrast], channel
    swap. Output float32, not clipped (as mmdetection). HSV via ``cv2.COLOR_RGB2HSV`` on the RGB
    image, the same numbers as mmdetection's BGR2HSV on the BGR image."""

    def __init__(self, *, brightness_delta: float = 32, contrast_range=(0.5, 1.5),
                 saturation_range=(0.5, 1.5), hue_delta: float = 18, rng=None):
        super().__init__(rng)
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    def _flags(self) -> dict:
        r = self.rng
        keys = ("mode", "brightness", "contrast", "saturation", "hue", "swap")
        flags = {k: int(r.integers(2)) for k in keys}
        flags.update(delta=r.uniform(-self.brightness_delta, self.brightness_delta),
                     alpha=r.uniform(*self.contrast_range), sat=r.uniform(*self.saturation_range),
                     hue_value=r.uniform(-self.hue_delta, self.hue_delta), perm=r.permutation(3))
        return flags

    def __call__(self, results: dict) -> dict:
        f = self._flags()
        img = results["image"].astype(np.float32)
        if f["brightness"]:
            img += np.float32(f["delta"])
        if f["mode"] == 1 and f["contrast"]:
            img *= np.float32(f["alpha"])
        img = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        if f["saturation"]:
            img[..., 1] *= np.float32(f["sat"])
            if f["sat"] > 1:
                img[..., 1] = img[..., 1].clip(0, 1)
        if f["hue"]:
            hue = img[..., 0] + np.float32(f["hue_value"])
            hue[hue > 360] -= 360
            hue[hue < 0] += 360
            img[..., 0] = hue
        img = cv2.cvtColor(img, cv2.COLOR_HSV2RGB)
        if f["mode"] == 0 and f["contrast"]:
            img *= np.float32(f["alpha"])
        if f["swap"]:
            img = np.ascontiguousarray(img[..., f["perm"]])
        results["image"] = img
        return results


class YOLOXHSVRandomAug(RandomTransform):
    """mmdetection's ``YOLOXHSVRandomAug``: gains ``uniform(-1, 1, 3) * (hue_delta,
    saturation_delta, value_delta)``, each kept with probability 1/2 (``integers(0, 2, 3)``), cast
    to int16; then hue ``(h + gain) % 180``, saturation and value clipped to [0, 255]. HSV via
    ``cv2.COLOR_RGB2HSV`` / ``HSV2RGB`` on the RGB image, the same numbers as mmdetection's
    BGR2HSV / HSV2BGR on the BGR image. A new image; the input array is not written."""

    def __init__(self, *, hue_delta: int = 5, saturation_delta: int = 30, value_delta: int = 30, rng=None):
        super().__init__(rng)
        self.hue_delta = hue_delta
        self.saturation_delta = saturation_delta
        self.value_delta = value_delta

    def _gains(self) -> np.ndarray:
        """(3,) int16 hue, saturation and value gains."""
        gains = self.rng.uniform(-1, 1, 3) * [self.hue_delta, self.saturation_delta, self.value_delta]
        gains *= self.rng.integers(0, 2, 3)
        return gains.astype(np.int16)

    def __call__(self, results: dict) -> dict:
        gains = self._gains()
        img = results["image"]
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] + gains[1], 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] + gains[2], 0, 255)
        results["image"] = cv2.cvtColor(hsv.astype(img.dtype), cv2.COLOR_HSV2RGB)
        return results


# --------------------------------------------------------------------------- SSD geometric


class RandomCrop(RandomTransform):
    """mmdetection's ``RandomCrop`` (not SSD's :class:`MinIoURandomCrop`).

    ``crop_size = (w, h)`` and ``crop_type``: ``absolute`` crops ``min(h, crop_h) x min(w,
    crop_w)``; ``absolute_range`` draws ``crop_h`` in ``[min(h, size[0]), min(h, size[1])]`` and
    ``crop_w`` likewise (both from the same two numbers); ``relative`` crops ``(h * size[1], w *
    size[0])``; ``relative_range`` crops ``h * uniform(size[0], 1)``, ``w * uniform(size[1], 1)``
    (mmdetection pairs ``size[0]`` with the height there). Offsets ``integers(0, margin + 1)``,
    y first. Boxes (and ignore boxes) shift, are clipped (``bbox_clip_border``) and kept when
    still overlapping the crop (:func:`boxes_inside`). When no box of either kind is left and
    ``allow_negative_crop`` is False the transform returns None, like mmdetection, whose dataset
    then fetches another sample (:class:`detengine.train.data.SeededTrainSet` does the same).
    ``recompute_bbox`` re-derives boxes from masks in mmdetection; there are no masks here, so,
    as in mmdetection without masks, it changes nothing."""

    _TYPES = ("absolute", "absolute_range", "relative", "relative_range")

    def __init__(self, *, crop_size, crop_type: str = "absolute", allow_negative_crop: bool = False,
                 recompute_bbox: bool = False, bbox_clip_border: bool = True, rng=None):
        super().__init__(rng)
        if crop_type not in self._TYPES:
            raise ValueError(f"RandomCrop crop_type must be one of {list(self._TYPES)}, got {crop_type!r}")
        a, b = crop_size
        if crop_type.startswith("absolute") and not (isinstance(a, int) and isinstance(b, int) and a > 0 and b > 0):
            raise ValueError(f"RandomCrop {crop_type} crop_size must be two positive ints, got {crop_size!r}")
        if crop_type == "absolute_range" and a > b:
            raise ValueError(f"RandomCrop absolute_range crop_size must be (min, max), got {crop_size!r}")
        if crop_type.startswith("relative") and not (0 < a <= 1 and 0 < b <= 1):
            raise ValueError(f"RandomCrop {crop_type} crop_size must be in (0, 1], got {crop_size!r}")
        self.crop_size, self.crop_type = tuple(crop_size), crop_type
        self.allow_negative_crop = allow_negative_crop
        self.recompute_bbox = recompute_bbox
        self.bbox_clip_border = bbox_clip_border

    def _crop_hw(self, h: int, w: int) -> tuple[int, int]:
        """(crop_h, crop_w) for an (h, w) image (mmdetection's ``_get_crop_size``)."""
        a, b = self.crop_size
        if self.crop_type == "absolute":
            return min(b, h), min(a, w)
        if self.crop_type == "absolute_range":
            crop_h = int(self.rng.integers(min(h, a), min(h, b) + 1))
            return crop_h, int(self.rng.integers(min(w, a), min(w, b) + 1))
        if self.crop_type == "relative":
            return int(h * b + 0.5), int(w * a + 0.5)
        size = np.asarray(self.crop_size, dtype=np.float32)
        crop_h, crop_w = size + self.rng.random(2) * (1 - size)
        return int(h * crop_h + 0.5), int(w * crop_w + 0.5)

    def __call__(self, results: dict) -> dict | None:
        h, w = image_hw(results)
        crop_h, crop_w = self._crop_hw(h, w)
        top = int(self.rng.integers(0, max(h - crop_h, 0) + 1))
        left = int(self.rng.integers(0, max(w - crop_w, 0) + 1))
        image = np.ascontiguousarray(results["image"][top:top + crop_h, left:left + crop_w])
        hw = image.shape[:2]
        shift = np.array([left, top, left, top], np.float32)
        boxes, ignore = results["boxes"] - shift, results["ignore_boxes"] - shift
        if self.bbox_clip_border:
            boxes, ignore = clip_boxes(boxes, hw), clip_boxes(ignore, hw)
        keep, keep_ignore = boxes_inside(boxes, hw), boxes_inside(ignore, hw)
        if not (keep.any() or keep_ignore.any() or self.allow_negative_crop):
            return None
        results.update(image=image, boxes=boxes, ignore_boxes=ignore)
        meta = results["meta"]
        compose_homography(meta, np.array([[1, 0, -left], [0, 1, -top], [0, 0, 1]], np.float64))
        set_shapes(meta, hw)
        meta["crop_patch"] = (left, top, left + hw[1], top + hw[0])
        select_boxes(results, keep, keep_ignore, "RandomCrop")
        return results


class Expand(RandomTransform):
    """mmdetection's ``Expand``: with probability ``prob`` put the image at a random place on a
    canvas ``ratio`` times larger (ratio uniform in ``ratio_range``) filled with ``mean``.

    ``mean`` is in RGB order when ``to_rgb=True`` (mmdetection's usual config); with
    ``to_rgb=False`` it is taken as BGR order, as mmdetection does, and reversed for our RGB
    image. Boxes shift by the offset; none is dropped."""

    def __init__(self, *, mean=(0, 0, 0), to_rgb: bool = True, ratio_range=(1, 4), prob: float = 0.5,
                 seg_ignore_label=None, rng=None):
        super().__init__(rng)
        self.mean = tuple(float(m) for m in mean)
        self.to_rgb = to_rgb
        self.ratio_range = tuple(ratio_range)
        self.prob = prob

    def __call__(self, results: dict) -> dict:
        if self.rng.uniform(0, 1) > self.prob:
            return results
        img = results["image"]
        h, w, c = img.shape
        ratio = self.rng.uniform(*self.ratio_range)
        fill = self.mean if self.to_rgb else self.mean[::-1]
        canvas = np.full((int(h * ratio), int(w * ratio), c), fill, dtype=img.dtype)
        left = int(self.rng.uniform(0, w * ratio - w))
        top = int(self.rng.uniform(0, h * ratio - h))
        canvas[top:top + h, left:left + w] = img
        shift = np.array([left, top, left, top], np.float32)
        results.update(image=canvas, boxes=results["boxes"] + shift, ignore_boxes=results["ignore_boxes"] + shift)
        meta = results["meta"]
        compose_homography(meta, np.array([[1, 0, left], [0, 1, top], [0, 0, 1]], np.float64))
        set_shapes(meta, canvas.shape[:2])
        return results


class MinIoURandomCrop(RandomTransform):
    """mmdetection's ``MinIoURandomCrop`` (SSD's crop).

    Pick ``min_iou`` from ``(1, *min_ious, 0)`` (1 = keep the image as is); try 50 crops of
    size ``[min_crop_size, 1] x (w, h)`` with ``0.5 <= h/w <= 2``; accept one whose IoU with
    EVERY box (ground truth and ignore boxes, as mmdetection whose ignore boxes are flagged
    ground truth) is ``>= min_iou`` and that holds at least one box centre; keep only boxes
    whose centre lies strictly inside, shift and clip them; otherwise draw a new ``min_iou``.
    ``meta["crop_patch"]`` (x1, y1, x2, y2 in the pre-crop image) and ``meta["crop_min_iou"]``
    record the choice. The offset is uniform in ``[0, w - new_w]`` (mmdetection's call
    ``uniform(w - new_w)`` draws from ``[1, w - new_w]`` by accident)."""

    def __init__(self, *, min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size: float = 0.3,
                 bbox_clip_border: bool = True, max_rounds: int = 1000, rng=None):
        super().__init__(rng)
        self.min_ious = tuple(min_ious)
        self.min_crop_size = min_crop_size
        self.bbox_clip_border = bbox_clip_border
        self.max_rounds = max_rounds

    def _try_patch(self, h: int, w: int, all_boxes: np.ndarray, min_iou: float):
        """One candidate crop: (patch (4,) int, centre mask (N,) bool) or None."""
        new_w = self.rng.uniform(self.min_crop_size * w, w)
        new_h = self.rng.uniform(self.min_crop_size * h, h)
        if new_h / new_w < 0.5 or new_h / new_w > 2:
            return None
        left = self.rng.uniform(0, w - new_w)
        top = self.rng.uniform(0, h - new_h)
        patch = np.array([int(left), int(top), int(left + new_w), int(top + new_h)])
        if patch[2] == patch[0] or patch[3] == patch[1]:
            return None
        if len(all_boxes) == 0:
            return patch, np.zeros(0, bool)
        ious = bbox_overlaps(torch.from_numpy(patch[None].astype(np.float32)), torch.from_numpy(all_boxes))
        if float(ious.min()) < min_iou:
            return None
        cx = (all_boxes[:, 0] + all_boxes[:, 2]) / 2
        cy = (all_boxes[:, 1] + all_boxes[:, 3]) / 2
        inside = (cx > patch[0]) & (cy > patch[1]) & (cx < patch[2]) & (cy < patch[3])
        return (patch, inside) if inside.any() else None

    def __call__(self, results: dict) -> dict:
        h, w = image_hw(results)
        all_boxes = np.concatenate([results["boxes"], results["ignore_boxes"]]).astype(np.float32)
        modes = (1, *self.min_ious, 0)
        for _ in range(self.max_rounds):
            min_iou = modes[int(self.rng.integers(len(modes)))]
            if min_iou == 1:
                return results
            for _ in range(50):
                found = self._try_patch(h, w, all_boxes, min_iou)
                if found is not None:
                    return self._apply(results, *found, min_iou)
        return results

    def _apply(self, results: dict, patch: np.ndarray, inside: np.ndarray, min_iou: float) -> dict:
        g = len(results["boxes"])
        select_boxes(results, inside[:g], inside[g:], type(self).__name__)
        x1, y1, x2, y2 = (int(v) for v in patch)
        shift = np.array([x1, y1, x1, y1], np.float32)
        results["image"] = results["image"][y1:y2, x1:x2]
        results["boxes"] = results["boxes"] - shift
        results["ignore_boxes"] = results["ignore_boxes"] - shift
        meta = results["meta"]
        meta.update(crop_patch=(x1, y1, x2, y2), crop_min_iou=float(min_iou))
        compose_homography(meta, np.array([[1, 0, -x1], [0, 1, -y1], [0, 0, 1]], np.float64))
        set_shapes(meta, (y2 - y1, x2 - x1))
        clip_and_drop(results, type(self).__name__, clip=self.bbox_clip_border)
        return results


class RandomAffine(RandomTransform):
    """mmdetection's ``RandomAffine`` (YOLOX): warp the image by a random rotation, scaling, shear
    and translation onto a ``(w + 2 border_x, h + 2 border_y)`` canvas (``border = (x, y)``; YOLOX
    gives ``-img_scale / 2`` to bring a 2x mosaic back to ``img_scale``) filled with ``border_val``.

    Draws, in mmdetection's order (:meth:`draw`): rotation ``uniform(-max_rotate_degree, +)``,
    scaling ``uniform(scaling_ratio_range)``, shear x then y ``uniform(-max_shear_degree, +)``,
    translation x then y ``uniform(-max_translate_ratio, +)`` times the output width / height.
    :meth:`warp_matrix` makes mmdetection's float32 ``translate @ shear @ rotation @ scaling`` of
    them; the image goes through ``cv2.warpPerspective`` (bilinear) with it. Boxes (ground truth and
    ignore boxes alike: mmdetection flags ignore boxes among its ground truth) are projected through
    their 4 corners in float32 torch as mmdetection's ``HorizontalBoxes.project_`` and replaced by
    the corners' bounding box, clipped to the output (``bbox_clip_border``) and kept when still
    inside (:func:`boxes_inside`). ``border_val`` is read in mmdetection's BGR order and reversed
    for our RGB image. ``meta["homography"]`` composes the warp (so :func:`boxes_to_original`
    maps back through the 4 corners); ``scale_factor`` is left as it was, as mmdetection leaves it."""

    def __init__(self, *, max_rotate_degree: float = 10.0, max_translate_ratio: float = 0.1,
                 scaling_ratio_range=(0.5, 1.5), max_shear_degree: float = 2.0, border=(0, 0),
                 border_val=(114, 114, 114), bbox_clip_border: bool = True, rng=None):
        super().__init__(rng)
        if not 0 <= max_translate_ratio <= 1:
            raise ValueError(f"RandomAffine max_translate_ratio must be in [0, 1], got {max_translate_ratio}")
        lo, hi = scaling_ratio_range
        if not 0 < lo <= hi:
            raise ValueError(f"RandomAffine scaling_ratio_range must be (min, max) with 0 < min <= max, "
                             f"got {scaling_ratio_range!r}")
        self.max_rotate_degree = max_rotate_degree
        self.max_translate_ratio = max_translate_ratio
        self.scaling_ratio_range = tuple(scaling_ratio_range)
        self.max_shear_degree = max_shear_degree
        self.border = tuple(border)
        self.border_val = tuple(border_val) if isinstance(border_val, (list, tuple)) else border_val
        self.bbox_clip_border = bbox_clip_border

    def draw(self, height: int, width: int) -> dict:
        """One set of random draws for an output of ``(height, width)``: the keyword arguments of
        :meth:`warp_matrix`, drawn in mmdetection's order."""
        r = self.rng
        rotation = r.uniform(-self.max_rotate_degree, self.max_rotate_degree)
        scaling = r.uniform(self.scaling_ratio_range[0], self.scaling_ratio_range[1])
        shear_x = r.uniform(-self.max_shear_degree, self.max_shear_degree)
        shear_y = r.uniform(-self.max_shear_degree, self.max_shear_degree)
        translate_x = r.uniform(-self.max_translate_ratio, self.max_translate_ratio) * width
        translate_y = r.uniform(-self.max_translate_ratio, self.max_translate_ratio) * height
        return dict(rotation=rotation, scaling=scaling, shear_x=shear_x, shear_y=shear_y,
                    translate_x=translate_x, translate_y=translate_y)

    @staticmethod
    def warp_matrix(*, rotation: float, scaling: float, shear_x: float, shear_y: float, translate_x: float,
                    translate_y: float) -> np.ndarray:
        """mmdetection's (3, 3) float32 ``translate @ shear @ rotation @ scaling`` (angles in
        degrees, translations in pixels)."""
        radian = math.radians(rotation)
        rotate = np.array([[np.cos(radian), -np.sin(radian), 0.], [np.sin(radian), np.cos(radian), 0.],
                           [0., 0., 1.]], dtype=np.float32)
        scale = np.array([[scaling, 0., 0.], [0., scaling, 0.], [0., 0., 1.]], dtype=np.float32)
        sx, sy = math.radians(shear_x), math.radians(shear_y)
        shear = np.array([[1, np.tan(sx), 0.], [np.tan(sy), 1, 0.], [0., 0., 1.]], dtype=np.float32)
        translate = np.array([[1, 0., translate_x], [0., 1, translate_y], [0., 0., 1.]], dtype=np.float32)
        return translate @ shear @ rotate @ scale

    def __call__(self, results: dict) -> dict:
        img = results["image"]
        height = img.shape[0] + self.border[1] * 2
        width = img.shape[1] + self.border[0] * 2
        if height <= 0 or width <= 0:
            raise ValueError(f"RandomAffine border {self.border} leaves no image of a {img.shape[1]}x{img.shape[0]} "
                             f"input (mmdetection's YOLOX gives -img_scale / 2 after a 2 x img_scale Mosaic)")
        matrix = self.warp_matrix(**self.draw(height, width))
        fill = self.border_val
        fill = tuple(float(v) for v in fill[::-1]) if isinstance(fill, tuple) else float(fill)
        results["image"] = cv2.warpPerspective(img, matrix, dsize=(width, height), borderValue=fill)
        g = len(results["boxes"])
        everything = np.concatenate([results["boxes"], results["ignore_boxes"]]).astype(np.float32).reshape(-1, 4)
        meta = results["meta"]
        compose_homography(meta, matrix.astype(np.float64))
        set_shapes(meta, (height, width))
        if len(everything):   # mmdetection: only when there are boxes
            moved = project_boxes(everything, matrix)
            if self.bbox_clip_border:
                moved = clip_boxes(moved, (height, width))
            results["boxes"], results["ignore_boxes"] = moved[:g], moved[g:]
            keep = boxes_inside(moved, (height, width))
            select_boxes(results, keep[:g], keep[g:], type(self).__name__)
        return results


def project_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 4) float32 xyxy boxes through a 3x3 homography: the bounding box of the 4 projected
    corners, in float32 torch exactly as mmdetection's ``HorizontalBoxes.project_``."""
    t = torch.from_numpy(np.ascontiguousarray(boxes, np.float32)).reshape(-1, 4)
    if len(t) == 0:
        return np.zeros((0, 4), np.float32)
    x1, y1, x2, y2 = torch.split(t, 1, dim=-1)
    corners = torch.cat([x1, y1, x2, y1, x1, y2, x2, y2], dim=-1).reshape(-1, 4, 2)
    corners = torch.cat([corners, corners.new_ones(*corners.shape[:-1], 1)], dim=-1)
    projected = torch.matmul(t.new_tensor(np.asarray(matrix)), corners.transpose(-1, -2)).transpose(-1, -2)
    projected = projected[..., :2] / projected[..., 2:3]
    return torch.cat([projected.min(dim=-2)[0], projected.max(dim=-2)[0]], dim=-1).numpy()


# --------------------------------------------------------------------------- resize / flip / pad


def rescale_size(w: int, h: int, scale) -> tuple[int, int]:
    """mmcv's ``rescale_size``: the (new_w, new_h) that fits ``(w, h)`` into ``scale``.

    ``scale`` a number: factor; a pair: factor ``min(max(scale) / max(h, w),
    min(scale) / min(h, w))``. Sizes round as ``int(x * factor + 0.5)``."""
    if isinstance(scale, (int, float)):
        factor = float(scale)
    else:
        factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(w * factor + 0.5), int(h * factor + 0.5)


class Resize(Transform):
    """mmdetection's ``Resize``. ``scale = (w, h)`` (or an int for a square).

    ``keep_ratio=False``: resize to exactly ``scale``; ``keep_ratio=True``: largest size that
    fits (:func:`rescale_size`). ``scale_factor`` (float or (sx, sy)) instead of ``scale``
    resizes relative to the current size. The recorded ``scale_factor`` is the achieved
    ``(new_w / w, new_h / h)``. Boxes scale and (``clip_object_border``) clip to the new image;
    boxes left with no area are dropped."""

    def __init__(self, *, scale=None, scale_factor=None, keep_ratio: bool = False,
                 clip_object_border: bool = True, interpolation: str = "bilinear", backend: str = "cv2"):
        if scale is None and scale_factor is None:
            raise ValueError("Resize needs scale=(w, h) or scale_factor, got neither")
        if interpolation not in _INTERP:
            raise ValueError(f"Resize interpolation must be one of {sorted(_INTERP)}, got {interpolation!r}")
        self.scale = (scale, scale) if isinstance(scale, int) else (None if scale is None else tuple(scale))
        if isinstance(scale_factor, (int, float)):
            scale_factor = (float(scale_factor), float(scale_factor))
        self.scale_factor = scale_factor
        self.keep_ratio = keep_ratio
        self.clip_object_border = clip_object_border
        self.interpolation = interpolation

    def target_size(self, h: int, w: int) -> tuple[int, int]:
        """(new_w, new_h) for an (h, w) image."""
        scale = self.scale
        if scale is None:
            sx, sy = self.scale_factor
            scale = (int(w * sx + 0.5), int(h * sy + 0.5))
        return rescale_size(w, h, scale) if self.keep_ratio else (int(scale[0]), int(scale[1]))

    def _resize_to(self, results: dict, new_w: int, new_h: int) -> dict:
        h, w = image_hw(results)
        if (new_w, new_h) != (w, h):
            results["image"] = cv2.resize(results["image"], (new_w, new_h), interpolation=_INTERP[self.interpolation])
        sx, sy = new_w / w, new_h / h
        factor = np.array([sx, sy, sx, sy], np.float32)
        results["boxes"] = results["boxes"] * factor
        results["ignore_boxes"] = results["ignore_boxes"] * factor
        meta = results["meta"]
        old = meta.get("scale_factor", (1.0, 1.0))
        meta.update(scale_factor=(old[0] * sx, old[1] * sy), keep_ratio=self.keep_ratio)
        compose_homography(meta, np.diag([sx, sy, 1.0]))
        set_shapes(meta, (new_h, new_w))
        clip_and_drop(results, type(self).__name__, clip=self.clip_object_border)
        return results

    def __call__(self, results: dict) -> dict:
        h, w = image_hw(results)
        return self._resize_to(results, *self.target_size(h, w))


class KeepRatioResize(Resize):
    """``Resize(keep_ratio=True)``: factor ``min(max(scale) / max(h, w), min(scale) / min(h, w))``
    (mmdetection's RetinaNet / RTMDet test resize, ``scale=(1333, 800)`` by default)."""

    def __init__(self, *, scale=(1333, 800), clip_object_border: bool = True, interpolation: str = "bilinear",
                 backend: str = "cv2"):
        super().__init__(scale=scale, keep_ratio=True, clip_object_border=clip_object_border,
                         interpolation=interpolation)


class RandomResize(RandomTransform):
    """mmcv's ``RandomResize``: ``ratio_range`` given: ``scale * uniform(ratio_range)``; else
    ``scale`` is two (w, h) pairs and w and h are each drawn (integers) between the pairs'
    values. Then :class:`Resize` with that scale."""

    def __init__(self, *, scale, ratio_range=None, keep_ratio: bool = True, clip_object_border: bool = True,
                 interpolation: str = "bilinear", resize_type: str = "Resize", backend: str = "cv2", rng=None):
        super().__init__(rng)
        if resize_type != "Resize":
            raise ValueError(f"RandomResize resize_type must be 'Resize', got {resize_type!r}")
        self.scale = scale
        self.ratio_range = ratio_range
        self.keep_ratio = keep_ratio
        self.clip_object_border = clip_object_border
        self.interpolation = interpolation

    def _draw_scale(self) -> tuple[int, int]:
        if self.ratio_range is not None:
            ratio = self.rng.uniform(*self.ratio_range)
            return int(self.scale[0] * ratio), int(self.scale[1] * ratio)
        (w0, h0), (w1, h1) = self.scale
        edge_w = int(self.rng.integers(min(w0, w1), max(w0, w1) + 1))
        edge_h = int(self.rng.integers(min(h0, h1), max(h0, h1) + 1))
        return edge_w, edge_h

    def __call__(self, results: dict) -> dict:
        resize = Resize(scale=self._draw_scale(), keep_ratio=self.keep_ratio,
                        clip_object_border=self.clip_object_border, interpolation=self.interpolation)
        return resize(results)


class RandomChoiceResize(RandomTransform):
    """mmcv's ``RandomChoiceResize``: one of ``scales`` drawn uniformly (mmdetection's multi-scale
    RetinaNet configs), then :class:`Resize` with that scale and ``resize_kwargs``
    (``keep_ratio`` ...)."""

    def __init__(self, *, scales, resize_type: str = "Resize", rng=None, **resize_kwargs):
        super().__init__(rng)
        if resize_type != "Resize":
            raise ValueError(f"RandomChoiceResize resize_type must be 'Resize', got {resize_type!r}")
        self.scales = list(scales) if isinstance(scales, list) else [scales]
        if not self.scales:
            raise ValueError("RandomChoiceResize needs at least one scale")
        resize_kwargs.pop("backend", None)
        Resize(scale=self.scales[0], **resize_kwargs)          # a bad argument fails here, at build
        self.resize_kwargs = resize_kwargs

    def __call__(self, results: dict) -> dict:
        scale = self.scales[int(self.rng.integers(len(self.scales)))]
        return Resize(scale=scale, **self.resize_kwargs)(results)


class FilterAnnotations(Transform):
    """mmdetection's ``FilterAnnotations`` (``by_box``): boxes (ignored ones included) not wider
    than ``min_gt_bbox_wh[0]`` and taller than ``[1]`` are dropped; when none is left,
    ``keep_empty=True`` (mmdetection's default) drops the whole sample (returns None: another
    is fetched); ``keep_empty=False`` goes on with no boxes. Masks are not modelled: ``by_mask=True`` is refused."""

    def __init__(self, *, min_gt_bbox_wh=(1, 1), min_gt_mask_area: int = 1, by_box: bool = True,
                 by_mask: bool = False, keep_empty: bool = True):
        if by_mask or not by_box:
            raise ValueError("FilterAnnotations: only by_box=True, by_mask=False is built here (no masks)")
        self.min_gt_bbox_wh = tuple(min_gt_bbox_wh)
        self.keep_empty = keep_empty

    def _keep(self, boxes: np.ndarray) -> np.ndarray:
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        return (w > self.min_gt_bbox_wh[0]) & (h > self.min_gt_bbox_wh[1])

    def __call__(self, results: dict) -> dict | None:
        if len(results["boxes"]) + len(results["ignore_boxes"]) == 0:
            return results
        keep, keep_ignore = self._keep(results["boxes"]), self._keep(results["ignore_boxes"])
        if not (keep.any() or keep_ignore.any()) and self.keep_empty:
            return None
        select_boxes(results, keep, keep_ignore, type(self).__name__)   # keep_empty=False: maybe none left
        return results


class RandomFlip(RandomTransform):
    """mmdetection's ``RandomFlip``. ``prob`` float with one or more ``direction`` values
    (``horizontal``, ``vertical``, ``diagonal``) split equally, or a list of probabilities, one
    per direction. Boxes flip as ``x1' = w - x2``. ``meta["flip"]``/``flip_direction`` give the
    NET flip, so flipping twice the same way restores ``flip=False``."""

    def __init__(self, *, prob=0.5, direction="horizontal", rng=None):
        super().__init__(rng)
        directions = [direction] if isinstance(direction, str) else list(direction)
        for d in directions:
            if d not in ("horizontal", "vertical", "diagonal"):
                raise ValueError(f"RandomFlip direction must be horizontal, vertical or diagonal, got {d!r}")
        if isinstance(prob, (list, tuple)):
            if len(prob) != len(directions):
                raise ValueError(f"RandomFlip needs one prob per direction, got prob={prob} for {directions}")
            probs = [float(p) for p in prob]
        else:
            probs = [float(prob) / len(directions)] * len(directions)
        if not (all(p >= 0 for p in probs) and sum(probs) <= 1 + 1e-9):
            raise ValueError(f"RandomFlip probabilities must be >= 0 and sum to <= 1, got {prob!r}")
        self.prob, self.direction = prob, direction
        self._choices = directions + [None]
        self._probs = probs + [max(0.0, 1.0 - sum(probs))]

    def __call__(self, results: dict) -> dict:
        choice = self._choices[int(self.rng.choice(len(self._choices), p=self._probs))]
        return results if choice is None else flip(results, choice)


def flip(results: dict, direction: str) -> dict:
    """Flip image and boxes ``horizontal``ly, ``vertical``ly or both (``diagonal``)."""
    fx, fy = _FLIP_AXES[direction]
    h, w = image_hw(results)
    code = {(True, False): 1, (False, True): 0, (True, True): -1}[(fx, fy)]
    results["image"] = cv2.flip(np.ascontiguousarray(results["image"]), code)
    step = np.diag([-1.0 if fx else 1.0, -1.0 if fy else 1.0, 1.0])
    step[0, 2], step[1, 2] = (w if fx else 0), (h if fy else 0)
    results["boxes"] = map_boxes(results["boxes"], step).astype(np.float32)
    results["ignore_boxes"] = map_boxes(results["ignore_boxes"], step).astype(np.float32)
    meta = results["meta"]
    px, py = _FLIP_AXES[meta.get("flip_direction") if meta.get("flip") else None]
    net = _AXES_FLIP[(px != fx, py != fy)]
    meta.update(flip=net is not None, flip_direction=net, flip_shape=(h, w))
    compose_homography(meta, step)
    return results


class Pad(Transform):
    """mmdetection's ``Pad``: pad bottom/right to ``size = (w, h)``, to a multiple of
    ``size_divisor``, or to a square (``pad_to_square``, then rounded up to the divisor).

    ``pad_val`` is a number, a colour triple, or mmdetection's ``dict(img=..., seg=...)``. A
    triple is in mmdetection's channel order, BGR (its images are BGR), and is reversed for our
    RGB image, so a config pads with the same colour in both. ``meta["pad_shape"]`` and
    ``meta["img_shape"]`` become the padded (h, w), as mmcv 2.x's ``Pad`` sets them: mmdetection
    then counts the priors over the padding as valid and clips decoded boxes to the padded size
    (``content_shape`` keeps the real pixels' (h, w)). Boxes do not move."""

    def __init__(self, *, size=None, size_divisor: int | None = None, pad_to_square: bool = False,
                 pad_val=0, padding_mode: str = "constant"):
        if size is None and size_divisor is None and not pad_to_square:
            raise ValueError("Pad needs size=(w, h), size_divisor or pad_to_square=True")
        if padding_mode != "constant":
            raise ValueError(f"Pad supports padding_mode='constant' only, got {padding_mode!r}")
        self.size = None if size is None else tuple(size)
        self.size_divisor = size_divisor
        self.pad_to_square = pad_to_square
        self.pad_val = pad_val.get("img", 0) if isinstance(pad_val, dict) else pad_val

    def target_shape(self, h: int, w: int) -> tuple[int, int]:
        """Padded (h, w) for an (h, w) image."""
        th, tw = (h, w)
        if self.pad_to_square:
            th = tw = max(h, w)
        if self.size_divisor:
            d = self.size_divisor
            th, tw = math.ceil(th / d) * d, math.ceil(tw / d) * d
        elif self.size is not None:
            tw, th = self.size
        if th < h or tw < w:
            raise ValueError(f"Pad target {tw}x{th} (w x h) is smaller than the image {w}x{h}")
        return th, tw

    def __call__(self, results: dict) -> dict:
        img = results["image"]
        h, w = img.shape[:2]
        th, tw = self.target_shape(h, w)
        if (th, tw) != (h, w):
            val = self.pad_val
            val = [float(v) for v in val][::-1] if isinstance(val, (list, tuple)) else [float(val)] * img.shape[2]
            img = cv2.copyMakeBorder(np.ascontiguousarray(img), 0, th - h, 0, tw - w, cv2.BORDER_CONSTANT, value=val)
        results["image"] = img
        meta = results["meta"]
        meta.setdefault("content_shape", tuple(meta.get("img_shape", (h, w))))
        meta.update(img_shape=(th, tw), pad_shape=(th, tw), pad_size_divisor=self.size_divisor,
                    pad_fixed_size=self.size)
        return results


# --------------------------------------------------------------------------- normalize / tensor


class Normalize(Transform):
    """``(image - mean) / std`` to float32. ``to_rgb=True`` (mmdetection's usual): ``mean``/``std``
    are RGB and the network gets RGB, which our image already is. ``to_rgb=False``: as in
    mmdetection, the network gets the BGR image and ``mean``/``std`` are BGR."""

    def __init__(self, *, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), to_rgb: bool = True):
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        if np.any(self.std == 0):
            raise ValueError(f"Normalize std must be non-zero, got {list(std)}")
        self.to_rgb = to_rgb

    def __call__(self, results: dict) -> dict:
        img = results["image"].astype(np.float32)
        if not self.to_rgb:
            img = img[..., ::-1]
        results["image"] = (img - self.mean) / self.std
        results["meta"]["img_norm_cfg"] = dict(mean=self.mean.tolist(), std=self.std.tolist(), to_rgb=self.to_rgb)
        return results


class ToTensor(Transform):
    """Last step: ``image`` -> float32 (3, H, W) tensor; boxes/ignore float32 (N, 4), labels int64."""

    def __call__(self, results: dict) -> dict:
        img = np.ascontiguousarray(results["image"], dtype=np.float32)
        results["image"] = torch.from_numpy(img.transpose(2, 0, 1).copy())
        results["boxes"] = torch.as_tensor(np.asarray(results["boxes"], np.float32).reshape(-1, 4))
        results["labels"] = torch.as_tensor(np.asarray(results["labels"], np.int64).reshape(-1))
        results["ignore_boxes"] = torch.as_tensor(np.asarray(results["ignore_boxes"], np.float32).reshape(-1, 4))
        return results


# --------------------------------------------------------------------------- composition


class Compose(Transform):
    """Apply ``transforms`` in order. ``rng`` (Generator, seed or None): when given, every random
    transform draws from this one generator, so a seeded pipeline is reproducible."""

    def __init__(self, transforms: Sequence, *, rng=None):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose needs callables, got {t!r}")
        self.rng = None
        if rng is not None:
            self.set_rng(rng)

    def set_rng(self, rng) -> None:
        """Share one generator (from ``rng``: Generator, seed or None) with every random step."""
        self.rng = as_generator(rng)
        for t in self.transforms:
            if hasattr(t, "set_rng"):
                t.set_rng(self.rng)

    def __call__(self, results: dict) -> dict | None:
        """The transformed ``results``, or None as soon as a step returns None (as mmcv's Compose:
        e.g. :class:`RandomCrop` left no box; the dataset then fetches another sample)."""
        for t in self.transforms:
            results = t(results)
            if results is None:
                return None
        return results

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


# --------------------------------------------------------------------------- inverse mapping


def boxes_to_original(boxes, meta: dict, clip: bool = True):
    """Map (N, 4) xyxy boxes from network-input pixels back to the original image.

    Uses ``meta["homography"]`` when present (exact for any chain of resizes, flips, expands,
    crops and mosaics; through a :class:`RandomAffine`'s rotation or shear the box's 4 corners are
    mapped back and their bounding box taken); otherwise undoes ``flip_direction`` then ``scale_factor``. The result is clipped
    to ``ori_shape`` unless ``clip=False`` (detections: mmdetection rescales them without clipping
    again). Returns the same kind (tensor or array) as given."""
    is_tensor = isinstance(boxes, torch.Tensor)
    arr = (boxes.detach().cpu().numpy() if is_tensor else np.asarray(boxes)).astype(np.float64).reshape(-1, 4)
    if meta.get("homography") is not None:
        out = _map_corners(arr, np.linalg.inv(np.asarray(meta["homography"], np.float64)))
    else:
        out = _legacy_inverse(arr, meta)
    if clip:
        out = clip_boxes(out, tuple(meta["ori_shape"]))
    if is_tensor:
        return torch.as_tensor(out, dtype=boxes.dtype if boxes.is_floating_point() else torch.float32,
                               device=boxes.device)
    return out.astype(np.float32)


def _map_corners(arr: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 4) float64 xyxy through a 3x3 homography: the bounding box of the 4 mapped corners
    (with the projective division). For the axis-aligned steps (resize, flip, crop, pad, mosaic)
    the same numbers as :func:`map_boxes`; :class:`RandomAffine` rotates and shears."""
    if matrix[0, 1] == 0 and matrix[1, 0] == 0 and matrix[2, 0] == 0 and matrix[2, 1] == 0 and matrix[2, 2] == 1:
        return map_boxes(arr, matrix)
    corners = arr[:, [0, 1, 2, 1, 0, 3, 2, 3]].reshape(-1, 4, 2)
    mapped = corners @ matrix[:2, :2].T + matrix[:2, 2]
    mapped = mapped / (corners @ matrix[2, :2] + matrix[2, 2])[..., None]
    return np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1)


def _legacy_inverse(arr: np.ndarray, meta: dict) -> np.ndarray:
    """Undo flip (at the shape it was made at) then ``scale_factor``, for metas without a homography."""
    if meta.get("flip"):
        h, w = meta.get("flip_shape", meta["img_shape"])
        fx, fy = _FLIP_AXES[meta.get("flip_direction") or "horizontal"]
        step = np.diag([-1.0 if fx else 1.0, -1.0 if fy else 1.0, 1.0])
        step[0, 2], step[1, 2] = (w if fx else 0), (h if fy else 0)
        arr = map_boxes(arr, step)
    sx, sy = meta.get("scale_factor", (1.0, 1.0))
    return arr / np.array([sx, sy, sx, sy])
