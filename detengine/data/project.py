"""An annotation project: images, categories and boxes that the GUI edits and saves as COCO JSON.

Qt-free plain data (the window wraps it with undo commands and signals). Boxes are xyxy float
in original image pixels (rule 3); COCO ``[x, y, w, h]`` appears only in :meth:`from_coco` and
:meth:`AnnotationProject.to_coco`. Ids are COCO's and stay stable: an annotation keeps its id
through edits, a new box gets ``max id + 1``, a category keeps its id through renames, and
fields DetScope does not know (``segmentation``, ``attributes``, ``license``, ...) are kept in
``extra`` and written back unchanged.

Opening never fails on one bad record: problems (malformed records, degenerate boxes, missing
images, boxes far outside their image) are collected in ``problems`` for the GUI to list, each
with what was done; a file that cannot be read at all raises :class:`DatasetError` naming it.

Saving changes nothing the user did not change: a record (annotation, image, category) that was
not edited is written back exactly as it was read (its numbers, ``area``, key order and unknown
keys); an edited box keeps its other fields, and its ``area`` is recomputed only when it has no
``segmentation`` (whose area it is); records skipped at open are written back unchanged (at the
end of their list). Each save first keeps the file it replaces as a timestamped ``.bak`` (the
last :data:`~detengine.io.BACKUPS_KEPT`); a read-only file is refused, a symlink written through.
"""
from __future__ import annotations

import contextlib
import copy as copy_module
import dataclasses
import gc
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..io import (
    BACKUPS_KEPT,
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    keep_backup,
    remove_stale_temp_files,
)
from .coco import _Checker, _read_json
from .errors import DatasetError, DatasetProblem, shorten_json

__all__ = ["Box", "Category", "ImageRecord", "AnnotationProject", "IMAGE_EXTENSIONS", "natural_key",
           "find_image_root", "sample_project", "split_indices", "write_split", "SPLIT_KEY"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_ROOT_KEY = "detscope_image_root"     # in COCO ``info``: the image folder, relative to the JSON
NEXT_CATEGORY_KEY = "detscope_next_category_id"
_BOX_KEYS = {"id", "image_id", "category_id", "bbox", "iscrowd", "area"}
_IMAGE_KEYS = {"id", "file_name", "width", "height"}
_CATEGORY_KEYS = {"id", "name", "supercategory"}
_SECTIONS = ("images", "annotations", "categories")
KEPT_ACTION = "skipped: not shown, kept unchanged in the file"
FAR_OUTSIDE_FRACTION = 0.05     # a box reaching beyond its image by more than this much of its side ...
FAR_OUTSIDE_MIN_PX = 2.0        # ... and more than this many pixels is clipped (and reported)


def natural_key(text: str) -> list:
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    supercategory: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    def to_coco(self) -> dict:
        out = {**self.extra, "id": self.id, "name": self.name}
        if self.supercategory or "supercategory" in self.extra:
            out["supercategory"] = self.supercategory
        return out


@dataclass(frozen=True)
class Box:
    """One annotation: ``x1 < x2``, ``y1 < y2`` in original pixels. Immutable: edits make a new
    ``Box`` with the same ``id`` (``box.replace(x1=...)``), which keeps undo commands simple."""

    id: int
    category_id: int
    x1: float
    y1: float
    x2: float
    y2: float
    iscrowd: int = 0
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def replace(self, **changes) -> "Box":
        return dataclasses.replace(self, **changes)

    def to_coco(self, image_id: int) -> dict:
        w, h = self.width, self.height
        return {**self.extra, "id": self.id, "image_id": image_id, "category_id": self.category_id,
                "bbox": [_tidy(self.x1), _tidy(self.y1), _tidy(w), _tidy(h)], "area": _tidy(w * h),
                "iscrowd": self.iscrowd}


def _tidy(value: float) -> float | int:
    """Whole numbers as int in the JSON (``12`` not ``12.0``), others rounded to 1e-6 px (the
    float noise of xyxy <-> xywh goes, what the user drew stays)."""
    value = round(float(value), 6)
    return int(value) if value.is_integer() else value


@dataclass
class ImageRecord:
    """One image of the project; ``width``/``height`` may be ``None`` until the image is read."""

    id: int
    file_name: str
    width: int | None = None
    height: int | None = None
    boxes: list[Box] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_coco(self) -> dict:
        out = {**self.extra, "id": self.id, "file_name": self.file_name}
        if self.width is not None and self.height is not None:
            out["width"], out["height"] = int(self.width), int(self.height)
        return out

    def box_index(self, box_id: int) -> int:
        for i, box in enumerate(self.boxes):
            if box.id == box_id:
                return i
        raise KeyError(f"image {self.file_name!r} has no box with id {box_id}")


class AnnotationProject:
    """Images, categories and boxes, plus where they came from (``path`` of the COCO JSON, or
    ``None`` for a folder not saved yet, and ``image_root`` that ``file_name`` is relative to)."""

    def __init__(self, images: list[ImageRecord], categories: list[Category], *, image_root,
                 path=None, kind: str = "coco", info: dict | None = None, extra: dict | None = None,
                 problems: Iterable[DatasetProblem] = ()):
        self.images = images
        self.categories = list(categories)
        self.image_root = Path(image_root)
        self.path = None if path is None else Path(path)
        self.kind = kind
        self.info = dict(info or {})
        self.extra = dict(extra or {})          # other top-level keys (licenses, ...)
        self.problems = list(problems)
        self.image_root_found = True            # False: a COCO file whose images were not found near it
        self.source_digest: str | None = None   # sha1 of the file as opened or last saved (recovery compares it)
        self._next_box_id = 1 + max((b.id for im in images for b in im.boxes), default=0)
        # what the file held (from_coco): id -> (as loaded, the record as read), to write untouched
        # records back unchanged; the records skipped at open, written back as they were
        self._origins: dict[str, dict] = {name: {} for name in _SECTIONS}
        self._kept: dict[str, list] = {name: [] for name in _SECTIONS}
        self._top_keys: list[str] = []
        self._reserved_category_ids: set[int] = set()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path, *, image_root=None, size_of: Callable | None = None) -> "AnnotationProject":
        """Open a COCO JSON file, a Pascal VOC folder, a YOLO dataset (``data.yaml``, or a folder
        of images and ``.txt`` labels), a labelme folder or a plain image folder, by what ``path``
        is (:func:`detengine.data.formats.detect_format`). ``image_root``: a COCO file's image
        folder; ``size_of(path) -> (w, h) | None``: image sizes (default for YOLO / labelme: the
        file header, :func:`detengine.data.image_size.read_image_size`)."""
        from .formats import detect_format, read_parsed
        kind, source = detect_format(path)
        if kind == "coco":
            return cls.from_coco(source, image_root=image_root)
        if kind == "voc":
            return cls.from_voc(source)
        if kind == "folder":
            return cls.from_folder(source, size_of=size_of)
        return cls.from_parsed(read_parsed(kind, source, size_of=size_of))

    @classmethod
    def from_parsed(cls, parsed) -> "AnnotationProject":
        """A project of what a format reader read (:class:`~detengine.data.parsed.ParsedDataset`):
        label ``k`` becomes category ``k + 1``, box ids run ``1..N``, each image's split becomes
        its ``detscope_split`` tag (:func:`split_indices` follows it)."""
        images, next_id = [], 1
        for image_id, parsed_image in enumerate(parsed.images, start=1):
            split = {SPLIT_KEY: parsed_image.split} if parsed_image.split else {}
            record = ImageRecord(image_id, parsed_image.file_name, parsed_image.width, parsed_image.height, extra=split)
            for label, x1, y1, x2, y2, iscrowd in parsed_image.boxes:
                record.boxes.append(Box(next_id, label + 1, x1, y1, x2, y2, iscrowd=iscrowd))
                next_id += 1
            images.append(record)
        categories = [Category(i, name) for i, name in enumerate(parsed.class_names, start=1)]
        return cls(images, categories, image_root=parsed.image_root, kind=parsed.kind, problems=parsed.problems)

    @classmethod
    def from_coco(cls, path, *, image_root=None) -> "AnnotationProject":
        """Read a COCO JSON file (see the module's text). The garbage collector is paused while
        the records are made: ~50 objects per box, all kept, would set off full collections over
        everything made so far, again and again (opening 20,000 images / 200,000 boxes)."""
        with _gc_paused():
            return cls._from_coco(path, image_root=image_root)

    @classmethod
    def _from_coco(cls, path, *, image_root=None) -> "AnnotationProject":
        path = Path(path).absolute()
        remove_stale_temp_files(path)                 # left by a save that was killed
        raw = _read_json(path)
        checker = _Checker(path, lenient=True)
        data = checker.run(raw)
        problems = [dataclasses.replace(p, action=KEPT_ACTION) if p.action == "skipped" and p.index >= 0 else p
                    for p in checker.problems]
        raw_lists = {name: raw[name] if isinstance(raw.get(name), list) else [] for name in _SECTIONS}
        info = data.get("info") if isinstance(data.get("info"), dict) else {}
        root = Path(image_root).absolute() if image_root is not None else find_image_root(path, data)
        origins: dict[str, dict] = {name: {} for name in _SECTIONS}
        images = {}
        for im in data["images"]:                     # the very dicts of the file (the checker keeps them)
            images[im["id"]] = record = _image_record(im)
            origins["images"][im["id"]] = (_image_state(record), im)
        skipped_annotations = set(range(len(raw_lists["annotations"]))) - set(checker.annotation_indices)
        for ann, i in zip(data["annotations"], checker.annotation_indices, strict=True):
            original = raw_lists["annotations"][i]
            box, problem = _box_from_coco(ann)
            action = KEPT_ACTION
            if box is not None:
                record = images[ann["image_id"]]
                loaded = box
                box, problem, action = _fit_to_image(box, record.width, record.height)
            if problem:
                problems.append(DatasetProblem(str(path), "annotations", i, shorten_json(original), problem, action))
            if box is None:
                skipped_annotations.add(i)
                continue
            record.boxes.append(box)
            origins["annotations"][box.id] = (ann["image_id"], loaded, original)
        categories = []
        for c in data["categories"]:
            category = Category(c["id"], c["name"], c.get("supercategory", "") or "",
                                {k: v for k, v in c.items() if k not in _CATEGORY_KEYS})
            categories.append(category)
            origins["categories"][c["id"]] = (category, c)
        extra = {k: v for k, v in data.items() if k not in ("info", *_SECTIONS)}
        project = cls(list(images.values()), categories, image_root=root or path.parent, path=path, kind="coco",
                      info=info, extra=extra, problems=problems)
        project.image_root_found = root is not None
        project._origins = origins
        kept_ids = {name: {id(r) for r in data[name]} for name in ("images", "categories")}
        project._kept = {"images": [r for r in raw_lists["images"] if id(r) not in kept_ids["images"]],
                         "categories": [r for r in raw_lists["categories"] if id(r) not in kept_ids["categories"]],
                         "annotations": [raw_lists["annotations"][i] for i in sorted(skipped_annotations)]}
        project._top_keys = list(raw)
        # ids of skipped records are not given to new boxes / classes (the saved file keeps them)
        project._next_box_id = max(project._next_box_id, 1 + max(_int_ids(project._kept["annotations"]), default=0))
        project._reserved_category_ids = set(_int_ids(project._kept["categories"]))
        project.source_digest = hashlib.sha1(path.read_bytes()).hexdigest()
        return project

    @classmethod
    def from_voc(cls, root) -> "AnnotationProject":
        """Every ``Annotations/*.xml`` of a VOC folder; categories numbered 1..K by name. Boxes are
        read as mmdetection reads them (:func:`detengine.data.voc.voc_box`: every corner minus 1),
        so the window and the CLI train on the same boxes; ``difficult`` objects become
        ``iscrowd`` boxes (ignored)."""
        root = Path(root).absolute()
        problems: list[DatasetProblem] = []
        parsed = []
        for xml_path in sorted((root / "Annotations").glob("*.xml"), key=lambda p: natural_key(p.name)):
            try:
                parsed.append(_parse_voc_xml(xml_path, root))
            except DatasetError as exc:
                problems.append(DatasetProblem(str(xml_path), "Annotations", -1, "", str(exc)))
        names = sorted({obj[0] for _, _, _, objs in parsed for obj in objs})
        cat_id = {name: i for i, name in enumerate(names, start=1)}
        images, next_id = [], 1
        for image_id, (file_name, width, height, objects) in enumerate(parsed, start=1):
            record = ImageRecord(image_id, file_name, width, height)
            for name, xyxy, difficult in objects:
                record.boxes.append(Box(next_id, cat_id[name], *xyxy, iscrowd=int(difficult)))
                next_id += 1
            images.append(record)
        categories = [Category(i, name) for name, i in cat_id.items()]
        return cls(images, categories, image_root=root / "JPEGImages", kind="voc", problems=problems)

    @classmethod
    def from_folder(cls, root, *, size_of: Callable | None = None) -> "AnnotationProject":
        """An empty project over every image file under ``root`` (sub-folders included).
        ``size_of(path) -> (w, h) | None`` fills image sizes (the GUI passes a header reader)."""
        root = Path(root).absolute()
        files = sorted((p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                       key=lambda p: natural_key(p.relative_to(root).as_posix()))
        images = []
        for image_id, p in enumerate(files, start=1):
            size = size_of(p) if size_of else None
            w, h = size if size else (None, None)
            images.append(ImageRecord(image_id, p.relative_to(root).as_posix(), w, h))
        if not images:
            raise DatasetError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder "
                               "or its sub-folders", path=root)
        return cls(images, [], image_root=root, kind="folder")

    # ------------------------------------------------------------------ saving

    def to_coco(self, path=None, *, for_file: bool = False) -> dict:
        """The project as a COCO dict; ``info`` records the image folder relative to ``path``
        (the JSON's future location) when it is not the JSON's own folder.

        ``for_file=False`` (training, evaluation): complete records only (``area`` and
        ``iscrowd`` filled in where the file had none), the records skipped at open left out.
        ``for_file=True`` (what :meth:`save` and the autosave write): untouched records exactly
        as read, the skipped records kept. Records are fresh dicts: changing them changes
        nothing here."""
        info = dict(self.info)
        info.pop(IMAGE_ROOT_KEY, None)
        target = Path(path).absolute() if path is not None else self.path
        if target is not None and self.image_root != target.parent:
            info[IMAGE_ROOT_KEY] = _portable_path(self.image_root, target.parent)
        origins = self._origins
        images = [_image_json(im, origins["images"].get(im.id)) for im in self.images]
        annotations = [_annotation_json(box, im.id, origins["annotations"].get(box.id), complete=not for_file)
                       for im in self.images for box in im.boxes]
        categories = [_category_json(c, origins["categories"].get(c.id)) for c in self.categories]
        body = {"info": info, "images": images, "annotations": annotations, "categories": categories}
        if for_file:
            for name in _SECTIONS:
                body[name] += self._kept[name]
            if not info and "info" not in self._top_keys:
                del body["info"]
        out = {}
        for key in self._top_keys:                    # the file's own order of the top-level keys
            if key in body:
                out[key] = body.pop(key)
            elif key in self.extra:
                out[key] = self.extra[key]
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}, **body}

    def to_coco_text(self, path=None, *, for_file: bool = False, add: dict | None = None) -> str:
        """:meth:`to_coco` (plus the top-level keys ``add``) as compact JSON text, the same as
        ``json.dumps(..., separators=(",", ":"))``, encoded in pieces (:func:`_dumps_compact`:
        a worker thread doing this leaves the GUI thread room to run). The garbage collector is
        paused meanwhile: the ~10 fresh dicts per box would set off full collections over the
        whole project (0.4 s at 200,000 boxes, holding the GIL: the GUI would stall)."""
        with _gc_paused():
            data = self.to_coco(path, for_file=for_file)
            data.update(add or {})
            text = _dumps_compact(data)
            for name in _SECTIONS:                    # fresh lists (to_coco): freed in pieces, as one
                records = data.get(name)              # free of 200,000 dicts would hold the GIL long
                while isinstance(records, list) and records:
                    del records[-2000:]
            del data                                  # freed before the collector is back: nothing left to scan
        return text

    def snapshot(self) -> "AnnotationProject":
        """A copy of the project as it is now, cheap enough to take on the GUI thread (the
        autosave serialises it in a worker thread while the user keeps editing this one).
        Boxes and categories are immutable and shared; the lists that edits change (each
        image's boxes, the images, the categories) and the records' mutable fields are copied;
        what the file held (``_origins``, ``_kept``: never changed after opening) is shared."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        new = object.__new__
        images = []
        for im in self.images:
            record = new(ImageRecord)
            record.__dict__.update(im.__dict__)
            record.boxes = im.boxes[:]
            record.extra = dict(im.extra)
            images.append(record)
        copy.images = images
        copy.categories = list(self.categories)
        copy.info = copy_module.deepcopy(self.info)
        copy.extra = dict(self.extra)
        copy.problems = []
        copy._top_keys = list(self._top_keys)
        copy._reserved_category_ids = set(self._reserved_category_ids)
        return copy

    def save(self, path=None, *, backups: int = BACKUPS_KEPT) -> Path:
        """Write the project as COCO JSON atomically (to ``path``, else to where it came from)
        and make ``path`` the project's file. The file it replaces is kept as a timestamped
        ``.bak`` first (the newest ``backups`` are kept; 0: none). A read-only file raises
        :class:`~detengine.io.ReadOnlyFileError` (a ``PermissionError``) and stays as it is; a
        symlink is written through (the link stays a link)."""
        target = Path(path).absolute() if path is not None else self.path
        if target is None:
            raise DatasetError("this project has no file yet: save it with a path", path=None)
        data = self.to_coco_text(target, for_file=True).encode("utf-8")
        check_writable(target)
        if not _holds(target, data):                  # saving what is there already: no new version
            if backups:
                keep_backup(target, backups)
            atomic_write_bytes(target, data)
        self.path, self.kind = target, "coco"
        self.source_digest = hashlib.sha1(data).hexdigest()
        return target

    # ------------------------------------------------------------------ queries

    def image_path(self, index: int) -> Path:
        return self.image_root / self.images[index].file_name

    def category(self, cat_id: int) -> Category:
        for c in self.categories:
            if c.id == cat_id:
                return c
        raise KeyError(f"no category with id {cat_id}")

    def category_ids(self) -> list[int]:
        return [c.id for c in self.categories]

    def category_counts(self) -> dict[int, int]:
        counts = {c.id: 0 for c in self.categories}
        for im in self.images:
            for box in im.boxes:
                counts[box.category_id] = counts.get(box.category_id, 0) + 1
        return counts

    @property
    def num_boxes(self) -> int:
        return sum(len(im.boxes) for im in self.images)

    # ------------------------------------------------------------------ edits (the GUI wraps these in undo commands)

    def new_box_id(self) -> int:
        box_id = self._next_box_id
        self._next_box_id += 1
        return box_id

    def insert_box(self, image: int, box: Box, position: int | None = None) -> None:
        boxes = self.images[image].boxes
        boxes.insert(len(boxes) if position is None else position, box)
        self._next_box_id = max(self._next_box_id, box.id + 1)

    def remove_box(self, image: int, box_id: int) -> tuple[int, Box]:
        """Remove a box; returns ``(position, box)`` so an undo can put it back where it was."""
        record = self.images[image]
        position = record.box_index(box_id)
        return position, record.boxes.pop(position)

    def replace_box(self, image: int, box: Box) -> Box:
        """Put ``box`` in place of the box with the same id; returns the old one."""
        record = self.images[image]
        position = record.box_index(box.id)
        old, record.boxes[position] = record.boxes[position], box
        return old

    def add_category(self, name: str) -> Category:
        name = name.strip()
        if not name:
            raise ValueError("a class name cannot be empty")
        if any(c.name == name for c in self.categories):
            raise ValueError(f"a class named {name!r} already exists")
        category = Category(self.next_category_id(), name)
        self.categories.append(category)
        return category

    def next_category_id(self) -> int:
        """max id ever used + 1: a deleted class's id is never given to a new one (a model's label
        map that knew it must not silently get another class), also across sessions (kept in
        ``info.detscope_next_category_id``); nor is the id of a category skipped at open."""
        next_id = max(self._category_floor(), 1 + max(self.category_ids(), default=0),
                      1 + max(self._reserved_category_ids, default=0))
        self.info[NEXT_CATEGORY_KEY] = next_id + 1
        return next_id

    def _category_floor(self) -> int:
        stored = self.info.get(NEXT_CATEGORY_KEY)
        return stored if isinstance(stored, int) and not isinstance(stored, bool) else 0

    def _retire_category_id(self, cat_id: int) -> None:
        self.info[NEXT_CATEGORY_KEY] = max(self._category_floor(), 1 + max(self.category_ids(), default=0),
                                           cat_id + 1)

    def rename_category(self, cat_id: int, name: str) -> None:
        name = name.strip()
        if not name:
            raise ValueError("a class name cannot be empty")
        if any(c.name == name and c.id != cat_id for c in self.categories):
            raise ValueError(f"a class named {name!r} already exists")
        i = self.category_ids().index(cat_id)
        self.categories[i] = dataclasses.replace(self.categories[i], name=name)

    def merge_categories(self, source_id: int, target_id: int) -> list[int]:
        """Give every ``source_id`` box the class ``target_id`` and delete ``source_id``;
        returns the indices of the images that changed."""
        if source_id == target_id:
            raise ValueError("cannot merge a class into itself")
        self.category(target_id)
        self._retire_category_id(source_id)
        changed = self._recolour(source_id, target_id)
        self.categories = [c for c in self.categories if c.id != source_id]
        return changed

    def delete_category(self, cat_id: int, *, reassign_to: int | None = None) -> list[int]:
        """Delete a class; its boxes go to ``reassign_to`` or, if ``None``, are deleted.
        Returns the indices of the images that changed."""
        self.category(cat_id)
        self._retire_category_id(cat_id)
        if reassign_to is not None:
            return self.merge_categories(cat_id, reassign_to)
        changed = []
        for i, im in enumerate(self.images):
            kept = [b for b in im.boxes if b.category_id != cat_id]
            if len(kept) != len(im.boxes):
                im.boxes[:] = kept
                changed.append(i)
        self.categories = [c for c in self.categories if c.id != cat_id]
        return changed

    def _recolour(self, source_id: int, target_id: int) -> list[int]:
        changed = []
        for i, im in enumerate(self.images):
            if any(b.category_id == source_id for b in im.boxes):
                im.boxes[:] = [b.replace(category_id=target_id) if b.category_id == source_id else b
                               for b in im.boxes]
                changed.append(i)
        return changed


# --------------------------------------------------------------------------- COCO records


@contextlib.contextmanager
def _gc_paused():
    """The cyclic garbage collector off for the block (as it was after; nothing made here forms
    cycles, reference counting frees it all)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _dumps_compact(data: dict, chunk: int = 2000) -> str:
    """``json.dumps(data, separators=(",", ":"))``, the same text, made in pieces: the long
    lists of a COCO dict are encoded ``chunk`` records at a time, so a thread doing this lets
    the others (the GUI) run in between (one C-level ``dumps`` call holds the GIL throughout)."""
    parts = []
    for key, value in data.items():
        if isinstance(value, list) and len(value) > chunk:
            pieces = [json.dumps(value[i:i + chunk], separators=(",", ":"))[1:-1]
                      for i in range(0, len(value), chunk)]
            text = "[" + ",".join(pieces) + "]"
        else:
            text = json.dumps(value, separators=(",", ":"))
        parts.append(json.dumps(key) + ":" + text)
    return "{" + ",".join(parts) + "}"


def _portable_path(target: Path, start: Path) -> str:
    """``target`` relative to ``start`` when they are near (moves together with the project),
    else absolute."""
    try:
        rel = os.path.relpath(target, start)
    except ValueError:                         # Windows: another drive
        return str(Path(target).absolute())
    return rel if not rel.startswith(os.path.join("..", "..", "..")) else str(Path(target).absolute())


def _image_record(im: dict) -> ImageRecord:
    extra = {k: v for k, v in im.items() if k not in _IMAGE_KEYS}
    w, h = im.get("width"), im.get("height")
    return ImageRecord(im["id"], im["file_name"], None if w is None else int(w), None if h is None else int(h),
                       [], extra)


def _box_from_coco(ann: dict) -> tuple[Box | None, str]:
    x, y, w, h = (float(v) for v in ann["bbox"])
    if w <= 0 or h <= 0:
        return None, f"degenerate box: width {w:g} and height {h:g} must both be > 0"
    extra = {k: v for k, v in ann.items() if k not in _BOX_KEYS}
    return Box(ann["id"], ann["category_id"], x, y, x + w, y + h, int(ann.get("iscrowd", 0)), extra), ""


def _holds(path: Path, data: bytes) -> bool:
    """Whether the file ``path`` holds exactly ``data``."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _fit_to_image(box: Box, width, height) -> tuple[Box | None, str, str]:
    """``(box, problem, action)``: a box entirely outside its image is skipped (kept in the
    file), one reaching far beyond it is clipped to it; both are reported. A small overhang
    (labelling tools make them) is left as it is."""
    if width is None or height is None:
        return box, "", ""
    size = f"{width}x{height}"
    if box.x2 <= 0 or box.y2 <= 0 or box.x1 >= width or box.y1 >= height:
        return None, f"box {_xywh_text(box)} lies entirely outside its {size} image", KEPT_ACTION
    slack_x = max(FAR_OUTSIDE_MIN_PX, FAR_OUTSIDE_FRACTION * width)
    slack_y = max(FAR_OUTSIDE_MIN_PX, FAR_OUTSIDE_FRACTION * height)
    beyond = max(-box.x1 - slack_x, -box.y1 - slack_y, box.x2 - width - slack_x, box.y2 - height - slack_y)
    if beyond <= 0:
        return box, "", ""
    reach = max(-box.x1, -box.y1, box.x2 - width, box.y2 - height)
    clipped = box.replace(x1=max(box.x1, 0.0), y1=max(box.y1, 0.0), x2=min(box.x2, float(width)),
                          y2=min(box.y2, float(height)))
    return (clipped, f"box {_xywh_text(box)} reaches {reach:g} px beyond its {size} image",
            f"clipped to the image: {_xywh_text(clipped)} (saved so)")


def _xywh_text(box: Box) -> str:
    return "[" + ", ".join(f"{_tidy(v):g}" for v in (box.x1, box.y1, box.width, box.height)) + "]"


def _int_ids(records: list) -> list[int]:
    return [r["id"] for r in records if isinstance(r, dict) and isinstance(r.get("id"), int)
            and not isinstance(r.get("id"), bool)]


def _image_state(im: ImageRecord) -> tuple:
    return (im.file_name, im.width, im.height, dict(im.extra))


def _merged(raw: dict, known: set, extra: dict, values: dict) -> dict:
    """An edited record: the file's record (its key order), its unknown keys as they are now
    (``extra``), then ``values``."""
    out = {k: v for k, v in raw.items() if k in known or k in extra}
    out.update(extra)
    out.update(values)
    return out


def _image_json(im: ImageRecord, origin) -> dict:
    if origin is None:
        return im.to_coco()
    loaded, raw = origin
    if _image_state(im) == loaded:
        return dict(raw)
    return _merged(raw, _IMAGE_KEYS, im.extra, im.to_coco())


def _category_json(c: Category, origin) -> dict:
    if origin is None:
        return c.to_coco()
    loaded, raw = origin
    if c == loaded and c.extra == loaded.extra:
        return dict(raw)
    return _merged(raw, _CATEGORY_KEYS, c.extra, c.to_coco())


def _annotation_json(box: Box, image_id: int, origin, *, complete: bool) -> dict:
    """A box as a COCO record. Untouched: the record as read (only a renumbered id differs).
    Edited: the record as read with the new values; a bbox number whose edge did not move stays
    as it was, ``area`` follows the box only without a ``segmentation``."""
    if origin is None:
        return box.to_coco(image_id)
    origin_image, loaded, raw = origin
    if origin_image == image_id and box == loaded and box.extra == loaded.extra:
        out = dict(raw)
        if out.get("id") != box.id:                    # renumbered at open (reported)
            out["id"] = box.id
    else:
        rx, ry, rw, rh = raw["bbox"]
        same = [box.x1 == loaded.x1, box.y1 == loaded.y1, box.x2 == loaded.x2, box.y2 == loaded.y2]
        bbox = [rx if same[0] else _tidy(box.x1), ry if same[1] else _tidy(box.y1),
                rw if same[0] and same[2] else _tidy(box.width), rh if same[1] and same[3] else _tidy(box.height)]
        values = {"id": box.id, "image_id": image_id, "category_id": box.category_id, "bbox": bbox}
        if "iscrowd" in raw or box.iscrowd:
            values["iscrowd"] = box.iscrowd
        if not raw.get("segmentation"):
            values["area"] = _tidy(box.width * box.height)
        out = _merged(raw, _BOX_KEYS, box.extra, values)
    if complete:
        out.setdefault("area", _tidy(box.width * box.height))
        out.setdefault("iscrowd", box.iscrowd)
    return out


def _root_candidates(json_path: Path, info: dict) -> list[Path]:
    here = json_path.parent
    stem = json_path.stem
    out = []
    if isinstance(info.get(IMAGE_ROOT_KEY), str):
        out.append(here / info[IMAGE_ROOT_KEY])
    out += [here, here / "images", here.parent / "images", here.parent / stem, here / stem, here.parent]
    if stem.startswith("instances_"):                     # COCO: annotations/instances_val2017.json -> val2017/
        out.insert(1, here.parent / stem[len("instances_"):])
    return out


def find_image_root(json_path: Path, data: dict, probe: int = 20) -> Path | None:
    """The folder that the JSON's ``file_name`` entries are relative to: the first candidate
    (``info.detscope_image_root``, the JSON's folder, ``images/``, COCO's ``../val2017``, ...)
    where the first ``probe`` files exist; ``None`` when none fits (the GUI then asks)."""
    names = [im["file_name"] for im in data["images"][:probe]]
    if not names:
        return json_path.parent
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    best, best_found = None, 0
    for candidate in _root_candidates(json_path, info):
        if candidate.is_dir():
            found = sum((candidate / n).is_file() for n in names)
            if found > best_found:                    # a few missing files must not hide the folder
                best, best_found = candidate, found
    return best.resolve() if best is not None and best_found * 2 >= len(names) else None


# --------------------------------------------------------------------------- VOC


def _parse_voc_xml(path: Path, root: Path):
    """(file name, width, height, objects) of one XML, through the one VOC parser."""
    from .voc import parse_voc_annotation
    annotation = parse_voc_annotation(path)
    file_name = annotation.file_name or f"{path.stem}.jpg"
    if not (root / "JPEGImages" / file_name).exists() and (root / "JPEGImages" / f"{path.stem}.jpg").exists():
        file_name = f"{path.stem}.jpg"
    objects = [(o.name, tuple(o.box), o.difficult) for o in annotation.objects]
    return file_name, annotation.width, annotation.height, objects


# --------------------------------------------------------------------------- the sample project


def sample_project(home) -> Path:
    """The built-in sample project: the synthetic dataset's train and val splits in one COCO
    file under ``home`` (the user's DetScope folder), each image tagged ``detscope_split``.
    Made on first use; the generated dataset in the cache is never written to."""
    from .synthetic import ensure_synthetic_dataset

    path = Path(home) / "sample" / "annotations.json"
    if path.is_file():
        return path
    paths = ensure_synthetic_dataset()
    images, annotations, next_image = [], [], 1
    categories = json.loads(paths.train_json.read_text(encoding="utf-8"))["categories"]
    for split, json_path in (("train", paths.train_json), ("val", paths.val_json)):
        data = json.loads(json_path.read_text(encoding="utf-8"))
        id_map = {}
        for im in data["images"]:
            id_map[im["id"]] = next_image
            images.append({**im, "id": next_image, "file_name": f"{split}/{im['file_name']}",
                           "detscope_split": split})
            next_image += 1
        for ann in data["annotations"]:
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": id_map[ann["image_id"]]})
    info = {"description": "DetScope sample project (built-in synthetic shapes)",
            IMAGE_ROOT_KEY: _portable_path(paths.root, path.parent)}
    atomic_write_text(path, json.dumps({"info": info, "images": images, "annotations": annotations,
                                        "categories": categories}, separators=(",", ":")))
    return path


# --------------------------------------------------------------------------- train / val splits


SPLIT_KEY = "detscope_split"


def split_indices(project: AnnotationProject, val_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train, val) image indices: the images' ``detscope_split`` tags when every image has one
    (``test`` images, a YOLO data.yaml's test split, are in neither), else a seeded random split
    with ``val_fraction`` of the images (at least one each)."""
    tags = [im.extra.get(SPLIT_KEY) for im in project.images]
    if tags and all(t in ("train", "val", "test") for t in tags) and "train" in tags and "val" in tags:
        return ([i for i, t in enumerate(tags) if t == "train"], [i for i, t in enumerate(tags) if t == "val"])
    n = len(project.images)
    if n < 2:
        raise ValueError(f"a train/val split needs at least 2 images, the project has {n}")
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    return sorted(order[n_val:]), sorted(order[:n_val])


def write_split(project: AnnotationProject, indices: list[int], path) -> Path:
    """A COCO file of the images ``indices`` (with their boxes as they are now, unsaved edits
    included) for training or evaluation; ``file_name`` stays relative to ``project.image_root``."""
    data = project.to_coco()
    keep = {project.images[i].id for i in indices}
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    data["info"] = {k: v for k, v in data["info"].items() if k != IMAGE_ROOT_KEY}
    path = Path(path)
    atomic_write_text(path, json.dumps(data, separators=(",", ":")))
    return path
