"""Which annotation format a path holds, and reading the formats that go through
:class:`~detengine.data.parsed.ParsedDataset` (YOLO, labelme).

:func:`detect_format` answers, in this order: a ``.yaml``/``.yml`` file is a YOLO dataset YAML,
any other file COCO JSON; a folder with ``Annotations/`` and ``JPEGImages/`` is Pascal VOC; one
with a ``data.yaml`` (or a single dataset YAML) is that YOLO dataset; one holding labelme JSON
files is labelme; one with ``classes.txt`` or YOLO label files for its images is a YOLO folder;
anything else a plain image folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .errors import DatasetError
from .labelme import is_labelme_folder, read_labelme_folder
from .parsed import ParsedDataset
from .yolo import find_data_yaml, is_yolo_folder, read_yolo_folder, read_yolo_yaml

__all__ = ["detect_format", "read_parsed", "OPEN_FORMATS"]

OPEN_FORMATS = ("coco", "voc", "yolo", "labelme", "folder")


def detect_format(path) -> tuple[str, Path]:
    """``(format, what to open)``: one of :data:`OPEN_FORMATS` and the file or folder to read
    (a folder's ``data.yaml`` for a YOLO dataset). A missing path raises :class:`DatasetError`."""
    path = Path(path)
    if path.is_file():
        return ("yolo", path) if path.suffix.lower() in (".yaml", ".yml") else ("coco", path)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such file or folder", path=path)
    if (path / "Annotations").is_dir() and (path / "JPEGImages").is_dir():
        return "voc", path
    data_yaml = find_data_yaml(path)
    if data_yaml is not None:
        return "yolo", data_yaml
    if is_labelme_folder(path):
        return "labelme", path
    if is_yolo_folder(path):
        return "yolo", path
    return "folder", path


def read_parsed(kind: str, path, *, size_of: Callable | None = None) -> ParsedDataset:
    """Read a ``"yolo"`` (YAML file or folder) or ``"labelme"`` dataset."""
    path = Path(path)
    if kind == "yolo":
        return read_yolo_yaml(path, size_of=size_of) if path.is_file() else read_yolo_folder(path, size_of=size_of)
    if kind == "labelme":
        return read_labelme_folder(path, size_of=size_of)
    raise ValueError(f"read_parsed reads 'yolo' or 'labelme', got {kind!r}")
