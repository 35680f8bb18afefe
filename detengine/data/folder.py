"""Image files on disk: reading them, the sample record every dataset returns, and the
unlabeled image-folder dataset used for inference.

Images are decoded with OpenCV (``cv2.imdecode``, so non-ASCII paths work) and returned as
RGB ``uint8 (H, W, 3)``; grey or RGBA files are converted to three channels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .errors import DatasetError, ImageReadError

__all__ = ["DetectionSample", "DetectionDataset", "ImageFolderDataset", "IMAGE_EXTENSIONS",
           "read_image", "sample_to_results"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


@dataclass
class DetectionSample:
    """One image and its ground truth, in original pixels.

    ``image``: uint8 (H, W, 3) RGB. ``boxes``: float32 (G, 4) xyxy. ``labels``: int64 (G,)
    contiguous 0..C-1. ``ignore_boxes``: float32 (I, 4) xyxy (COCO iscrowd, VOC difficult).
    ``ori_shape``: (h, w) of ``image``."""

    image: np.ndarray
    boxes: np.ndarray = field(default_factory=_empty_boxes)
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    ignore_boxes: np.ndarray = field(default_factory=_empty_boxes)
    image_id: int = 0
    file_name: str = ""
    ori_shape: tuple[int, int] = (0, 0)


def read_image(path) -> np.ndarray:
    """Decode ``path`` into uint8 (H, W, 3) RGB, or raise :class:`ImageReadError` naming it."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"cannot read image {path}: {exc.strerror or exc}", path=path) from exc
    image = None
    if data.size:
        try:
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        except cv2.error:
            image = None
    if image is None or image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageReadError(f"cannot decode image {path} ({data.size} bytes): not a valid image file",
                             path=path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def sample_to_results(sample: DetectionSample) -> dict:
    """The transform dict for ``sample``: ``image``, ``boxes`` (G, 4), ``labels`` (G,),
    ``ignore_boxes`` (I, 4) and ``meta`` (ids, shapes, identity scale/flip, box bookkeeping).

    ``meta["box_ids"]`` / ``meta["ignore_ids"]`` are the original row of each remaining box
    and ``meta["dropped"]`` collects what each transform removed."""
    h, w = sample.image.shape[:2]
    meta = dict(image_id=int(sample.image_id), file_name=sample.file_name, ori_shape=(h, w),
                img_shape=(h, w), pad_shape=(h, w), scale_factor=(1.0, 1.0), flip=False,
                flip_direction=None, homography=np.eye(3, dtype=np.float64),
                box_ids=np.arange(len(sample.boxes), dtype=np.int64),
                ignore_ids=np.arange(len(sample.ignore_boxes), dtype=np.int64), dropped=[])
    return dict(image=sample.image, boxes=np.asarray(sample.boxes, np.float32).reshape(-1, 4),
                labels=np.asarray(sample.labels, np.int64).reshape(-1),
                ignore_boxes=np.asarray(sample.ignore_boxes, np.float32).reshape(-1, 4), meta=meta)


class DetectionDataset:
    """Base of the datasets: ``ds[i]`` is the raw :class:`DetectionSample` when ``transforms``
    is None, else ``transforms(sample_to_results(sample))``.

    Subclasses implement ``__len__`` and ``load_sample(index)``."""

    transforms: Callable | None = None
    class_names: list[str] = []

    @property
    def num_classes(self) -> int:
        """Number of contiguous labels ``0..C-1``."""
        return len(self.class_names)

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_sample(self, index: int) -> DetectionSample:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int):
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{type(self).__name__} index {index} out of range for {n} images")
        sample = self.load_sample(index % n)
        if self.transforms is None:
            return sample
        return self.transforms(sample_to_results(sample))


class ImageFolderDataset(DetectionDataset):
    """Every ``.jpg/.jpeg/.png/.bmp`` file directly inside ``folder`` (sorted by name) as an
    unlabeled sample for inference; ``image_id`` is the 1-based position."""

    def __init__(self, folder, *, transforms: Callable | None = None, class_names=()):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DatasetError(f"image folder {self.folder} does not exist or is not a folder", path=self.folder)
        self.files = sorted(p for p in self.folder.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        self.transforms = transforms
        self.class_names = list(class_names)

    def __len__(self) -> int:
        return len(self.files)

    def load_sample(self, index: int) -> DetectionSample:
        """The unlabeled sample of file ``index`` (raises :class:`ImageReadError` if bad)."""
        path = self.files[index]
        image = read_image(path)
        return DetectionSample(image=image, image_id=index + 1, file_name=path.name,
                               ori_shape=tuple(image.shape[:2]))
