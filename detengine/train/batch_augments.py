"""Batch augmentations of the ``data_preprocessor`` (mmdetection's ``batch_augments``), applied by
the trainer to each collated training batch; evaluation never applies them (mmdetection's
``DetDataPreprocessor`` runs them with ``training=True`` only).

Only ``BatchSyncRandomResize`` (YOLOX's multi-scale training) is built; other types are refused
by :mod:`detengine.models.spec` before anything runs.
"""
from __future__ import annotations

import random

import torch.nn.functional as F

from . import distributed as dist

__all__ = ["BatchSyncRandomResize", "build_batch_augments", "augment_batch", "BATCH_AUGMENTS"]


class BatchSyncRandomResize:
    """mmdetection 3.3.0's ``BatchSyncRandomResize`` (mmdet/models/data_preprocessors/
    data_preprocessor.py): the batch is resized (bilinear, ``align_corners=False``) to the current
    input size and its boxes (and ignored boxes), ``img_shape`` and ``pad_shape`` scaled with it.
    The first input size is the first batch's own; after every ``interval``-th iteration (global
    step ``g`` with ``(g + 1) % interval == 0``) a new one is drawn: ``k`` uniform in
    ``round(lo / size_divisor) .. round(hi / size_divisor)``, height ``size_divisor * k``, width
    ``size_divisor * int(w / h * k)`` of the batch just seen. Rank 0 draws, the others take its
    size (``broadcast_object``), so every rank trains the same size at the same step.

    The draw comes from the augment's own generator, seeded with the run's seed (mmdetection
    uses Python's global ``random``): the same seed gives the same sizes, and the generator and the
    current size go into checkpoints, so a resumed run continues with the same sizes."""

    def __init__(self, random_size_range, interval: int = 10, size_divisor: int = 32, *, seed: int = 0):
        lo, hi = (int(v) for v in random_size_range)
        if not 0 < lo <= hi or int(interval) < 1 or int(size_divisor) < 1:
            raise ValueError(f"BatchSyncRandomResize needs 0 < random_size_range[0] <= [1], interval >= 1 and "
                             f"size_divisor >= 1, got {random_size_range}, {interval}, {size_divisor}")
        self.size_divisor = int(size_divisor)
        self.random_size_range = (round(lo / self.size_divisor), round(hi / self.size_divisor))
        self.interval = int(interval)
        self.input_size: tuple[int, int] | None = None
        self.rng = random.Random(seed)

    def __call__(self, batch: dict, global_step: int) -> dict:
        images = batch["images"]
        h, w = images.shape[-2:]
        if self.input_size is None:
            self.input_size = (int(h), int(w))
        scale_y, scale_x = self.input_size[0] / h, self.input_size[1] / w
        if scale_x != 1 or scale_y != 1:
            batch = dict(batch)
            batch["images"] = F.interpolate(images, size=self.input_size, mode="bilinear", align_corners=False)
            scale = images.new_tensor([scale_x, scale_y, scale_x, scale_y])
            for key in ("gt_boxes", "gt_boxes_ignore"):
                if key in batch:
                    batch[key] = [b * scale.to(b.device, b.dtype) for b in batch[key]]
            metas = []
            for meta in batch.get("metas") or ():
                meta = dict(meta)
                for key in ("img_shape", "pad_shape"):
                    if key in meta:
                        meta[key] = (int(meta[key][0] * scale_y), int(meta[key][1] * scale_x))
                meta["batch_input_shape"] = tuple(self.input_size)
                metas.append(meta)
            if "metas" in batch:
                batch["metas"] = metas
        if (global_step + 1) % self.interval == 0:
            self.input_size = self._random_size(float(w / h))
        return batch

    def _random_size(self, aspect_ratio: float) -> tuple[int, int]:
        size = None
        if dist.is_main():
            k = self.rng.randint(*self.random_size_range)
            size = (self.size_divisor * k, self.size_divisor * int(aspect_ratio * k))
        return tuple(dist.broadcast_object(size))

    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {"input_size": None if self.input_size is None else list(self.input_size),
                "rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict) -> None:
        size = state.get("input_size")
        self.input_size = None if size is None else (int(size[0]), int(size[1]))
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))

    def __repr__(self) -> str:
        lo, hi = (k * self.size_divisor for k in self.random_size_range)
        return f"BatchSyncRandomResize({lo}..{hi} step {self.size_divisor}, every {self.interval} iterations)"


#: ``batch_augments`` types built here -> their class (the keys they take besides ``type``)
BATCH_AUGMENTS = {"BatchSyncRandomResize": (BatchSyncRandomResize, {"random_size_range", "interval", "size_divisor"})}


def build_batch_augments(model_cfg: dict, seed: int = 0) -> list:
    """The ``model.data_preprocessor.batch_augments`` of ``model_cfg`` (none: ``[]``), each seeded
    from ``seed`` (the run's)."""
    augments = (model_cfg.get("data_preprocessor") or {}).get("batch_augments") or []
    out = []
    for i, cfg in enumerate(augments):
        cls, keys = BATCH_AUGMENTS[cfg["type"]]          # spec.check_model refused every other type
        args = {k: v for k, v in cfg.items() if k != "type"}
        out.append(cls(**args, seed=seed + i))
    return out


def augment_batch(augments: list, batch: dict, global_step: int) -> dict:
    """``batch`` through each augment in order (training only)."""
    for augment in augments:
        batch = augment(batch, global_step)
    return batch
