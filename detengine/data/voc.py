"""Pascal VOC detection data (``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/``).

Coordinates follow mmdetection 3.x ``XMLDataset`` exactly: each of ``xmin, ymin, xmax, ymax``
is read as ``int(float(text)) - 1`` (VOC is 1-based; mmdetection subtracts 1 from all four, so
a box is one pixel narrower than the "exclusive end" reading would give — kept for parity with
mmdetection-trained VOC models). ``difficult=1`` objects become ``ignore_boxes``; objects
whose name is not in ``class_names`` are skipped (as mmdetection) and listed in ``skipped``.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from .coco import boxes_to_coco_bbox, coco_from_dict
from .errors import DatasetError
from .folder import DetectionDataset, DetectionSample, read_image

__all__ = ["VocDataset", "VOC_CLASSES"]

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")


class VocDataset(DetectionDataset):
    """The ``split`` list of a VOC-layout ``root``; every XML is parsed up front so a bad one
    raises :class:`DatasetError` naming it when the dataset is opened.

    ``image_id`` is the 1-based position in the split list; ``voc_ids[i]`` is the VOC name."""

    def __init__(self, root, *, split: str = "trainval", class_names=VOC_CLASSES,
                 transforms: Callable | None = None):
        self.root = Path(root)
        self.split = split
        self.class_names = list(class_names)
        self.transforms = transforms
        self._label_of = {name: i for i, name in enumerate(self.class_names)}
        self.skipped: list[tuple[dict, str]] = []
        self.voc_ids = self._read_split()
        self._records = [self._parse(voc_id) for voc_id in self.voc_ids]

    def _read_split(self) -> list[str]:
        path = self.root / "ImageSets" / "Main" / f"{self.split}.txt"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise DatasetError(f"cannot read VOC split list {path}: {exc.strerror or exc}", path=path) from exc
        return [line.split()[0] for line in lines if line.strip()]

    def _parse(self, voc_id: str) -> dict:
        """Parse ``Annotations/{voc_id}.xml`` into boxes / labels / ignore_boxes arrays."""
        path = self.root / "Annotations" / f"{voc_id}.xml"
        try:
            root = ET.parse(path).getroot()
        except OSError as exc:
            raise DatasetError(f"cannot read VOC annotation {path}: {exc.strerror or exc}", path=path) from exc
        except ET.ParseError as exc:
            raise DatasetError(f"{path}: not valid XML: {exc}", path=path) from exc
        boxes, labels, ignore, ignore_labels = [], [], [], []
        for k, obj in enumerate(root.findall("object")):
            name, box, difficult = self._parse_object(path, k, obj)
            if name not in self._label_of:
                self.skipped.append(({"file": str(path), "object": k, "name": name},
                                     f"class {name!r} is not in class_names"))
                continue
            if difficult:
                ignore.append(box)
                ignore_labels.append(self._label_of[name])
            else:
                boxes.append(box)
                labels.append(self._label_of[name])
        return dict(boxes=np.asarray(boxes, np.float32).reshape(-1, 4), labels=np.asarray(labels, np.int64),
                    ignore_boxes=np.asarray(ignore, np.float32).reshape(-1, 4),
                    ignore_labels=np.asarray(ignore_labels, np.int64))

    @staticmethod
    def _parse_object(path: Path, k: int, obj) -> tuple[str, list[float], bool]:
        """(name, [x1, y1, x2, y2] with mmdetection's -1, difficult) of ``<object>`` number ``k``."""
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DatasetError(f"{path}: <object> {k} has no <name>", path=path)
        try:
            difficult = int(obj.findtext("difficult") or 0)
            bnd = obj.find("bndbox")
            if bnd is None:
                raise ValueError("no <bndbox>")
            box = [float(int(float(bnd.findtext(tag)))) - 1 for tag in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: <object> {k} ({name!r}) has a bad <difficult> or <bndbox>: {exc}",
                               path=path) from exc
        return name, box, bool(difficult)

    def __len__(self) -> int:
        return len(self.voc_ids)

    def image_path(self, index: int) -> Path:
        """``JPEGImages/{voc_id}.jpg`` of image ``index``."""
        return self.root / "JPEGImages" / f"{self.voc_ids[index]}.jpg"

    def load_sample(self, index: int) -> DetectionSample:
        """Read image ``index`` (raises :class:`ImageReadError` naming the file if bad)."""
        image = read_image(self.image_path(index))
        rec = self._records[index]
        return DetectionSample(image=image, boxes=rec["boxes"].copy(), labels=rec["labels"].copy(),
                               ignore_boxes=rec["ignore_boxes"].copy(), image_id=index + 1,
                               file_name=f"{self.voc_ids[index]}.jpg", ori_shape=tuple(image.shape[:2]))

    def to_coco_dict(self) -> dict:
        """The split as a COCO dict (category id = label + 1, difficult as ``iscrowd=1``).

        For COCO-style evaluation only: COCOeval's crowd matching is close to, not the same
        as, VOC's "difficult is neither TP nor FP" rule. Image sizes are not read (no
        width/height), which COCOeval does not need."""
        images, anns = [], []
        for i, rec in enumerate(self._records):
            images.append({"id": i + 1, "file_name": f"{self.voc_ids[i]}.jpg"})
            for boxes, labels, crowd in ((rec["boxes"], rec["labels"], 0),
                                         (rec["ignore_boxes"], rec["ignore_labels"], 1)):
                for bbox, label in zip(boxes_to_coco_bbox(boxes), labels.tolist()):
                    anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": label + 1,
                                 "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": crowd})
        cats = [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]
        return {"images": images, "annotations": anns, "categories": cats}

    @cached_property
    def coco(self):
        """pycocotools ``COCO`` of :meth:`to_coco_dict`."""
        return coco_from_dict(self.to_coco_dict())
