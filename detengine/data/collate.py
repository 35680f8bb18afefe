"""Batching transformed samples for the detectors.

Images are zero-padded at the bottom/right to the largest height and width in the batch (and
up to a multiple of ``size_divisor``), as mmdetection's ``DetDataPreprocessor`` pads after
normalising, so a 0 pad is the mean colour.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["collate", "Collate", "worker_init_fn"]


def _image_tensor(image) -> torch.Tensor:
    """(3, H, W) float32 tensor from a tensor, or from a (H, W, 3) array (not yet ``ToTensor``-ed)."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3:
            raise ValueError(f"collate needs (3, H, W) image tensors, got shape {tuple(image.shape)}")
        return image.float()
    arr = np.ascontiguousarray(np.asarray(image, np.float32).transpose(2, 0, 1))
    return torch.from_numpy(arr)


def _as_tensor(value, dtype, shape) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value,
                           dtype=dtype).reshape(shape)


def collate(samples: list[dict], *, size_divisor: int | None = None) -> dict:
    """Stack transformed samples into one batch.

    Returns ``images`` float32 (B, 3, H, W) (H, W: batch maxima rounded up to the largest of
    ``size_divisor`` and every ``meta["pad_size_divisor"]``), ``gt_boxes`` list of (G_i, 4)
    float32, ``gt_labels`` list of (G_i,) int64, ``gt_boxes_ignore`` list of (I_i, 4) float32
    and ``metas`` (copies) as mmdetection's ``DetDataPreprocessor`` leaves them: ``pad_shape`` each
    image's own (h, w) rounded up to ``size_divisor`` (not the batch's: priors past it are invalid),
    ``batch_input_shape = (H, W)``, ``img_shape`` as the pipeline set it (the image, or after a
    ``Pad`` the padded image)."""
    if not samples:
        raise ValueError("collate needs at least one sample, got an empty list")
    images = [_image_tensor(s["image"]) for s in samples]
    metas = [dict(s.get("meta", {})) for s in samples]
    divisors = [size_divisor or 1] + [m.get("pad_size_divisor") or 1 for m in metas]
    div = max(divisors)
    height = math.ceil(max(im.shape[1] for im in images) / div) * div
    width = math.ceil(max(im.shape[2] for im in images) / div) * div
    batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    own = size_divisor or 1
    for i, (im, meta) in enumerate(zip(images, metas)):
        batch[i, :, :im.shape[1], :im.shape[2]] = im
        meta.setdefault("img_shape", (int(im.shape[1]), int(im.shape[2])))
        meta["pad_shape"] = (math.ceil(im.shape[1] / own) * own, math.ceil(im.shape[2] / own) * own)
        meta["batch_input_shape"] = (height, width)
    return dict(images=batch,
                gt_boxes=[_as_tensor(s.get("boxes", np.zeros((0, 4))), torch.float32, (-1, 4)) for s in samples],
                gt_labels=[_as_tensor(s.get("labels", np.zeros(0)), torch.int64, (-1,)) for s in samples],
                gt_boxes_ignore=[_as_tensor(s.get("ignore_boxes", np.zeros((0, 4))), torch.float32, (-1, 4))
                                 for s in samples],
                metas=metas)


class Collate:
    """Picklable ``collate_fn`` for a ``DataLoader``: ``Collate(size_divisor=32)``."""

    def __init__(self, *, size_divisor: int | None = None):
        self.size_divisor = size_divisor

    def __call__(self, samples: list[dict]) -> dict:
        return collate(samples, size_divisor=self.size_divisor)


def worker_init_fn(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: give each worker's pipeline its own generator seeded
    from torch's per-worker seed, so workers do not repeat one another's augmentations and a
    run seeded with ``torch.manual_seed`` (or a ``generator``) is reproducible."""
    info = torch.utils.data.get_worker_info()
    transforms = getattr(getattr(info, "dataset", None), "transforms", None)
    if transforms is not None and hasattr(transforms, "set_rng"):
        transforms.set_rng(np.random.default_rng([info.seed % (2 ** 63), worker_id]))
