"""Pascal VOC detection data (``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/``).

Coordinates follow mmdetection 3.x ``XMLDataset`` exactly (:func:`voc_box`): each of ``xmin,
ymin, xmax, ymax`` is read as ``int(float(text)) - 1`` (VOC is 1-based; mmdetection subtracts 1
from all four, so a box is one pixel narrower than the "exclusive end" reading would give — kept
for parity with mmdetection-trained VOC models). The window's VOC reader
(:meth:`detengine.data.project.AnnotationProject.from_voc`) uses the same parser. ``difficult=1`` objects become ``ignore_boxes``; objects
whose name is not in ``class_names`` are skipped (as mmdetection) and listed in ``skipped``.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from .coco import boxes_to_coco_bbox, coco_from_dict
from .errors import DatasetError
from .folder import DetectionDataset, DetectionSample, read_image

__all__ = ["VocDataset", "VOC_CLASSES", "VocObject", "VocAnnotation", "parse_voc_annotation", "voc_box"]

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")


def voc_box(bndbox) -> list[float]:
    """A ``<bndbox>``'s 1-based corners as the 0-based xyxy box mmdetection 3.x's ``XMLDataset``
    reads: ``int(float(text)) - 1`` for each of ``xmin, ymin, xmax, ymax``. The one VOC
    convention in DetScope: the window and the CLI read the same boxes."""
    return [float(int(float(bndbox.findtext(tag)))) - 1 for tag in ("xmin", "ymin", "xmax", "ymax")]


@dataclass(frozen=True)
class VocObject:
    name: str
    box: list[float]  # xyxy, :func:`voc_box`'s convention
    difficult: bool


@dataclass(frozen=True)
class VocAnnotation:
    """One ``Annotations/*.xml``: its ``<filename>``, ``<size>`` (None where missing) and objects."""

    path: Path
    file_name: str | None
    width: int | None
    height: int | None
    objects: list[VocObject]


def parse_voc_annotation(path) -> VocAnnotation:
    """Read a VOC XML file; :class:`DatasetError` names the file and the bad object."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise DatasetError(f"cannot read VOC annotation {path}: {exc.strerror or exc}", path=path) from exc
    except ET.ParseError as exc:
        raise DatasetError(f"{path}: not valid XML: {exc}", path=path) from exc
    size = root.find("size")
    objects = [_parse_object(path, k, obj) for k, obj in enumerate(root.findall("object"))]
    return VocAnnotation(path, (root.findtext("filename") or "").strip() or None,
                         _positive_int(size.findtext("width") if size is not None else None),
                         _positive_int(size.findtext("height") if size is not None else None), objects)


def _parse_object(path: Path, k: int, obj) -> VocObject:
    name = (obj.findtext("name") or "").strip()
    if not name:
        raise DatasetError(f"{path}: <object> {k} has no <name>", path=path)
    try:
        difficult = int(obj.findtext("difficult") or 0)
        bnd = obj.find("bndbox")
        if bnd is None:
            raise ValueError("no <bndbox>")
        box = voc_box(bnd)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: <object> {k} ({name!r}) has a bad <difficult> or <bndbox>: {exc}",
                           path=path) from exc
    if box[2] < box[0] or box[3] < box[1]:
        raise DatasetError(f"{path}: <object> {k} ({name!r}) has xmax < xmin or ymax < ymin", path=path)
    return VocObject(name, box, bool(difficult))


def _positive_int(text) -> int | None:
    try:
        value = int(float(text))
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


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
        annotation = parse_voc_annotation(self.root / "Annotations" / f"{voc_id}.xml")
        boxes, labels, ignore, ignore_labels = [], [], [], []
        for k, obj in enumerate(annotation.objects):
            if obj.name not in self._label_of:
                self.skipped.append(({"file": str(annotation.path), "object": k, "name": obj.name},
                                     f"class {obj.name!r} is not in class_names"))
                continue
            (ignore if obj.difficult else boxes).append(obj.box)
            (ignore_labels if obj.difficult else labels).append(self._label_of[obj.name])
        return dict(boxes=np.asarray(boxes, np.float32).reshape(-1, 4), labels=np.asarray(labels, np.int64),
                    ignore_boxes=np.asarray(ignore, np.float32).reshape(-1, 4),
                    ignore_labels=np.asarray(ignore_labels, np.int64))

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
