"""mmdetection pipeline configs -> transforms: the one table of transform names, and
:func:`build_pipeline`."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .mixing import CachedMixUp, CachedMosaic
from .transforms import (
    Compose,
    Expand,
    FilterAnnotations,
    KeepRatioResize,
    MinIoURandomCrop,
    Normalize,
    Pad,
    PhotoMetricDistortion,
    RandomChoiceResize,
    RandomCrop,
    RandomFlip,
    RandomResize,
    Resize,
    ToTensor,
    YOLOXHSVRandomAug,
)

__all__ = ["TRANSFORMS", "IGNORED_TRANSFORMS", "build_pipeline"]

TRANSFORMS = {cls.__name__: cls for cls in (PhotoMetricDistortion, YOLOXHSVRandomAug, Expand, MinIoURandomCrop,
                                             RandomCrop, Resize, KeepRatioResize, RandomResize, RandomChoiceResize,
                                             FilterAnnotations, RandomFlip, Pad, Normalize, ToTensor, CachedMosaic,
                                             CachedMixUp)}
IGNORED_TRANSFORMS = ("LoadImageFromFile", "LoadAnnotations", "PackDetInputs")


def build_pipeline(cfg_list: Sequence[dict], rng=None) -> Compose:
    """A :class:`Compose` from mmdetection-style dicts (``dict(type='Resize', scale=(300, 300))``).

    Loading and packing steps (``IGNORED_TRANSFORMS``) are skipped: the dataset loads and
    :class:`ToTensor` / ``collate`` pack. An unknown ``type`` or a bad argument raises
    ``ValueError`` naming the step and listing what is known/accepted."""
    steps = []
    for i, cfg in enumerate(cfg_list):
        if not isinstance(cfg, dict) or "type" not in cfg:
            raise ValueError(f"pipeline step {i} must be a dict with a 'type', got {cfg!r}")
        kwargs = dict(cfg)
        name = kwargs.pop("type")
        if name in IGNORED_TRANSFORMS:
            continue
        if name not in TRANSFORMS:
            raise ValueError(f"pipeline step {i}: unknown transform type {name!r}; known: "
                             f"{sorted(TRANSFORMS)} (and ignored: {list(IGNORED_TRANSFORMS)})")
        try:
            steps.append(TRANSFORMS[name](**kwargs))
        except TypeError as exc:
            raise ValueError(f"pipeline step {i} ({name}): {exc}") from exc
    return Compose(steps, rng=rng if rng is not None else np.random.default_rng())
