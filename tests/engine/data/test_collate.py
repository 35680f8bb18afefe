"""Batching: shapes, zero padding, size divisor, metas."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from detengine.data import Collate, DetectionSample, collate, sample_to_results, worker_init_fn
from detengine.data.transforms import Compose, KeepRatioResize, Normalize, Pad, RandomFlip, ToTensor


def _sample(h, w, n_boxes, image_id):
    image = np.full((h, w, 3), 200, np.uint8)
    boxes = np.array([[1, 1, 5, 6]] * n_boxes, np.float32).reshape(-1, 4)
    return sample_to_results(DetectionSample(image=image, boxes=boxes, labels=np.arange(n_boxes),
                                             ignore_boxes=np.zeros((0, 4), np.float32), image_id=image_id))


def test_collate_pads_to_batch_max_and_divisor():
    pipe = Compose([Normalize(mean=(0, 0, 0), std=(1, 1, 1)), ToTensor()])
    samples = [pipe(_sample(30, 50, 2, 1)), pipe(_sample(45, 20, 0, 2))]
    batch = collate(samples)
    assert batch["images"].shape == (2, 3, 45, 50) and batch["images"].dtype == torch.float32
    assert batch["images"][0, :, 30:, :].abs().sum() == 0 and batch["images"][0, :, :30, :].min() == 200
    assert batch["images"][1, :, :, 20:].abs().sum() == 0
    # as mmdetection's DetDataPreprocessor: each image's own shape (rounded to the divisor), the batch apart
    assert [m["pad_shape"] for m in batch["metas"]] == [(30, 50), (45, 20)]
    assert [m["batch_input_shape"] for m in batch["metas"]] == [(45, 50), (45, 50)]
    assert [m["img_shape"] for m in batch["metas"]] == [(30, 50), (45, 20)]
    assert [b.shape for b in batch["gt_boxes"]] == [(2, 4), (0, 4)]
    assert batch["gt_labels"][0].dtype == torch.int64 and batch["gt_labels"][1].shape == (0,)
    assert [b.shape for b in batch["gt_boxes_ignore"]] == [(0, 4), (0, 4)]
    assert samples[0]["meta"]["pad_shape"] == (30, 50)  # input metas are not modified
    assert collate(samples, size_divisor=32)["images"].shape == (2, 3, 64, 64)
    assert Collate(size_divisor=16)(samples)["metas"][1]["pad_shape"] == (48, 32)


def test_collate_uses_pad_divisor_from_metas_and_accepts_arrays():
    pipe = Compose([KeepRatioResize(scale=(100, 60)), RandomFlip(prob=0.5), Pad(size_divisor=32)], rng=0)
    samples = [pipe(_sample(30, 50, 1, 1)), pipe(_sample(50, 30, 1, 2))]
    batch = collate(samples)
    assert batch["images"].shape == (2, 3, 128, 128)
    # mmcv 2.x's Pad: img_shape becomes the padded size; the real pixels stay in content_shape
    assert [m["img_shape"] for m in batch["metas"]] == [(64, 128), (128, 64)]
    assert [m["content_shape"] for m in batch["metas"]] == [(60, 100), (100, 60)]
    assert [m["pad_shape"] for m in batch["metas"]] == [(64, 128), (128, 64)]
    assert batch["metas"][0]["batch_input_shape"] == (128, 128)
    with pytest.raises(ValueError, match="at least one sample"):
        collate([])


def test_worker_init_fn_is_harmless_outside_workers():
    worker_init_fn(0)  # no worker info: nothing to do
