"""What every data transform shares: the base classes and the bookkeeping of a results dict's
boxes (clip, select with a record of what was dropped, map through a 3x3 matrix, compose the
homography). :mod:`.transforms` (single-image) and :mod:`.mixing` (multi-image) build on it;
:mod:`.pipeline` names them for configs."""
from __future__ import annotations

import numpy as np

__all__ = ["Transform", "RandomTransform", "as_generator", "image_hw", "compose_homography", "select_boxes",
           "clip_boxes", "boxes_inside", "nonempty_boxes", "clip_and_drop", "map_boxes", "set_shapes"]


def as_generator(rng) -> np.random.Generator:
    """A Generator from a Generator, an int seed or None (fresh OS entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# --------------------------------------------------------------------------- box bookkeeping


def image_hw(results: dict) -> tuple[int, int]:
    return tuple(int(v) for v in results["image"].shape[:2])


def compose_homography(meta: dict, step: np.ndarray) -> None:
    """Left-multiply the 3x3 ``step`` onto ``meta["homography"]`` (original -> current)."""
    meta["homography"] = step @ meta.get("homography", np.eye(3))


def select_boxes(results: dict, keep: np.ndarray, keep_ignore: np.ndarray, name: str) -> None:
    """Keep rows ``keep`` (G,) bool / ``keep_ignore`` (I,) bool; record the dropped original rows."""
    meta = results["meta"]
    box_ids = meta.setdefault("box_ids", np.arange(len(results["boxes"])))
    ignore_ids = meta.setdefault("ignore_ids", np.arange(len(results["ignore_boxes"])))
    if keep.all() and keep_ignore.all():
        return
    gone, gone_ignore = box_ids[~keep], ignore_ids[~keep_ignore]  # rows mixed in from other samples are -1
    meta.setdefault("dropped", []).append(
        {"transform": name, "boxes": gone[gone >= 0].tolist(), "ignore_boxes": gone_ignore[gone_ignore >= 0].tolist()})
    results["boxes"] = results["boxes"][keep]
    results["labels"] = results["labels"][keep]
    results["ignore_boxes"] = results["ignore_boxes"][keep_ignore]
    meta["box_ids"], meta["ignore_ids"] = box_ids[keep], ignore_ids[keep_ignore]


def clip_boxes(boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(N, 4) xyxy clipped into an image of ``hw = (h, w)``."""
    h, w = hw
    out = boxes.copy()
    out[:, 0::2] = out[:, 0::2].clip(0, w)
    out[:, 1::2] = out[:, 1::2].clip(0, h)
    return out


def boxes_inside(boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(N,) bool: the box overlaps the ``hw = (h, w)`` image (mmdetection's
    ``HorizontalBoxes.is_inside``: ``x1 < w & y1 < h & x2 > 0 & y2 > 0``; a clipped box squashed
    onto the border fails it, a zero-area box inside passes)."""
    h, w = hw
    return (boxes[:, 0] < w) & (boxes[:, 1] < h) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def nonempty_boxes(boxes: np.ndarray) -> np.ndarray:
    """(N,) bool: width and height both > 0."""
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def clip_and_drop(results: dict, name: str, clip: bool = True) -> None:
    """Clip both box sets to the current image and drop the ones left with no area."""
    hw = image_hw(results)
    if clip:
        results["boxes"] = clip_boxes(results["boxes"], hw)
        results["ignore_boxes"] = clip_boxes(results["ignore_boxes"], hw)
    select_boxes(results, nonempty_boxes(results["boxes"]), nonempty_boxes(results["ignore_boxes"]), name)


def map_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy through an axis-aligned 3x3 affine ``matrix`` (scale/flip/translate)."""
    pts = np.stack([boxes[:, [0, 1]], boxes[:, [2, 3]]], axis=1).astype(np.float64)  # (N, 2, 2)
    mapped = pts @ matrix[:2, :2].T + matrix[:2, 2]
    lo, hi = mapped.min(axis=1), mapped.max(axis=1)
    return np.concatenate([lo, hi], axis=1)


def set_shapes(meta: dict, hw: tuple[int, int]) -> None:
    meta["img_shape"] = hw
    meta["pad_shape"] = hw


class Transform:
    """Base class: ``__call__(results) -> results``; geometric ones keep boxes consistent."""

    def __call__(self, results: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "rng" and not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class RandomTransform(Transform):
    """A transform whose randomness comes only from ``self.rng`` (a numpy Generator)."""

    def __init__(self, rng=None):
        self.rng = as_generator(rng)

    def set_rng(self, rng) -> None:
        """Use ``rng`` (Generator, seed or None) from now on."""
        self.rng = as_generator(rng)
