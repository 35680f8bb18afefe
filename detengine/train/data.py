"""Datasets and pipelines for training and evaluation, from a config and a ``--data`` choice."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import (CocoDataset, Collate, DatasetError, Normalize, ToTensor, VocDataset, build_pipeline,
                    ensure_synthetic_dataset, sample_to_results)

__all__ = ["SeededTrainSet", "EvalSet", "DataBundle", "build_data", "resolve_data", "pipelines_for"]


class SeededTrainSet(torch.utils.data.Dataset):
    """Training samples whose augmentation is seeded by (seed, epoch, index): the same sample of
    the same epoch always gets the same crop, flip and colour jitter, in any worker."""

    def __init__(self, dataset, pipeline, seed: int = 0):
        self.dataset, self.pipeline, self.seed = dataset, pipeline, int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    @property
    def label_to_cat_id(self) -> dict[int, int]:
        return getattr(self.dataset, "label_to_cat_id", {i: i + 1 for i in range(len(self.class_names))})

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        self.pipeline.set_rng(np.random.default_rng([self.seed, self.epoch, int(index)]))
        return self.pipeline(sample_to_results(self.dataset.load_sample(index)))


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
    pre = model_cfg.get("data_preprocessor") or {}
    return Normalize(mean=pre.get("mean", (0.0, 0.0, 0.0)), std=pre.get("std", (255.0, 255.0, 255.0)),
                     to_rgb=pre.get("bgr_to_rgb", True))


def pipelines_for(cfg: dict, seed: int = 0):
    """(train, test) pipelines: the config's ``train_pipeline`` / ``test_pipeline`` plus the
    model's ``data_preprocessor`` normalisation (mmdetection does that on the model) and ToTensor."""
    model = cfg["model"]
    for key in ("train_pipeline", "test_pipeline"):
        if key not in cfg:
            raise DatasetError(f"the config has no {key}: add one (mmdetection layout) to train or evaluate")
    train = build_pipeline(cfg["train_pipeline"], rng=seed)
    test = build_pipeline(cfg["test_pipeline"], rng=seed)
    for p in (train, test):
        p.transforms += [_normalize_step(model), ToTensor()]
    return train, test


def resolve_data(data: str | None, cfg: dict) -> tuple[str, dict]:
    """Which data set to use: ``"synthetic"`` (default), a COCO JSON file, or a VOC root."""
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
    raise DatasetError(f"--data must be 'synthetic', a COCO .json file or a Pascal VOC folder, got {data!r}")


def _coco_images(ann_file: Path, images: str | None) -> Path:
    if images:
        return Path(images)
    for candidate in (ann_file.parent / "images", ann_file.parent):
        if candidate.is_dir():
            return candidate
    return ann_file.parent


def build_data(cfg: dict, data: str | None = None, *, val_data: str | None = None, images: str | None = None,
               seed: int = 0) -> DataBundle:
    """Train and val datasets (raw), their pipelines and the collate function."""
    kind, opts = resolve_data(data, cfg)
    train_pipe, test_pipe = pipelines_for(cfg, seed)
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
    else:
        train = VocDataset(opts["root"], split="trainval")
        val = VocDataset(opts["root"], split="test") if (Path(opts["root"]) / "ImageSets/Main/test.txt").exists() \
            else None
        desc = f"Pascal VOC {opts['root']}"
    return DataBundle(SeededTrainSet(train, train_pipe, seed), val, train_pipe, test_pipe,
                      Collate(size_divisor=divisor if divisor and divisor > 1 else None), desc)
