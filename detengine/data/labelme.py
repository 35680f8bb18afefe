"""Reading a labelme folder: one JSON file per image (``shapes``, ``imagePath``, ``imageWidth``,
``imageHeight``), anywhere under the folder.

A ``rectangle`` shape (two corner points, in any order) is a box; a ``polygon`` becomes its
bounding box (counted in one note). Other shape types (``circle``, ``line``, ``point``,
``linestrip``, ``mask``, ...) are no boxes: each is listed as a problem, not dropped silently;
so are shapes without a label or with bad points, JSON files that cannot be read and JSON files
that are not labelme's. ``imagePath`` is relative to its JSON file (Windows ``\\`` separators
are read too); without it, the image of the JSON's name beside it. Sizes come from the JSON,
else from the image file's header. A shape's ``"difficult": true`` makes an ``iscrowd`` box, and a
top-level ``"detscope_split"`` a split tag (both written by DetScope's labelme export; labelme
keeps unknown keys). Images under the folder without a JSON file are images without boxes.
Categories are the labels sorted by name, numbered ``1..K``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import DatasetError, DatasetProblem, shorten_json
from .image_size import read_image_size
from .parsed import (
    IMAGE_SUFFIXES,
    ParsedBox,
    ParsedDataset,
    ParsedImage,
    common_root,
    list_images,
    natural_key,
    relative_name,
    summary_problem,
)

__all__ = ["read_labelme_folder", "is_labelme_folder", "BOX_SHAPES", "SPLIT_KEY"]

BOX_SHAPES = ("rectangle", "polygon")
SPLIT_KEY = "detscope_split"            # as detengine.data.project.SPLIT_KEY
_SPLITS = ("train", "val", "test")
_PROBE_BYTES = 65536


@dataclass(frozen=True)
class _Shape:
    label: str
    xyxy: tuple[float, float, float, float]
    iscrowd: int
    polygon: bool


@dataclass
class _LabelmeFile:
    path: Path
    image: Path
    width: int | None
    height: int | None
    shapes: list[_Shape]
    split: str | None


def read_labelme_folder(root, *, size_of: Callable | None = None) -> ParsedDataset:
    """Every labelme JSON under ``root`` and every image without one (see the module's text).
    ``size_of(path) -> (w, h) | None`` gives the sizes the JSON lacks (default: the header)."""
    root = Path(root).absolute()
    size_of = size_of or read_image_size
    problems: list[DatasetProblem] = []
    json_paths = sorted(root.rglob("*.json"), key=lambda p: natural_key(p.relative_to(root).as_posix()))
    files = [f for f in (_read_file(p, problems) for p in json_paths) if f is not None]
    if not files:
        raise DatasetError(f"{root}: no labelme JSON file (a JSON object with \"shapes\") in this folder or its "
                           f"sub-folders ({len(json_paths)} .json files looked at)", path=root)
    by_image = _one_file_per_image(files, problems)
    unlabelled = [p for p in list_images(root) if p not in by_image]
    image_root = common_root([*by_image, *unlabelled], root)
    names = sorted({shape.label for f in by_image.values() for shape in f.shapes})
    label_of = {name: i for i, name in enumerate(names)}
    images = [_labelled_image(f, image_root, label_of, size_of) for f in by_image.values()]
    images += [_unlabelled_image(p, image_root, size_of) for p in unlabelled]
    images.sort(key=lambda im: natural_key(im.file_name))
    polygons = sum(shape.polygon for f in by_image.values() for shape in f.shapes)
    if polygons:
        problems.append(summary_problem(root, "shapes", f"{polygons} polygons", "read as their bounding boxes"))
    return ParsedDataset("labelme", root, image_root, names, images, problems)


def _one_file_per_image(files: list[_LabelmeFile], problems: list) -> dict[Path, _LabelmeFile]:
    by_image: dict[Path, _LabelmeFile] = {}
    for f in files:
        first = by_image.setdefault(f.image, f)
        if first is not f:
            problems.append(summary_problem(f.path, "imagePath", f"its image {f.image} is also labelled by "
                                            f"{first.path}", "skipped (the first file's boxes are used)"))
    return by_image


def _labelled_image(f: _LabelmeFile, root: Path, label_of: dict, size_of: Callable) -> ParsedImage:
    width, height = f.width, f.height
    if width is None or height is None:
        width, height = size_of(f.image) or (None, None)
    boxes = [ParsedBox(label_of[s.label], *s.xyxy, s.iscrowd) for s in f.shapes]
    return ParsedImage(relative_name(f.image, root), width, height, boxes, f.split)


def _unlabelled_image(path: Path, root: Path, size_of: Callable) -> ParsedImage:
    width, height = size_of(path) or (None, None)
    return ParsedImage(relative_name(path, root), width, height)


# --------------------------------------------------------------------------- one JSON file


def _read_file(path: Path, problems: list) -> _LabelmeFile | None:
    """One labelme file (its bad shapes listed in ``problems``), or None (listed) when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problems.append(summary_problem(path, "file", f"not a readable JSON file: {exc}", "skipped"))
        return None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        problems.append(summary_problem(path, "shapes", "not a labelme file: no \"shapes\" list", "skipped"))
        return None
    shapes = []
    for i, shape in enumerate(data["shapes"]):
        try:
            shapes.append(_shape(shape))
        except ValueError as exc:
            problems.append(DatasetProblem(str(path), "shapes", i, shorten_json(shape), str(exc)))
    split = data.get(SPLIT_KEY) if data.get(SPLIT_KEY) in _SPLITS else None
    return _LabelmeFile(path, _image_path(path, data, problems), _size(data, "imageWidth"),
                        _size(data, "imageHeight"), shapes, split)


def _image_path(json_path: Path, data: dict, problems: list) -> Path:
    raw = data.get("imagePath")
    if isinstance(raw, str) and raw.strip():
        image = Path(os.path.normpath(json_path.parent / raw.strip().replace("\\", "/")))
        if not image.is_file():
            problems.append(summary_problem(json_path, "imagePath", f"image {raw!r} not found ({image})",
                                            "its boxes kept; the image is missing"))
        return image
    beside = [json_path.with_suffix(s) for s in IMAGE_SUFFIXES if json_path.with_suffix(s).is_file()]
    image = beside[0] if beside else json_path.with_suffix(".jpg")
    problems.append(summary_problem(json_path, "imagePath", f"no imagePath (got {shorten_json(raw, 40)})",
                                    f"the image taken to be {image.name}"))
    return image


def _size(data: dict, key: str) -> int | None:
    value = data.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return int(value)
    return None


def _shape(shape) -> _Shape:
    """A rectangle or polygon shape as a box; a ``ValueError`` says why another is not one."""
    if not isinstance(shape, dict):
        raise ValueError(f"a shape must be an object, got {type(shape).__name__}")
    kind = shape.get("shape_type") or "polygon"          # labelme's default when the key is missing
    if kind not in BOX_SHAPES:
        raise ValueError(f"shape_type {kind!r} is not a box: only rectangle and polygon shapes become boxes")
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"'label' must be a non-empty string, got {shorten_json(label, 40)}")
    xs, ys = _points(shape.get("points"), 2 if kind == "rectangle" else 3)
    x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"the {kind} has no area: x {x1:g}..{x2:g}, y {y1:g}..{y2:g}")
    return _Shape(label, (x1, y1, x2, y2), int(bool(shape.get("difficult"))), kind == "polygon")


def _points(raw, minimum: int) -> tuple[list[float], list[float]]:
    def is_number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = isinstance(raw, list) and len(raw) >= minimum and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and is_number(p[0]) and is_number(p[1]) for p in raw)
    if not ok:
        raise ValueError(f"'points' must be a list of at least {minimum} [x, y] pairs of numbers, got "
                         f"{shorten_json(raw, 60)}")
    return [float(p[0]) for p in raw], [float(p[1]) for p in raw]


# --------------------------------------------------------------------------- recognising a labelme folder


def is_labelme_folder(folder, probe: int = 20) -> bool:
    """Whether one of the first ``probe`` JSON files under ``folder`` looks like labelme's (its
    first 64 KiB hold ``"shapes"``: labelme writes it before the image data; a COCO file is not read whole)."""
    for k, path in enumerate(Path(folder).rglob("*.json")):
        if k >= probe:
            return False
        try:
            with open(path, "rb") as f:
                head = f.read(_PROBE_BYTES)
        except OSError:
            continue
        if b'"shapes"' in head:
            return True
    return False
