"""COCO-format detection data: checked loading, the dataset, and atomic export.

pycocotools asserts or raises a bare ``KeyError`` on malformed files, so every file goes
through :func:`load_coco_checked` first; its errors name the file, the first bad record (its
list, index and shortened JSON) and what is wrong. Inside the engine boxes are xyxy float32 in
original pixels and labels are contiguous ``0..C-1``; COCO's ``[x, y, w, h]`` and category ids
appear only here (``cat_id_to_label`` / ``label_to_cat_id`` keep the map for export).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from numbers import Real
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..boxes import xywh_to_xyxy, xyxy_to_xywh
from ..io import atomic_write_text
from .errors import DatasetError, DatasetProblem, shorten_json
from .folder import DetectionDataset, DetectionSample, read_image

__all__ = ["CocoDataset", "load_coco_checked", "coco_from_dict", "write_coco", "boxes_to_coco_bbox"]

_SECTIONS = ("categories", "images", "annotations")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


class _Checker:
    """Walks a parsed COCO dict; ``report`` raises (strict) or records (lenient) a problem."""

    def __init__(self, path, lenient: bool):
        self.path = str(path)
        self.lenient = lenient
        self.problems: list[DatasetProblem] = []
        self.annotation_indices: list[int] = []      # position in the file of each kept annotation

    def report(self, section: str, index: int, record, message: str, action: str = "skipped") -> None:
        if not self.lenient:
            where = f"{section}[{index}] {shorten_json(record)}" if index >= 0 else f'"{section}"'
            raise DatasetError(f"{self.path}: {where}: {message}", path=self.path)
        self.problems.append(DatasetProblem(self.path, section, index, shorten_json(record), message, action))

    def section(self, data: dict, name: str) -> list:
        if name not in data:
            self.report(name, -1, None, f'the file has no "{name}" list (keys: {sorted(data)[:10]})',
                        "treated as empty")
            return []
        if not isinstance(data[name], list):
            self.report(name, -1, None, f'"{name}" must be a list, got {type(data[name]).__name__}', "treated as empty")
            return []
        return data[name]

    def categories(self, records: list) -> list:
        out, seen = [], set()
        for i, rec in enumerate(records):
            problem = self._category_problem(rec, seen)
            if problem:
                self.report("categories", i, rec, problem)
                continue
            seen.add(rec["id"])
            out.append(rec)
        return out

    @staticmethod
    def _category_problem(rec, seen) -> str | None:
        if not isinstance(rec, dict):
            return f"a category must be an object, got {type(rec).__name__}"
        if "id" not in rec or not _is_int(rec["id"]):
            return f"category 'id' must be an integer, got {shorten_json(rec.get('id'), 40)}"
        if not isinstance(rec.get("name"), str):
            return f"category 'name' must be a string, got {shorten_json(rec.get('name'), 40)}"
        if rec["id"] in seen:
            return f"duplicate category id {rec['id']}"
        return None

    def images(self, records: list) -> list:
        out, seen = [], set()
        for i, rec in enumerate(records):
            problem = self._image_problem(rec, seen)
            if problem:
                self.report("images", i, rec, problem)
                continue
            seen.add(rec["id"])
            out.append(rec)
        return out

    @staticmethod
    def _image_problem(rec, seen) -> str | None:
        if not isinstance(rec, dict):
            return f"an image must be an object, got {type(rec).__name__}"
        if "id" not in rec or not _is_int(rec["id"]):
            return f"image 'id' must be an integer, got {shorten_json(rec.get('id'), 40)}"
        if not isinstance(rec.get("file_name"), str) or not rec["file_name"]:
            return f"image 'file_name' must be a non-empty string, got {shorten_json(rec.get('file_name'), 40)}"
        for key in ("width", "height"):
            if key in rec and not (_is_number(rec[key]) and rec[key] > 0):
                return f"image '{key}' must be a positive number, got {shorten_json(rec[key], 40)}"
        if rec["id"] in seen:
            return f"duplicate image id {rec['id']}"
        return None

    def annotations(self, records: list, image_ids: set, cat_ids: set) -> list:
        out, seen = [], set()
        pending = []  # (index in the file, position in out, problem): ids to renumber (lenient)
        for i, rec in enumerate(records):
            problem = self._annotation_problem(rec, image_ids, cat_ids)
            if problem:
                self.report("annotations", i, rec, problem)
                continue
            ann_id = rec.get("id")
            if not _is_int(ann_id) or ann_id <= 0 or ann_id in seen:
                problem = self._id_problem(ann_id)
                if not self.lenient:
                    self.report("annotations", i, rec, problem)
                pending.append((i, len(out), problem))
            else:
                seen.add(ann_id)
            out.append(self._with_defaults(rec))
            self.annotation_indices.append(i)
        self._renumber(out, pending, seen)
        return out

    def _renumber(self, out: list, pending: list, seen: set) -> None:
        next_id = max(seen, default=0) + 1
        for index, pos, problem in pending:
            rec = out[pos]
            self.report("annotations", index, rec, problem, f"renumbered to {next_id}")
            out[pos] = {**rec, "id": next_id}
            seen.add(next_id)
            next_id += 1

    @staticmethod
    def _id_problem(ann_id) -> str:
        if ann_id is None:
            return "annotation has no 'id'"
        if not _is_int(ann_id) or ann_id <= 0:
            return (f"annotation 'id' must be a positive integer, got {shorten_json(ann_id, 20)} "
                    "(COCOeval mistakes id 0 for 'unmatched')")
        return f"duplicate annotation id {ann_id}"

    @staticmethod
    def _annotation_problem(rec, image_ids: set, cat_ids: set) -> str | None:
        if not isinstance(rec, dict):
            return f"an annotation must be an object, got {type(rec).__name__}"
        for key in ("image_id", "bbox", "category_id"):
            if key not in rec:
                return f"annotation has no '{key}'"
        bbox = rec["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            return f"'bbox' must be 4 finite numbers [x, y, w, h], got {shorten_json(bbox, 60)}"
        if rec["image_id"] not in image_ids:
            return f"'image_id' {shorten_json(rec['image_id'], 30)} is not the id of any image"
        if rec["category_id"] not in cat_ids:
            return f"'category_id' {shorten_json(rec['category_id'], 30)} is not the id of any category"
        if rec.get("iscrowd", 0) not in (0, 1):
            return f"'iscrowd' must be 0 or 1, got {shorten_json(rec['iscrowd'], 30)}"
        if "area" in rec and not _is_number(rec["area"]):
            return f"'area' must be a finite number, got {shorten_json(rec['area'], 30)}"
        return None

    @staticmethod
    def _with_defaults(rec: dict) -> dict:
        """Fill ``area`` (w * h) and ``iscrowd`` (0), which COCOeval reads."""
        if "area" in rec and "iscrowd" in rec:
            return rec
        rec = dict(rec)
        rec.setdefault("area", float(max(rec["bbox"][2], 0) * max(rec["bbox"][3], 0)))
        rec.setdefault("iscrowd", 0)
        return rec

    def run(self, data) -> dict:
        if not isinstance(data, dict):
            raise DatasetError(f"{self.path}: the top level must be a JSON object with "
                               f'"images", "annotations" and "categories", got {type(data).__name__}',
                               path=self.path)
        categories = self.categories(self.section(data, "categories"))
        images = self.images(self.section(data, "images"))
        annotations = self.annotations(self.section(data, "annotations"), {im["id"] for im in images},
                                       {c["id"] for c in categories})
        return {**data, "categories": categories, "images": images, "annotations": annotations}


def _read_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"cannot read annotation file {path}: {exc.strerror or exc}", path=path) from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 text file (byte {exc.start}): not COCO JSON", path=path) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                           path=path) from exc


def load_coco_checked(path, *, lenient: bool = False, with_indices: bool = False):
    """Read and validate a COCO detection JSON before pycocotools sees it.

    Strict (default): returns the dict (``area`` and ``iscrowd`` filled in where missing) or
    raises :class:`DatasetError` naming the file and the first bad record. ``lenient=True``:
    returns ``(clean_dict, problems)`` where bad records are dropped (an annotation whose
    image or category was dropped goes too) and annotation ids that are missing, 0 or
    duplicated are renumbered; ``problems`` is a list of :class:`DatasetProblem`.
    ``with_indices`` (lenient only) adds a third item: each kept annotation's index in the file."""
    path = Path(path)
    checker = _Checker(path, lenient)
    data = checker.run(_read_json(path))
    if not lenient:
        return data
    return (data, checker.problems, checker.annotation_indices) if with_indices else (data, checker.problems)


def coco_from_dict(data: dict):
    """A pycocotools ``COCO`` built from an already checked dict, without its console prints."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def boxes_to_coco_bbox(boxes) -> list[list[float]]:
    """(N, 4) xyxy (array or tensor) -> list of COCO ``[x, y, w, h]`` float lists."""
    t = torch.as_tensor(np.asarray(boxes, dtype=np.float64)).reshape(-1, 4)
    return [[float(v) for v in row] for row in xyxy_to_xywh(t).tolist()]


def write_coco(path, images: list[dict], annotations: list[dict], categories: list[dict], *,
               info: dict | None = None) -> dict:
    """Write a COCO JSON atomically and return the dict written.

    ``annotations`` carry COCO ``bbox`` ``[x, y, w, h]``; they get ids ``1..N`` in the given
    order, and ``area`` (w * h) / ``iscrowd`` (0) when missing. The result is validated like
    :func:`load_coco_checked` before anything is written."""
    path = Path(path)
    anns = [{**ann, "id": i} for i, ann in enumerate(annotations, start=1)]
    data = {"info": info or {"description": "written by DetScope"}, "images": list(images),
            "annotations": anns, "categories": list(categories)}
    data = _Checker(path, lenient=False).run(data)
    atomic_write_text(path, json.dumps(data, separators=(",", ":")))
    return data


class CocoDataset(DetectionDataset):
    """A COCO detection file plus its image folder.

    Images are listed in increasing ``image_id``. Category ids are kept as in the file:
    ``cat_ids`` (sorted), ``cat_id_to_label``, ``label_to_cat_id``, ``class_names``.
    ``iscrowd=1`` boxes become ``ignore_boxes``; boxes with w or h <= 0 are skipped and listed
    in ``skipped`` as ``(annotation, reason)``. ``filter_empty`` drops images without any
    (non-crowd, non-degenerate) box. ``lenient`` opens what is valid and keeps the rest in
    ``problems`` (see :func:`load_coco_checked`). ``coco`` is the pycocotools object."""

    def __init__(self, ann_file, img_dir, *, transforms: Callable | None = None,
                 filter_empty: bool = False, lenient: bool = False):
        self.ann_file = Path(ann_file)
        self.img_dir = Path(img_dir)
        self.transforms = transforms
        self.problems: list[DatasetProblem] = []
        if lenient:
            data, self.problems = load_coco_checked(self.ann_file, lenient=True)
        else:
            data = load_coco_checked(self.ann_file)
        self.coco = coco_from_dict(data)
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.cat_ids = [c["id"] for c in cats]
        self.class_names = [c["name"] for c in cats]
        self.cat_id_to_label = {cid: i for i, cid in enumerate(self.cat_ids)}
        self.label_to_cat_id = dict(enumerate(self.cat_ids))
        self.skipped: list[tuple[dict, str]] = []
        self._targets = self._build_targets(data)
        infos = sorted(data["images"], key=lambda im: im["id"])
        if filter_empty:
            infos = [im for im in infos if len(self._targets[im["id"]][0])]
        self.image_infos = infos
        self.image_ids = [im["id"] for im in infos]

    def _build_targets(self, data: dict) -> dict:
        """image id -> (boxes (G, 4), labels (G,), ignore_boxes (I, 4)) as float32/int64 xyxy."""
        per_image = {im["id"]: ([], [], []) for im in data["images"]}
        for ann in data["annotations"]:
            x, y, w, h = ann["bbox"]
            if w <= 0 or h <= 0:
                self.skipped.append((ann, f"degenerate box: width {w} and height {h} must both be > 0"))
                continue
            boxes, labels, ignore = per_image[ann["image_id"]]
            if ann.get("iscrowd", 0):
                ignore.append(ann["bbox"])
            else:
                boxes.append(ann["bbox"])
                labels.append(self.cat_id_to_label[ann["category_id"]])
        return {img_id: (_xyxy(b), np.asarray(lab, np.int64), _xyxy(ig))
                for img_id, (b, lab, ig) in per_image.items()}

    def __len__(self) -> int:
        return len(self.image_infos)

    def load_sample(self, index: int) -> DetectionSample:
        """Read image ``index`` (raises :class:`ImageReadError` naming the file if bad)."""
        info = self.image_infos[index]
        image = read_image(self.img_dir / info["file_name"])
        boxes, labels, ignore = self._targets[info["id"]]
        return DetectionSample(image=image, boxes=boxes.copy(), labels=labels.copy(), ignore_boxes=ignore.copy(),
                               image_id=info["id"], file_name=info["file_name"], ori_shape=tuple(image.shape[:2]))


def _xyxy(xywh: list) -> np.ndarray:
    """list of COCO [x, y, w, h] -> float32 (N, 4) xyxy."""
    t = torch.tensor(xywh, dtype=torch.float64).reshape(-1, 4)
    return xywh_to_xyxy(t).numpy().astype(np.float32)
