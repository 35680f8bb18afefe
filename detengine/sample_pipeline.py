"""The augmented sample the trainer sees: one image of a project through the config's *train*
pipeline, built by the trainer's own data path, with every stage kept for display.

    from detengine.api import training_sample
    ts = training_sample(cfg, project, image=3, seed=0, epoch=0)
    for stage in ts.stages:                       # "original", then each transform by name
        print(stage.name, stage.image.shape, len(stage.boxes), stage.notes)
    ts.batch                                      # what the trainer's loss gets for this sample

Nothing here re-implements the data path: the project's train split is written as the COCO
file the window's training writes (:func:`~detengine.data.project.write_split`), read by
:func:`~detengine.train.data.build_data` as ``--data train.json --images ROOT`` is, into the
trainer's :class:`~detengine.train.data.SeededTrainSet` with the trainer's sample order
(:class:`~detengine.train.data.EpochOrder` of the seed). Sample ``index`` of ``epoch`` is then
``SeededTrainSet.sample`` — ``train_set[index]`` in that epoch, the same pixels, boxes and
random draws (crop, flip, colour, the images a mosaic or mix-up takes from the cache) — whose
``observe`` hook records each step. ``batch`` is the trainer's collate of that one sample, so
the assignment computed on it is the trainer's (tests/engine/test_sample_pipeline.py).

A stage's image is for display: uint8 RGB (a float image clipped to 0..255 and rounded). The
data preprocessor's Normalize / ToTensor are not stages of their own (they change no geometry);
the last stage is the network input the views trace, before normalisation.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["PipelineStage", "TrainingSample", "TrainingSet", "training_set", "training_sample", "sample_input",
           "sample_gt", "trace_sample", "train_split_indices"]


@dataclass
class PipelineStage:
    """One step of the train pipeline as it left the sample: ``name`` (``"original"`` or the
    transform's type), ``image`` (H, W, 3) uint8 RGB, ``boxes`` (G, 4) / ``ignore_boxes`` (I, 4)
    float32 xyxy in this image's pixels, ``labels`` (G,) the data set's labels, ``box_rows`` /
    ``ignore_rows`` the row of each box in the loaded sample (-1: mixed in from another image),
    ``description`` the transform with its arguments, ``notes`` what the step did."""

    name: str
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    ignore_boxes: np.ndarray
    box_rows: np.ndarray
    ignore_rows: np.ndarray
    description: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(w, h) of the image."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass
class TrainingSample:
    """Sample ``index`` (of the train split) of ``epoch`` under ``seed``, as the trainer makes it.

    ``stages``: the loaded image, then one per pipeline step (the last: the network input);
    ``sample``: the results dict the trainer's data set returns (image tensor, boxes, labels,
    ignore boxes, meta); ``batch``: its collate, the trainer's batch of this one sample;
    ``image_id`` the image the sample was made from (another one than asked for when a step
    refused every box and the trainer fetched another sample: ``attempt`` > 0);
    ``box_ids`` / ``ignore_box_ids`` the project box id of each final box (-1: mixed in from
    another image); ``label_to_cat`` the data set's label -> category id; ``pipeline_stage``
    how many ``PipelineSwitchHook`` switches are in force at ``epoch`` (0: the train pipeline);
    ``notes`` what the window should say (the image is not in the train split, a refetch, ...)."""

    stages: list[PipelineStage]
    sample: dict
    batch: dict
    index: int
    epoch: int
    seed: int
    image_id: int
    attempt: int
    box_ids: list[int]
    ignore_box_ids: list[int]
    label_to_cat: dict[int, int]
    in_split: bool
    pipeline_stage: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def final(self) -> PipelineStage:
        return self.stages[-1]


@dataclass
class TrainingSet:
    """The trainer's training set over a project's train split: ``train_set`` (a
    :class:`SeededTrainSet` with the trainer's order), ``collate``, ``image_ids`` (the data set's
    order), ``file_names`` (image id -> file name) and ``in_split`` (the asked-for image is in
    the split, rather than added to it)."""

    train_set: object
    collate: object
    seed: int
    image_ids: list[int]
    file_names: dict[int, str]
    in_split: bool

    def index_of(self, image_id: int) -> int:
        return self.image_ids.index(int(image_id))


def train_split_indices(project, split=None) -> list[int]:
    """The project's training images: ``split`` (train indices) if given, else the window's
    training split (:func:`~detengine.data.project.split_indices`, its seed 0: the images'
    ``detscope_split`` tags, or a seeded 80/20); a project too small to split: every image."""
    if split is not None:
        return sorted(int(i) for i in split)
    from .data.project import split_indices
    try:
        return list(split_indices(project)[0])
    except ValueError:
        return list(range(len(project.images)))


def training_set(cfg: dict, project, image: int, *, seed: int = 0, split=None) -> TrainingSet:
    """The trainer's data set of the project's train split (``split``: train indices, default
    :func:`train_split_indices`), ``image`` added when the split lacks it. Built exactly as
    ``detengine train CONFIG --data train.json --images ROOT`` builds it (``build_data``), with the
    trainer's order of samples (``EpochOrder(seed, n)``, one process)."""
    from .data.project import write_split
    from .train.data import EpochOrder, build_data
    indices = train_split_indices(project, split)
    in_split = int(image) in indices
    if not in_split:
        indices = sorted({*indices, int(image)})
    with tempfile.TemporaryDirectory(prefix="detscope-sample-") as tmp:
        ann = write_split(project, indices, Path(tmp) / "train.json")
        bundle = build_data(cfg, str(ann), images=str(project.image_root), seed=int(seed))
    train_set = bundle.train
    train_set.set_order(EpochOrder(int(seed), len(train_set)))     # as the Trainer (world 1, rank 0)
    dataset = train_set.dataset
    names = {int(info["id"]): str(info["file_name"]) for info in dataset.image_infos}
    return TrainingSet(train_set, bundle.collate, int(seed), [int(i) for i in dataset.image_ids], names, in_split)


def training_sample(cfg: dict, project, image: int, *, seed: int = 0, epoch: int = 0, split=None,
                    data: TrainingSet | None = None) -> TrainingSample:
    """Project image ``image`` (its index) as training sample of ``epoch`` (0-based) under
    ``seed`` (the config's ``randomness.seed``, the trainer's ``--seed``): every stage of the
    train pipeline and the final sample, as the trainer's data set makes it. ``data``: a
    :func:`training_set` already built for this project state and seed (it is rebuilt otherwise)."""
    data = data if data is not None and data.seed == int(seed) else training_set(cfg, project, image, seed=seed,
                                                                                 split=split)
    record = project.images[int(image)]
    index = data.index_of(record.id)
    recorder = _Recorder(data)
    sample = data.train_set.sample(index, int(epoch), observe=recorder)
    stages = recorder.stages
    meta = sample["meta"]
    image_id = int(meta.get("image_id", record.id))
    gt_ids, ignore_ids = _annotation_ids(data.train_set.dataset, image_id)
    box_ids = [gt_ids[r] if r >= 0 else -1 for r in np.asarray(meta.get("box_ids", []), np.int64).tolist()]
    ignore_box_ids = [ignore_ids[r] if r >= 0 else -1 for r in np.asarray(meta.get("ignore_ids", []), np.int64).tolist()]
    notes = list(recorder.refetches)
    if not data.in_split:
        notes.insert(0, f"{record.file_name} is not in the train split: the trainer never sees it (shown as if it "
                        f"were, in a data set with it added)")
    switched = sum(1 for e, _ in data.train_set.stages[1:] if e <= int(epoch))    # PipelineSwitchHook stages
    dataset = data.train_set.dataset
    return TrainingSample(stages, sample, data.collate([sample]), index, int(epoch), data.seed, image_id,
                          recorder.attempt, box_ids, ignore_box_ids, dict(dataset.label_to_cat_id), data.in_split,
                          switched, notes)


def sample_input(ts: TrainingSample):
    """The network input of a training sample as an :class:`~detengine.image_trace.ImageInput`
    whose "original" pixels are the last stage's (the window shows the augmented image): the
    trainer's batch and meta (``img_shape``, ``pad_shape``: the valid priors, the border check),
    identity ``homography`` and ``scale_factor`` (the pipeline's own kept as
    ``pipeline_scale_factor`` / ``pipeline_homography``)."""
    from .image_trace import ImageInput
    meta = dict(ts.batch["metas"][0])
    meta["pipeline_homography"] = meta.get("homography")
    meta["pipeline_scale_factor"] = meta.get("scale_factor", (1.0, 1.0))
    meta["homography"] = np.eye(3)
    meta["scale_factor"] = (1.0, 1.0)
    return ImageInput(ts.batch["images"], meta)


def sample_gt(ts: TrainingSample) -> tuple[np.ndarray, list[int], list[bool], list[int]]:
    """The final sample's boxes for :meth:`ImageTracer.trace`: (N, 4) float64 xyxy (the GTs,
    then the ignored boxes), their data set labels (-1 for ignored boxes), crowd flags, box ids."""
    gt = np.asarray(ts.batch["gt_boxes"][0], np.float64).reshape(-1, 4)
    ignore = np.asarray(ts.batch["gt_boxes_ignore"][0], np.float64).reshape(-1, 4)
    labels = [int(v) for v in np.asarray(ts.batch["gt_labels"][0]).reshape(-1)]
    return (np.concatenate([gt, ignore]), labels + [-1] * len(ignore), [False] * len(gt) + [True] * len(ignore),
            list(ts.box_ids) + list(ts.ignore_box_ids))


def trace_sample(tracer, key, ts: TrainingSample, label_map=None, *, model_overrides=None,
                 postprocess_overrides=None):
    """:meth:`ImageTracer.trace` of a training sample's network input: ``(ImageTrace, kept)``.
    Labels: the data set's, or through ``label_map`` (a :class:`~detengine.project_eval.LabelMap`:
    category id -> model label; a GT of a class the model lacks is left out, as in the test
    pipeline's trace); ``kept`` are the traced boxes' positions in :func:`sample_gt`'s order (the
    final stage's GTs, then its ignored boxes), in the trace's order. The model (if any) runs in eval mode, as in every debug view: batch-norm layers in
    train mode would use this one image's statistics, which a training batch does not."""
    boxes, labels, crowd, _ids = sample_gt(ts)
    keep = list(range(len(boxes)))
    if label_map is not None:
        gt = [k for k in keep if not crowd[k]]
        kept, model_labels = label_map.encode([ts.label_to_cat.get(labels[k]) for k in gt])
        relabel = {gt[j]: lab for j, lab in zip(kept, model_labels)}
        keep = [k for k in keep if crowd[k] or k in relabel]
        labels = [relabel.get(k, 0) for k in range(len(boxes))]
    labels = [max(int(labels[k]), 0) for k in keep]
    trace = tracer.trace(key, None, boxes[keep], labels, [crowd[k] for k in keep], model_overrides=model_overrides,
                         postprocess_overrides=postprocess_overrides, image_input=sample_input(ts))
    return trace, keep


# --------------------------------------------------------------------------- recording the steps


def _annotation_ids(dataset, image_id: int) -> tuple[list[int], list[int]]:
    """The annotation (project box) ids of an image's GT rows and ignore rows, in the data set's
    row order (file order, degenerate boxes skipped, crowd boxes among the ignored)."""
    gt, ignore = [], []
    for ann in dataset.coco.imgToAnns.get(int(image_id), []):
        _x, _y, w, h = ann["bbox"]
        if w <= 0 or h <= 0:
            continue
        (ignore if ann.get("iscrowd", 0) else gt).append(int(ann["id"]))
    return gt, ignore


def _display_image(image) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB copy of a stage's image; None for a tensor (after ToTensor)."""
    if not isinstance(image, np.ndarray):
        return None
    if image.dtype == np.uint8:
        return image.copy()
    return np.clip(np.rint(image.astype(np.float32)), 0, 255).astype(np.uint8)


class _Recorder:
    """``SeededTrainSet.sample``'s ``observe``: keeps the stages of the attempt that succeeds."""

    def __init__(self, data: TrainingSet):
        self.data = data
        self.stages: list[PipelineStage] = []
        self.attempt = 0
        self.refetches: list[str] = []
        self._dropped = 0
        self._mixed = 0

    def __call__(self, attempt: int, transform, results) -> None:
        from .data.transforms import Normalize, ToTensor
        if attempt != self.attempt:
            self.attempt, self.stages = attempt, []
        if transform is None:
            meta = results["meta"]
            self._dropped, self._mixed = len(meta.get("dropped", [])), len(meta.get("mixed", []))
            notes = [f"fetched instead (attempt {attempt + 1}): " + ("the asked-for image could not be read"
                                                                   if not self.refetches else "see above")] \
                if attempt else []
            self.stages.append(self._stage("original", results, f"{meta.get('file_name', '')} as loaded", notes))
            return
        name = type(transform).__name__
        if results is None:
            file_name = self.stages[0].description.removesuffix(" as loaded") if self.stages else "?"
            self.refetches.append(f"{name} left no box in {file_name} (attempt {attempt + 1}), so the trainer "
                                  f"fetched another sample, as mmdetection's dataset does")
            return
        if isinstance(transform, (Normalize, ToTensor)):     # the data preprocessor: no geometry, not displayable
            if self.stages and "then normalised for the network" not in self.stages[-1].notes:
                self.stages[-1].notes.append("then normalised for the network")
            return
        self.stages.append(self._stage(name, results, repr(transform), self._notes(results)))

    def _notes(self, results: dict) -> list[str]:
        meta, notes = results["meta"], []
        for entry in meta.get("mixed", [])[self._mixed:]:
            names = [self.data.file_names.get(int(i), f"image {i}") for i in entry["image_ids"] if i is not None]
            notes.append(f"mixed in: {', '.join(names)}")
        for entry in meta.get("dropped", [])[self._dropped:]:
            n = len(entry["boxes"]) + len(entry["ignore_boxes"])
            if n:
                notes.append(f"dropped {n} box(es) of this image (outside, empty or cropped)")
        self._dropped, self._mixed = len(meta.get("dropped", [])), len(meta.get("mixed", []))
        if self.stages:
            previous = self.stages[-1]
            image = results["image"]
            same = (isinstance(image, np.ndarray) and image.shape == previous.image.shape
                    and np.array_equal(_display_image(image), previous.image)
                    and np.array_equal(np.asarray(results["boxes"], np.float32), previous.boxes))
            if same:
                notes.append("no change (not drawn this time, or nothing to do)")
        return notes

    @staticmethod
    def _stage(name: str, results: dict, description: str, notes: list[str]) -> PipelineStage:
        meta = results["meta"]
        boxes = np.asarray(results["boxes"], np.float32).reshape(-1, 4).copy()
        ignore = np.asarray(results["ignore_boxes"], np.float32).reshape(-1, 4).copy()
        return PipelineStage(name, _display_image(results["image"]), boxes,
                             np.asarray(results["labels"], np.int64).reshape(-1).copy(), ignore,
                             np.asarray(meta.get("box_ids", np.arange(len(boxes))), np.int64).copy(),
                             np.asarray(meta.get("ignore_ids", np.arange(len(ignore))), np.int64).copy(),
                             description, list(notes))
