"""What the YOLO and labelme readers hand to :class:`~detengine.data.project.AnnotationProject`.

Plain data with no import of the project module (the project imports the readers, so they
cannot import it back): :class:`ParsedDataset` holds images with xyxy pixel boxes whose labels
are contiguous ``0..K-1`` into ``class_names``; the project numbers the categories ``label + 1``.
Also the small helpers both readers share: the image suffixes, natural order, relative names,
and one :class:`DatasetProblem` per bad text line.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .errors import DatasetProblem

__all__ = ["ParsedBox", "ParsedImage", "ParsedDataset", "IMAGE_SUFFIXES", "natural_key", "list_images",
           "relative_name", "common_root", "line_problem", "summary_problem"]

#: the same suffixes as :data:`detengine.data.project.IMAGE_EXTENSIONS` (a test checks)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_RECORD_LIMIT = 160


class ParsedBox(NamedTuple):
    """One box: ``label`` in ``0..K-1``, corners in original pixels, ``iscrowd`` 0 or 1."""

    label: int
    x1: float
    y1: float
    x2: float
    y2: float
    iscrowd: int = 0


@dataclass
class ParsedImage:
    """One image: ``file_name`` is POSIX, relative to the dataset's ``image_root``; ``split``
    is ``"train"``, ``"val"``, ``"test"`` or ``None``; sizes are ``None`` when unknown."""

    file_name: str
    width: int | None
    height: int | None
    boxes: list[ParsedBox] = field(default_factory=list)
    split: str | None = None


@dataclass
class ParsedDataset:
    """A whole dataset as read: ``kind`` (``"yolo"``, ``"labelme"``), ``source`` (the file or
    folder opened), the folder ``file_name`` is relative to, the class names and what was wrong."""

    kind: str
    source: Path
    image_root: Path
    class_names: list[str]
    images: list[ParsedImage]
    problems: list[DatasetProblem] = field(default_factory=list)

    def __repr__(self) -> str:
        num_boxes = sum(len(im.boxes) for im in self.images)
        return (f"ParsedDataset(kind={self.kind!r}, images={len(self.images)}, boxes={num_boxes}, "
                f"classes={len(self.class_names)}, problems={len(self.problems)})")


def natural_key(text: str) -> list:
    """Sort key that orders ``img2`` before ``img10`` (as :func:`detengine.data.project.natural_key`)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def list_images(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (sub-folders included), in natural order."""
    found = (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return sorted(found, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root``, POSIX (``file_name`` of an image)."""
    return Path(os.path.relpath(path, root)).as_posix()


def common_root(paths: list[Path], preferred: Path) -> Path:
    """``preferred`` when every path lies under it, else the deepest folder holding them all."""
    parents = {p.parent for p in paths}
    if all(preferred == parent or preferred in parent.parents for parent in parents):
        return preferred
    return Path(os.path.commonpath([str(p) for p in parents]))


def line_problem(file: Path, line_number: int, line: str, message: str, action: str = "skipped") -> DatasetProblem:
    """A bad line of a text file: ``file: line[N] <the line>: message (action)``; 1-based ``line_number``."""
    text = line.strip()
    text = text if len(text) <= _RECORD_LIMIT else text[: _RECORD_LIMIT - 3] + "..."
    return DatasetProblem(str(file), "line", line_number, text, message, action)


def summary_problem(file: Path, section: str, message: str, action: str) -> DatasetProblem:
    """A note about the whole dataset (``file: "section": message (action)``)."""
    return DatasetProblem(str(file), section, -1, "", message, action)
