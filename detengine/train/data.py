"""Datasets and pipelines for training and evaluation, from a config and a ``--data`` choice."""
from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..builder import ConfigBuildError
from ..data import (
    CocoDataset,
    Collate,
    DatasetError,
    ImageReadError,
    Normalize,
    ToTensor,
    VocDataset,
    build_pipeline,
    ensure_synthetic_dataset,
    sample_to_results,
)
from ..data.mixing import copy_results
from ..data.pipeline import LOADING_TRANSFORMS, MULTI_IMAGE_MIX, MultiImageMixPipeline
from .distributed import shard

__all__ = ["SeededTrainSet", "EvalSet", "DataBundle", "EpochOrder", "HANDLED_HOOKS", "MAX_REFETCH", "build_data",
           "resolve_data", "pipelines_for", "test_pipeline_for", "train_stages_for", "mix_dataset_of"]

#: ``custom_hooks`` types that :func:`build_data` carries out (the trainer handles ``EMAHook``).
HANDLED_HOOKS = ("PipelineSwitchHook",)


@dataclass(frozen=True)
class EpochOrder:
    """This rank's sample order of each epoch: ``order(epoch) -> list[int]`` dataset indices.

    A shuffle seeded by ``seed * 100_003 + epoch`` (torch.randperm), then this rank's share as
    :func:`detengine.train.distributed.shard` gives it (padded by repetition to equal length, so
    an index may appear twice), computed from ``world`` / ``rank`` so it is picklable and pure."""

    seed: int
    n: int
    world: int = 1
    rank: int = 0

    def __call__(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + int(epoch))
        return shard(torch.randperm(self.n, generator=g).tolist(), self.world, self.rank)


MAX_REFETCH = 100  # mmdetection's dataset tries 1000 other samples; a pipeline that needs more is broken


class _LRU:
    """A small least-recently-used memo (``capacity`` 0: keeps nothing)."""

    def __init__(self, capacity: int):
        self.capacity, self.items = int(capacity), OrderedDict()

    def get(self, key):
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        if self.capacity <= 0:
            return
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.capacity:
            self.items.popitem(last=False)


def _cache_sizes(pipelines) -> tuple[int, int]:
    """LRU capacities (raw samples, prefix results) for the cached transforms of ``pipelines``
    (and a few raw samples for the data-set draws of Mosaic / MixUp: MixUp loads its draw twice)."""
    raw = prefix = 0
    for pipeline in pipelines:
        for k, t in enumerate(pipeline.transforms):
            if getattr(t, "needs_mix_source", False):
                raw = max(raw, t.max_cached_images + 4)
                prefix += t.max_cached_images + 4 if k > 0 else 0
            if hasattr(t, "get_indexes"):
                raw = max(raw, 8)
    return raw, prefix


class SeededTrainSet(torch.utils.data.Dataset):
    """Training samples whose augmentation is seeded by (seed, epoch, index): the same sample of
    the same epoch always gets the same crop, flip and colour jitter, in any worker. One thread
    per instance (DataLoader workers are processes, each with its own copy).

    ``stages``: ``[(switch_epoch, switch_pipeline), ...]`` (mmdetection's ``PipelineSwitchHook``,
    :func:`train_stages_for`): from 0-based epoch ``switch_epoch`` on, ``switch_pipeline``
    replaces ``pipeline``; :meth:`set_epoch` picks the one in force (``self.pipeline``).

    Sample ``index`` of epoch ``e`` runs the pipeline with ``default_rng([seed, e, index])``. A
    step returning None (:class:`~detengine.data.transforms.RandomCrop` left no box) makes it
    fetch another sample, as mmdetection's dataset does: attempt ``a`` draws the sample and then
    the pipeline from ``default_rng([seed, e, index, a])``, up to :data:`MAX_REFETCH` attempts.

    Cached transforms (``CachedMosaic``, ``CachedMixUp``, :mod:`detengine.data.mixing`) get their
    cache from this set, as a pure function of (seed, epoch, position): at the position ``p`` of
    ``index`` in this rank's order of the epoch (:meth:`set_order`, an :class:`EpochOrder`;
    identity without one; the first occurrence of an index the shard repeats), the cache of a
    transform at step ``k`` is what reached step ``k`` at the last ``max_cached_images``
    positions of this rank's timeline (the epochs' orders one after another, back to the epoch
    the current pipeline stage started; fewer at the start, as mmdetection's cache fills up).
    The entry of an earlier position is its sample's own first attempt that reached step ``k``
    (step 0: the loaded sample), recomputed with that sample's own seed when it is not in the
    small memo that sequential access fills (after a resume, or in another DataLoader worker).

    A pipeline of mmdetection's ``MultiImageMixDataset`` (a
    :class:`~detengine.data.pipeline.MultiImageMixPipeline`, YOLOX) runs each step as that wrapper
    does (:meth:`~detengine.data.pipeline.MultiImageMixPipeline.run_step`): ``Mosaic`` / ``MixUp``
    draw their indexes from the sample's generator (the same seeded draws as every other step) and
    get the samples loaded from this set; a step returning None runs again on the same input. The
    ``YOLOXModeSwitchHook``'s ``skip_type_keys`` is a stage (:func:`train_stages_for`).
    """

    def __init__(self, dataset, pipeline, seed: int = 0, *, stages=()):
        self.dataset, self.seed = dataset, int(seed)
        self.stages = sorted([(0, pipeline), *((int(e), p) for e, p in stages)], key=lambda s: s[0])
        self.pipeline = pipeline
        self.order = None
        self.epoch = 0
        self._capacities = _cache_sizes(p for _, p in self.stages)
        self._reset_memos()
        self.set_epoch(0)

    def _reset_memos(self) -> None:
        self._raw_memo, self._prefix_memo = _LRU(self._capacities[0]), _LRU(self._capacities[1])
        self._orders = _LRU(4)

    def __getstate__(self) -> dict:  # DataLoader workers start with empty memos
        state = dict(self.__dict__)
        state.update(_raw_memo=_LRU(0), _prefix_memo=_LRU(0), _orders=_LRU(0))
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_memos()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.pipeline = self._stage(self.epoch)[1]

    def set_order(self, order) -> None:
        """Use ``order(epoch) -> list[int]`` (this rank's :class:`EpochOrder`) as the timeline."""
        self.order = order
        self._orders = _LRU(4)

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    @property
    def label_to_cat_id(self) -> dict[int, int]:
        return getattr(self.dataset, "label_to_cat_id", {i: i + 1 for i in range(len(self.class_names))})

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self._produce(self.epoch, int(index))

    def sample(self, index: int, epoch: int | None = None, observe=None) -> dict:
        """``self[index]`` of ``epoch`` (default: the current one), the same sample; with
        ``observe(attempt, transform, results)`` called on the loaded sample (``transform``
        None) and after each pipeline step of each attempt (``results`` None: that step refused
        the sample and another one is fetched). What the window's pipeline stepper shows;
        ``observe`` must copy what it keeps (the steps change the results in place)."""
        return self._produce(self.epoch if epoch is None else int(epoch), int(index), observe=observe)

    # ------------------------------------------------------------------ producing samples
    def _stage(self, epoch: int) -> tuple[int, object]:
        """(first epoch, pipeline) of the stage that ``epoch`` trains with."""
        return [s for s in self.stages if s[0] <= epoch][-1]

    def _produce(self, epoch: int, index: int, stop: int | None = None, observe=None) -> dict:
        """Sample ``index`` of ``epoch`` through the pipeline (its first ``stop`` steps), with
        refetches; ``observe``: see :meth:`sample`."""
        pipeline = self._stage(epoch)[1]
        steps = pipeline.transforms[:stop]
        mixing = any(getattr(t, "needs_mix_source", False) for t in steps)
        reached: set[int] = set()  # cached steps an earlier attempt reached (their entry is taken)
        unreadable: list[str] = []  # images that could not be decoded: skipped, another sample is drawn
        failed = None
        for attempt in range(MAX_REFETCH):
            rng = np.random.default_rng([self.seed, epoch, index, attempt] if attempt else [self.seed, epoch, index])
            try:
                results = self._raw(index if attempt == 0 else int(rng.integers(len(self.dataset))))
            except ImageReadError as exc:
                unreadable.append(str(exc))
                continue
            if mixing:
                results["mix_source"] = _WindowSource(self, epoch, index, reached)
            if observe is not None:
                observe(attempt, None, results)
            results, failed = _run(pipeline, steps, results, rng,
                                   None if observe is None else lambda t, r, a=attempt: observe(a, t, r),
                                   dataset=_LoadedView(self))
            if results is not None:
                results.pop("mix_source", None)
                if unreadable:
                    results.setdefault("meta", {})["unreadable"] = unreadable
                return results
        if failed is None:
            raise DatasetError(f"training sample {index} (epoch {epoch}): {MAX_REFETCH} images in a row could not "
                               f"be read, e.g. {unreadable[0]}")
        raise DatasetError(f"training sample {index} (epoch {epoch}): the train pipeline's step {failed!r} "
                           f"returned None for {MAX_REFETCH} samples in a row (e.g. RandomCrop with "
                           f"allow_negative_crop=False and no box left); do the images have boxes?")

    def _raw(self, index: int) -> dict:
        """The loaded sample as a results dict that the caller owns."""
        if self._raw_memo.capacity <= 0:
            return sample_to_results(self.dataset.load_sample(index))
        sample = self._raw_memo.get(index)
        if sample is None:
            sample = self.dataset.load_sample(index)
            self._raw_memo.put(index, sample)
        return copy_results(sample_to_results(sample))

    # ------------------------------------------------------------------ the caches' windows
    def _order(self, epoch: int) -> tuple[list[int], dict[int, int]]:
        """(this rank's order of ``epoch``, index -> first position)."""
        hit = self._orders.get(epoch)
        if hit is None:
            order = list(range(len(self.dataset))) if self.order is None else list(self.order(epoch))
            hit = (order, {i: p for p, i in reversed(list(enumerate(order)))})
            self._orders.put(epoch, hit)
        return hit

    def _window_keys(self, epoch: int, index: int, size: int) -> list[tuple[int, int]]:
        """(epoch, index) of up to ``size - 1`` positions before ``index``'s, oldest first."""
        first_epoch = self._stage(epoch)[0]
        position = self._order(epoch)[1].get(index)
        if position is None:  # not in this rank's order (a direct ``ds[i]``): no history
            return []
        keys, e = [], epoch
        while len(keys) < size - 1:
            position -= 1
            while position < 0:
                e -= 1
                if e < first_epoch:
                    return keys[::-1]
                position = len(self._order(e)[0]) - 1
            keys.append((e, self._order(e)[0][position]))
        return keys[::-1]

    def _entry(self, key: tuple[int, int], step: int) -> dict:
        """What reached pipeline step ``step`` for sample ``key = (epoch, index)``: a copy."""
        epoch, index = key
        if step == 0:
            try:
                return self._raw(index)
            except ImageReadError:  # as _produce: the first readable sample its refetches draw
                return self._produce(epoch, index, stop=0)
        hit = self._prefix_memo.get((epoch, index, step))
        if hit is None:
            hit = self._produce(epoch, index, stop=step)
            self._prefix_memo.put((epoch, index, step), hit)
        return copy.deepcopy(hit)

    def _remember(self, key: tuple[int, int], step: int, results: dict) -> None:
        if step > 0:
            self._prefix_memo.put((*key, step), copy_results(results))


def _run(pipeline, steps: list, results: dict, rng: np.random.Generator, observe=None,
         dataset=None) -> tuple[dict | None, object]:
    """``steps`` of ``pipeline`` on ``results`` with ``rng`` (the pipeline's own generator is
    restored after: a cached transform may compute another sample in the middle of a run).
    Returns (results, None), or (None, the step that returned None). ``observe(step,
    results)`` after each step. A :class:`MultiImageMixPipeline` runs its steps as mmdetection's
    wrapper (``dataset``: where Mosaic / MixUp take their samples; never None)."""
    saved = pipeline.rng
    pipeline.set_rng(rng)
    wrapped = isinstance(pipeline, MultiImageMixPipeline)
    try:
        for t in steps:
            results = pipeline.run_step(t, results, dataset) if wrapped else t(results)
            if observe is not None:
                observe(t, results)
            if results is None:
                return None, t
        return results, None
    finally:
        if saved is not None:
            pipeline.set_rng(saved)


class _LoadedView:
    """The training set as mmdetection's wrapper sees the data set inside it: ``len`` and
    ``[i]``, sample ``i`` loaded (a copy; None when its image cannot be read)."""

    def __init__(self, owner: SeededTrainSet):
        self.owner = owner

    def __len__(self) -> int:
        return len(self.owner.dataset)

    def __getitem__(self, index: int) -> dict | None:
        try:
            return self.owner._raw(int(index))
        except ImageReadError:
            return None


class _WindowSource:
    """``results["mix_source"]`` of one sample: its cached transforms' windows (see SeededTrainSet)."""

    def __init__(self, owner: SeededTrainSet, epoch: int, index: int, reached: set[int]):
        self.owner, self.epoch, self.index, self.reached = owner, epoch, index, reached

    def window(self, transform, results: dict, size: int) -> _Window:
        step = next(k for k, t in enumerate(self.owner._stage(self.epoch)[1].transforms) if t is transform)
        if step not in self.reached:  # the first attempt to reach a step is this position's entry
            self.reached.add(step)
            self.owner._remember((self.epoch, self.index), step, results)
        return _Window(self.owner, self.owner._window_keys(self.epoch, self.index, size), step, results)


class _Window:
    """The entries of a window, computed (or taken from the memos) only when asked for."""

    def __init__(self, owner: SeededTrainSet, keys: list, step: int, current: dict):
        self.owner, self.keys, self.step, self.current = owner, keys, step, current

    def __len__(self) -> int:
        return len(self.keys) + 1

    def get(self, i: int) -> dict:
        if i == len(self.keys):
            return copy_results(self.current)
        return self.owner._entry(self.keys[i], self.step)


class EvalSet(torch.utils.data.Dataset):
    """Deterministic (test-pipeline) samples for evaluation and export."""

    def __init__(self, dataset, pipeline):
        self.dataset, self.pipeline = dataset, pipeline

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.pipeline(sample_to_results(self.dataset.load_sample(index)))


@dataclass
class DataBundle:
    train: object | None
    val: object | None
    train_pipeline: object
    test_pipeline: object
    collate: Collate
    description: str

    @property
    def class_names(self) -> list[str]:
        return (self.train or self.val).class_names


def _normalize_step(model_cfg: dict) -> Normalize:
    """The ``data_preprocessor``'s normalisation, with mmdetection's defaults (mmengine's
    ``ImgDataPreprocessor.__init__``: ``mean=None, std=None, bgr_to_rgb=False``): no ``mean`` /
    ``std`` means no normalisation (the float pixels, 0..255), and without ``bgr_to_rgb=True`` the
    network gets the channels as mmcv's loader gives them, BGR (our images are RGB: they are
    flipped). ``mean`` without ``std`` (or the reverse) is refused, as mmengine asserts."""
    pre = model_cfg.get("data_preprocessor") or {}
    mean, std = pre.get("mean"), pre.get("std")
    if (mean is None) != (std is None):
        raise ConfigBuildError(f"model.data_preprocessor gives {'mean' if std is None else 'std'} without "
                               f"{'std' if std is None else 'mean'}: give both, or neither (no normalisation)")
    if mean is None:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return Normalize(mean=mean, std=std, to_rgb=bool(pre.get("bgr_to_rgb", False)))


def pipelines_for(cfg: dict, seed: int = 0):
    """(train, test) pipelines: the config's ``train_pipeline`` / ``test_pipeline`` plus the
    model's ``data_preprocessor`` normalisation (mmdetection does that on the model) and ToTensor."""
    return _pipeline_for(cfg, "train_pipeline", seed), test_pipeline_for(cfg, seed)


def test_pipeline_for(cfg: dict, seed: int = 0):
    """The test pipeline alone (what the debug views and evaluation run): a train pipeline step
    DetScope lacks does not stop them."""
    return _pipeline_for(cfg, "test_pipeline", seed)


_MIX_DATASET_KEYS = ("type", "dataset", "pipeline", "skip_type_keys", "max_refetch", "lazy_init")


def mix_dataset_of(cfg: dict) -> dict | None:
    """``train_dataloader.dataset`` when it is mmdetection's ``MultiImageMixDataset`` (YOLOX's files):
    ``{pipeline, skip_type_keys, max_refetch}``, its ``pipeline`` being the train pipeline; else
    None (the config's ``train_pipeline`` is). The data set inside it is where the images come from
    in mmdetection; here they come from ``--data``, so only its ``pipeline`` is read: loading steps
    only (what DetScope's data sets do themselves)."""
    ds = (cfg.get("train_dataloader") or {}).get("dataset")
    if not isinstance(ds, dict) or ds.get("type") != MULTI_IMAGE_MIX:
        return None
    where = f"train_dataloader.dataset ({MULTI_IMAGE_MIX})"
    unknown = sorted(set(ds) - set(_MIX_DATASET_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown arguments {unknown}; known: {list(_MIX_DATASET_KEYS)}")
    if not isinstance(ds.get("pipeline"), (list, tuple)):
        raise ValueError(f"{where} needs a pipeline (a list of transform dicts)")
    inner = ds.get("dataset") or {}
    steps = [t.get("type") if isinstance(t, dict) else t for t in (inner.get("pipeline") or [])]
    extra = [t for t in steps if t not in LOADING_TRANSFORMS]
    if extra:
        raise ValueError(f"{where}: the data set inside it may only load ({list(LOADING_TRANSFORMS)}); its pipeline "
                         f"also has {extra}: put those steps in the wrapper's pipeline")
    skip = ds.get("skip_type_keys") or ()
    if isinstance(skip, str) or not all(isinstance(k, str) for k in skip):
        raise ValueError(f"{where}: skip_type_keys must be a list of transform type names, got {skip!r}")
    return {"pipeline": list(ds["pipeline"]), "skip_type_keys": tuple(skip),
            "max_refetch": int(ds.get("max_refetch", 15))}


def _pipeline_for(cfg: dict, key: str, seed: int):
    mix = mix_dataset_of(cfg) if key == "train_pipeline" else None
    if mix is not None:
        pipeline = build_pipeline(mix["pipeline"], rng=seed, mix_dataset=mix)
    else:
        if key not in cfg:
            raise DatasetError(f"the config has no {key}: add one (mmdetection layout) to train or evaluate")
        pipeline = build_pipeline(cfg[key], rng=seed)
        _refuse_unwrapped_mixing(pipeline, key)
    pipeline.transforms += [_normalize_step(cfg["model"]), ToTensor()]
    return pipeline


def _refuse_unwrapped_mixing(pipeline, where: str) -> None:
    """Mosaic / MixUp outside a ``MultiImageMixDataset``: mmdetection fails at the first sample."""
    mixing = [type(t).__name__ for t in pipeline.transforms if hasattr(t, "get_indexes")]
    if mixing:
        raise ValueError(f"{where}: {', '.join(mixing)} take(s) other images from the data set, which mmdetection's "
                         f"MultiImageMixDataset wrapper provides: give train_dataloader.dataset = "
                         f"dict(type='{MULTI_IMAGE_MIX}', dataset=dict(type='CocoDataset', pipeline=[LoadImageFromFile, "
                         f"LoadAnnotations]), pipeline=<these steps>) (as mmdetection's YOLOX configs)")


def _max_epochs(cfg: dict) -> int:
    return int((cfg.get("train_cfg") or {}).get("max_epochs", 12))


def train_stages_for(cfg: dict, seed: int = 0, max_epochs: int | None = None) -> list[tuple[int, object]]:
    """``custom_hooks``' ``PipelineSwitchHook`` entries as ``(switch_epoch, pipeline)``, each
    pipeline completed as in :func:`pipelines_for`; and, for a ``MultiImageMixDataset`` train
    pipeline, ``YOLOXModeSwitchHook``'s switch: from its epoch (``max_epochs - num_last_epochs -
    1``, 0-based, as mmdetection's hook; ``max_epochs`` default: the config's) the wrapper's
    pipeline with the hook's ``skip_type_keys`` (Mosaic, RandomAffine, MixUp) skipped, as the
    hook's ``update_skip_type_keys``. Other hook types are left to their owners
    (:data:`HANDLED_HOOKS`; the runner switches YOLOX's L1 loss on)."""
    from ..heads.yolox import mode_switch_epoch
    stages = []
    mix = mix_dataset_of(cfg)
    epoch, skip = mode_switch_epoch(cfg, _max_epochs(cfg) if max_epochs is None else int(max_epochs))
    if mix is not None and epoch is not None:
        pipeline = build_pipeline(mix["pipeline"], rng=seed, mix_dataset=dict(mix, skip_type_keys=skip))
        pipeline.transforms += [_normalize_step(cfg["model"]), ToTensor()]
        stages.append((int(epoch), pipeline))
    for i, hook in enumerate(cfg.get("custom_hooks") or []):
        if not isinstance(hook, dict) or hook.get("type") != "PipelineSwitchHook":
            continue
        args = {k: v for k, v in hook.items() if k not in ("type", "priority")}
        if set(args) != {"switch_epoch", "switch_pipeline"}:
            raise ValueError(f"custom_hooks[{i}] PipelineSwitchHook needs exactly switch_epoch and "
                             f"switch_pipeline (and optionally priority), got {sorted(args)}")
        try:
            pipeline = build_pipeline(args["switch_pipeline"], rng=seed)
        except ValueError as exc:
            raise ValueError(f"custom_hooks[{i}] PipelineSwitchHook switch_pipeline: {exc}") from exc
        _refuse_unwrapped_mixing(pipeline, f"custom_hooks[{i}] PipelineSwitchHook switch_pipeline")
        pipeline.transforms += [_normalize_step(cfg["model"]), ToTensor()]
        stages.append((int(args["switch_epoch"]), pipeline))
    return stages


def resolve_data(data: str | None, cfg: dict) -> tuple[str, dict]:
    """Which data set to use: ``"synthetic"`` (default), a COCO JSON file, a VOC root, or
    ``"project"``: a dataset :class:`~detengine.data.project.AnnotationProject` opens (a YOLO
    ``data.yaml`` or folder, a labelme folder), trained on as COCO (:func:`_project_sets`)."""
    data = data or cfg.get("data", {}).get("default", "synthetic")
    if data == "synthetic":
        return "synthetic", dict(cfg.get("data", {}).get("synthetic", {}))
    path = Path(data)
    if path.suffix == ".json":
        if not path.is_file():
            raise DatasetError(f"{path}: no such COCO annotation file")
        return "coco", {"ann_file": path}
    if (path / "Annotations").is_dir():
        return "voc", {"root": path}
    if path.exists():
        from ..data.formats import detect_format
        kind, source = detect_format(path)
        if kind in ("yolo", "labelme"):
            return "project", {"path": source}
    raise DatasetError(f"--data must be 'synthetic', a COCO .json file, a Pascal VOC folder, a YOLO data.yaml or "
                       f"folder (images + .txt labels) or a labelme folder, got {data!r}")


def _project_sets(path: Path) -> tuple[CocoDataset, CocoDataset | None, str]:
    """(train, val, description) of a YOLO / labelme dataset, through the annotation project as
    COCO: the images tagged ``train`` (every image when none is) and those tagged ``val`` (None
    when none is: as a VOC folder without a test list). ``test`` images are in neither. The COCO
    files live only while the datasets read them (everything is read at construction)."""
    import tempfile

    from ..data.project import SPLIT_KEY, AnnotationProject, write_split
    project = AnnotationProject.open(path)
    tags = [im.extra.get(SPLIT_KEY) for im in project.images]
    train_idx = [i for i, t in enumerate(tags) if t == "train"] if "train" in tags else list(range(len(tags)))
    val_idx = [i for i, t in enumerate(tags) if t == "val"] if "train" in tags else []
    with tempfile.TemporaryDirectory(prefix="detscope-data-") as tmp:
        train = CocoDataset(write_split(project, train_idx, Path(tmp) / "train.json"), project.image_root)
        val = CocoDataset(write_split(project, val_idx, Path(tmp) / "val.json"), project.image_root) if val_idx else None
    counts = f"{len(train)} train" + (f" / {len(val)} val" if val is not None else "") + " images"
    problems = f", {len(project.problems)} problems at open (detengine stats lists them)" if project.problems else ""
    return train, val, f"{project.kind} {path} ({counts}{problems})"


def _coco_images(ann_file: Path, images: str | None) -> Path:
    if images:
        return Path(images)
    for candidate in (ann_file.parent / "images", ann_file.parent):
        if candidate.is_dir():
            return candidate
    return ann_file.parent


def build_data(cfg: dict, data: str | None = None, *, val_data: str | None = None, images: str | None = None,
               seed: int = 0, for_training: bool = True, max_epochs: int | None = None) -> DataBundle:
    """Train and val datasets (raw), their pipelines and the collate function.
    ``for_training=False`` (evaluation, export): the train pipeline and its stages are not built
    (a train-pipeline step DetScope lacks does not stop them);
    ``train_pipeline`` is None and ``train`` carries the split under the test pipeline.
    ``max_epochs``: the run's length (default: the config's), for YOLOXModeSwitchHook's epoch.
    The train pipeline is ``train_dataloader.dataset.pipeline`` when that data set is mmdetection's
    ``MultiImageMixDataset`` (:func:`mix_dataset_of`), else the config's ``train_pipeline``."""
    kind, opts = resolve_data(data, cfg)
    if for_training:
        train_pipe, test_pipe = pipelines_for(cfg, seed)
    else:
        train_pipe, test_pipe = None, test_pipeline_for(cfg, seed)
    divisor = (cfg["model"].get("data_preprocessor") or {}).get("pad_size_divisor")
    if kind == "synthetic":
        paths = ensure_synthetic_dataset(**opts)
        train = CocoDataset(paths.train_json, paths.train_dir)
        val = CocoDataset(paths.val_json, paths.val_dir)
        desc = f"built-in synthetic data set ({len(train)} train / {len(val)} val images) in {paths.root}"
    elif kind == "coco":
        train = CocoDataset(opts["ann_file"], _coco_images(opts["ann_file"], images))
        val = CocoDataset(Path(val_data), _coco_images(Path(val_data), images)) if val_data else None
        desc = f"COCO {opts['ann_file']} ({len(train)} images)" + (f", val {val_data}" if val_data else "")
    elif kind == "project":
        train, val, desc = _project_sets(opts["path"])
    else:
        train = VocDataset(opts["root"], split="trainval")
        val = VocDataset(opts["root"], split="test") if (Path(opts["root"]) / "ImageSets/Main/test.txt").exists() \
            else None
        desc = f"Pascal VOC {opts['root']}"
    if for_training:
        train_set = SeededTrainSet(train, train_pipe, seed, stages=train_stages_for(cfg, seed, max_epochs))
    else:
        train_set = SeededTrainSet(train, test_pipe, seed)
    return DataBundle(train_set, val, train_pipe, test_pipe,
                      Collate(size_divisor=divisor if divisor and divisor > 1 else None), desc)
