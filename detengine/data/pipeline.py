"""mmdetection pipeline configs -> transforms: the one table of transform names,
:func:`build_pipeline`, and :class:`MultiImageMixPipeline`, the pipeline of mmdetection's
``MultiImageMixDataset`` wrapper (YOLOX's Mosaic / MixUp)."""
from __future__ import annotations

import collections.abc
import copy
from collections.abc import Sequence

import numpy as np

from .errors import DatasetError
from .mixing import CachedMixUp, CachedMosaic, MixUp, Mosaic
from .transforms import (
    Compose,
    Expand,
    FilterAnnotations,
    KeepRatioResize,
    MinIoURandomCrop,
    Normalize,
    Pad,
    PhotoMetricDistortion,
    RandomAffine,
    RandomChoiceResize,
    RandomCrop,
    RandomFlip,
    RandomResize,
    Resize,
    ToTensor,
    YOLOXHSVRandomAug,
)

__all__ = ["TRANSFORMS", "IGNORED_TRANSFORMS", "LOADING_TRANSFORMS", "build_pipeline", "MultiImageMixPipeline",
           "MULTI_IMAGE_MIX"]

TRANSFORMS = {cls.__name__: cls for cls in (PhotoMetricDistortion, YOLOXHSVRandomAug, Expand, MinIoURandomCrop,
                                             RandomCrop, RandomAffine, Resize, KeepRatioResize, RandomResize,
                                             RandomChoiceResize, FilterAnnotations, RandomFlip, Pad, Normalize,
                                             ToTensor, CachedMosaic, CachedMixUp, Mosaic, MixUp)}
IGNORED_TRANSFORMS = ("LoadImageFromFile", "LoadAnnotations", "PackDetInputs")
LOADING_TRANSFORMS = ("LoadImageFromFile", "LoadAnnotations")   # what the data set itself does
MULTI_IMAGE_MIX = "MultiImageMixDataset"


def build_pipeline(cfg_list: Sequence[dict], rng=None, *, mix_dataset: dict | None = None) -> Compose:
    """A :class:`Compose` from mmdetection-style dicts (``dict(type='Resize', scale=(300, 300))``).

    Loading and packing steps (``IGNORED_TRANSFORMS``) are skipped: the dataset loads and
    :class:`ToTensor` / ``collate`` pack. An unknown ``type`` or a bad argument raises
    ``ValueError`` naming the step and listing what is known/accepted. ``mix_dataset``
    (``skip_type_keys``, ``max_refetch``: mmdetection's ``MultiImageMixDataset`` arguments) makes
    a :class:`MultiImageMixPipeline`, without the steps whose type is skipped."""
    skip = tuple((mix_dataset or {}).get("skip_type_keys") or ())
    steps, types = [], []
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
            step = TRANSFORMS[name](**kwargs)
        except TypeError as exc:
            raise ValueError(f"pipeline step {i} ({name}): {exc}") from exc
        if name not in skip:
            steps.append(step)
            types.append(name)
    rng = rng if rng is not None else np.random.default_rng()
    if mix_dataset is None:
        return Compose(steps, rng=rng)
    return MultiImageMixPipeline(steps, skip_type_keys=skip, max_refetch=int(mix_dataset.get("max_refetch", 15)),
                                 rng=rng)


class MultiImageMixPipeline(Compose):
    """The pipeline of mmdetection's ``MultiImageMixDataset`` (YOLOX's train data set), its steps
    the wrapper's ``pipeline`` less ``skip_type_keys`` (which YOLOXModeSwitchHook sets for the
    last epochs). :meth:`run_step` runs one step as the wrapper's ``__getitem__`` does:

    - a step with ``get_indexes`` (:class:`~detengine.data.mixing.Mosaic`,
      :class:`~detengine.data.mixing.MixUp`) first draws its indexes from ``dataset`` and gets
      them loaded (``dataset[i]``, None when unreadable: drawn again, up to ``max_refetch``
      times) into ``results["mix_results"]``, removed after the step;
    - the step runs on a copy of its input, again (with new draws) while it returns None, up to
      ``max_refetch`` times; then the data set gives up (mmdetection raises): a
      :class:`~detengine.data.errors.DatasetError`. The wrapper never fetches another sample.

    ``dataset``: ``len(dataset)`` and ``dataset[i]`` (a loaded results dict, the caller's copy):
    :class:`detengine.train.data.SeededTrainSet` gives its own loaded samples. Calling the
    pipeline without one (image by image) runs the steps plainly; a Mosaic / MixUp then says it
    needs the data set."""

    def __init__(self, transforms: Sequence, *, skip_type_keys=(), max_refetch: int = 15, rng=None):
        if int(max_refetch) < 1:
            raise ValueError(f"MultiImageMixDataset max_refetch must be >= 1, got {max_refetch}")
        super().__init__(transforms, rng=rng)
        self.skip_type_keys = tuple(skip_type_keys)
        self.max_refetch = int(max_refetch)

    def run_step(self, transform, results: dict, dataset) -> dict:
        """``transform`` on ``results`` as the wrapper runs it (see the class doc)."""
        name = type(transform).__name__
        if hasattr(transform, "get_indexes"):
            for _ in range(self.max_refetch):
                indexes = transform.get_indexes(dataset)
                if not isinstance(indexes, collections.abc.Sequence):
                    indexes = [indexes]
                mix = [dataset[int(i)] for i in indexes]
                if all(m is not None for m in mix):
                    results["mix_results"] = mix
                    break
            else:
                raise DatasetError(f"{name}: the data set could not load the samples it drew {self.max_refetch} "
                                   f"times in a row (unreadable images?)")
        for _ in range(self.max_refetch):
            out = transform(_copy_keeping_source(results))
            if out is not None:
                out.pop("mix_results", None)
                return out
        raise DatasetError(f"the train pipeline's step {name} returned None {self.max_refetch} times in a row "
                           f"(MultiImageMixDataset's max_refetch): mmdetection stops there too")

    def __repr__(self) -> str:
        return (f"MultiImageMixPipeline(skip_type_keys={list(self.skip_type_keys)}, max_refetch={self.max_refetch}, "
                + super().__repr__() + ")")


def _copy_keeping_source(results: dict) -> dict:
    """A deep copy of ``results`` (as the wrapper's ``copy.deepcopy``), its ``mix_source`` shared."""
    source = results.get("mix_source")
    out = copy.deepcopy({k: v for k, v in results.items() if k != "mix_source"})
    if source is not None:
        out["mix_source"] = source
    return out
