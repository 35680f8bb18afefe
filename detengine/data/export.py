"""Writing an annotation project as YOLO (Ultralytics), Pascal VOC, labelme or COCO.

Layouts, chosen so that each format's own tools read the result as it is:

* ``yolo``: ``DST/data.yaml`` (``path``: DST, absolute, as Ultralytics resolves a relative one
  against its own datasets folder; ``train``/``val``/``test``: ``images/<split>``; ``names``
  ``{index: name}``), ``DST/images/<split>/NAME.ext``, ``DST/labels/<split>/NAME.txt`` (``class cx
  cy w h``, 6 decimals; an image without boxes gets an empty file) and ``DST/classes.txt``
  (labelImg). Without split tags: ``images/`` and ``labels/``, ``train`` and ``val`` both
  ``images``. Ultralytics finds an image's labels only by replacing the last ``/images/`` of the
  image's path with ``/labels/``, so the images must sit under ``DST/images``: they are
  symbolic links to the originals (``images="link"``; a hard link, else a copy, where links
  cannot be made) or copies (``images="copy"``). Category ``k``-th by id is YOLO class ``k - 1``
  (a YOLO dataset's class ``i`` was category ``i + 1``: the same index back). YOLO has no crowd /
  difficult boxes (Ultralytics' own VOC script drops difficult objects): they are left out, and
  counted in the notes; a box reaching outside its image is clipped to it (Ultralytics rejects
  a label file with values outside ``[0, 1]``), counted.
* ``voc``: ``DST/Annotations/NAME.xml``, ``DST/JPEGImages/NAME.ext`` (linked or copied) and
  ``DST/ImageSets/Main/`` lists (``train``/``val``/``test`` by split tag, ``trainval`` = train + val,
  as VOC; without tags every image is in ``trainval``). Corners are written 1-based in whole
  pixels, ``round(x) + 1``: :func:`detengine.data.voc.voc_box` (mmdetection's reading) takes 1
  from each, so a VOC project written again is the same file, and a fractional box moves by at
  most 0.5 px (counted). ``iscrowd`` boxes are ``<difficult>1</difficult>``.
* ``labelme``: ``DST/NAME.json`` beside ``DST/NAME.ext`` (linked or copied; labelme opens a folder
  of images and finds each one's JSON by name), one ``rectangle`` shape per box, crowd boxes with
  ``"difficult": true`` and the split tag as ``"detscope_split"`` (labelme keeps unknown keys).
* ``coco``: one JSON file (DST itself when it ends in ``.json``, else ``DST/annotations.json``),
  pointing at the project's image folder, written atomically (:func:`atomic_write_text`).

NAME is the image file's stem, or its path with ``/`` as ``__`` where stems repeat (per split for
YOLO). A folder format is written into a temporary folder beside DST, renamed to DST at the end:
DST appears complete or not at all, and it must not exist or be empty (nothing of the user's is
overwritten). Nothing is dropped silently: :class:`ExportResult` counts what each format could
not hold.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from ..io import atomic_write_text, check_output_path
from .errors import DatasetError
from .image_size import read_image_size
from .project import SPLIT_KEY, AnnotationProject

__all__ = ["EXPORT_FORMATS", "IMAGE_MODES", "ExportResult", "export_project", "convert_dataset", "flat_names"]

EXPORT_FORMATS = ("coco", "yolo", "voc", "labelme")
IMAGE_MODES = ("link", "copy")
_SPLITS = ("train", "val", "test")
_LABELME_VERSION = "5.5.0"


@dataclass
class ExportResult:
    """What an export wrote: ``path`` is what to open (``data.yaml``, the VOC or labelme folder,
    the COCO file); ``image_files`` counts how images got there (``linked``, ``hard-linked``,
    ``copied``, ``missing``); ``notes`` say what the format could not hold as it was."""

    format: str
    path: Path
    images: int = 0
    boxes: int = 0
    image_files: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        files = ", ".join(f"{n} {how}" for how, n in sorted(self.image_files.items()))
        lines = [f"wrote {self.format}: {self.images} images, {self.boxes} boxes -> {self.path}"
                 + (f" (image files: {files})" if files else "")]
        return "\n".join(lines + [f"  note: {note}" for note in self.notes])


def export_project(project: AnnotationProject, dst, fmt: str, *, images: str = "link",
                   size_of: Callable | None = None) -> ExportResult:
    """Write ``project`` as ``fmt`` (one of :data:`EXPORT_FORMATS`) to ``dst`` (see the module's
    text). ``images``: ``"link"`` or ``"copy"`` the image files into a folder format;
    ``size_of(path) -> (w, h) | None`` gives sizes the project lacks (default: the file header)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {', '.join(IMAGE_MODES)}, got {images!r}")
    dst = Path(dst).absolute()
    if fmt == "coco":
        return _write_coco(project, dst)
    writer = {"yolo": _write_yolo, "voc": _write_voc, "labelme": _write_labelme}[fmt]
    with _staging(dst) as stage:
        return writer(project, stage, dst, _ImageFiles(images), size_of or read_image_size)


def convert_dataset(src, dst, fmt: str, *, images: str = "link", image_root=None,
                    size_of: Callable | None = None) -> tuple[AnnotationProject, ExportResult]:
    """Open ``src`` (any format :meth:`AnnotationProject.open` reads) and export it as ``fmt``
    to ``dst``; returns the project (its ``problems``: what was wrong in ``src``) and the result."""
    project = AnnotationProject.open(src, image_root=image_root, size_of=size_of)
    return project, export_project(project, dst, fmt, images=images, size_of=size_of)


# --------------------------------------------------------------------------- shared pieces


@contextlib.contextmanager
def _staging(dst: Path):
    """A temporary folder beside ``dst`` that becomes ``dst`` when the block ends without error."""
    check_output_path(dst, "folder", "export")
    if dst.is_dir() and any(dst.iterdir()):
        raise DatasetError(f"export folder {dst} is not empty: give a new or empty folder "
                           "(nothing in it is overwritten)", path=dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dst.name}.{os.getpid()}.", suffix=".tmp", dir=dst.parent))
    try:
        yield stage
        if dst.is_dir():
            dst.rmdir()
        os.replace(stage, dst)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


class _ImageFiles:
    """Puts image files into the export (linked or copied) and counts how."""

    def __init__(self, mode: str):
        self.mode = mode
        self.counts: Counter = Counter()

    def place(self, source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not source.is_file():
            self.counts["missing"] += 1
            return
        self.counts[_link_or_copy(source, target, self.mode)] += 1


def _link_or_copy(source: Path, target: Path, mode: str) -> str:
    if mode == "link":
        with contextlib.suppress(OSError):
            os.symlink(source.resolve(), target)
            return "linked"
        with contextlib.suppress(OSError):
            os.link(source, target)
            return "hard-linked"
    shutil.copy2(source, target)
    return "copied"


def flat_names(file_names: list[str]) -> list[str]:
    """A unique name per image, without suffix: the stems when they are unique, else the path with
    ``/`` as ``__`` (``_2``, ``_3`` added where even those repeat)."""
    stems = [PurePosixPath(name).stem for name in file_names]
    if len(set(stems)) == len(stems):
        return stems
    paths = [str(PurePosixPath(name).with_suffix("")).replace("/", "__") for name in file_names]
    seen: Counter = Counter()
    out = []
    for path in paths:
        seen[path] += 1
        out.append(path if seen[path] == 1 else f"{path}_{seen[path]}")
    return out


def _image_size(project: AnnotationProject, index: int, size_of: Callable) -> tuple[int, int] | None:
    image = project.images[index]
    if image.width is not None and image.height is not None:
        return int(image.width), int(image.height)
    return size_of(project.image_path(index))


def _split_groups(project: AnnotationProject, counts: Counter) -> dict[str | None, list[int]]:
    """Image indices per split tag; ``{None: all}`` when no image has one (untagged images of a
    tagged project go with ``train``, counted)."""
    tags = [im.extra.get(SPLIT_KEY) for im in project.images]
    if not any(t in _SPLITS for t in tags):
        return {None: list(range(len(tags)))}
    groups: dict[str | None, list[int]] = {}
    for i, tag in enumerate(tags):
        counts["untagged"] += tag not in _SPLITS
        groups.setdefault(tag if tag in _SPLITS else "train", []).append(i)
    return {split: groups[split] for split in _SPLITS if split in groups}


def _class_index(project: AnnotationProject) -> tuple[list[str], dict[int, int]]:
    """(names, category id -> 0-based index), categories in id order."""
    categories = sorted(project.categories, key=lambda c: c.id)
    return [c.name for c in categories], {c.id: i for i, c in enumerate(categories)}


def _notes(counts: Counter, fmt: str) -> list[str]:
    texts = {
        "crowd": f"{{}} crowd / difficult boxes left out ({fmt} has no ignore regions)",
        "clipped": "{} boxes reaching outside their image clipped to it (YOLO values lie in [0, 1])",
        "outside": "{} boxes entirely outside their image left out",
        "unsized": "{} images of unknown size (missing or unreadable): their boxes could not be normalised "
                   "and were left out",
        "unsized_boxes": "{} boxes of images of unknown size left out",
        "rounded": "{} boxes moved to whole pixels (VOC's <bndbox> holds integers; at most 0.5 px)",
        "untagged": "{} images without a split tag written with the train images",
        "no_val": "no val images: data.yaml's val is the train images",
        "not_jpg": "{} images are not .jpg: mmdetection's VOC dataset (and detengine train --data) look for "
                   "JPEGImages/NAME.jpg; DetScope's window reads <filename>",
    }
    return [texts[key].format(n) for key, n in counts.items() if n and key in texts]


# --------------------------------------------------------------------------- COCO


def _write_coco(project: AnnotationProject, dst: Path) -> ExportResult:
    target = dst / "annotations.json" if dst.is_dir() or dst.suffix.lower() != ".json" else dst
    check_output_path(target, "file", "COCO export")
    atomic_write_text(target, project.to_coco_text(target))
    return ExportResult("coco", target, len(project.images), project.num_boxes)


# --------------------------------------------------------------------------- YOLO


def _write_yolo(project, stage: Path, final: Path, files: _ImageFiles, size_of: Callable) -> ExportResult:
    names, index_of = _class_index(project)
    counts: Counter = Counter()      # what becomes notes (_notes)
    groups = _split_groups(project, counts)
    result = ExportResult("yolo", final / "data.yaml", len(project.images), image_files=files.counts)
    for split, indices in groups.items():
        sub = Path("") if split is None else Path(split)
        members = flat_names([project.images[i].file_name for i in indices])
        for i, name in zip(indices, members):
            image = project.images[i]
            files.place(project.image_path(i), stage / "images" / sub / f"{name}{Path(image.file_name).suffix}")
            lines = _yolo_lines(image, index_of, _image_size(project, i, size_of), counts)
            result.boxes += len(lines)
            (stage / "labels" / sub).mkdir(parents=True, exist_ok=True)
            (stage / "labels" / sub / f"{name}.txt").write_text("".join(f"{line}\n" for line in lines),
                                                               encoding="utf-8")
    (stage / "classes.txt").write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    (stage / "data.yaml").write_text(_data_yaml(project, final, names, groups, counts), encoding="utf-8")
    result.notes = _notes(counts, "YOLO")
    return result


def _yolo_lines(image, index_of: dict, size, counts: Counter) -> list[str]:
    """``class cx cy w h`` per box, normalised, 6 decimals; crowd boxes left out (counted)."""
    counts["crowd"] += sum(box.iscrowd for box in image.boxes)
    boxes = [box for box in image.boxes if not box.iscrowd]
    if size is None:
        counts["unsized"] += 1
        counts["unsized_boxes"] += len(boxes)
        return []
    width, height = size
    lines = []
    for box in boxes:
        x1, y1 = max(box.x1 / width, 0.0), max(box.y1 / height, 0.0)
        x2, y2 = min(box.x2 / width, 1.0), min(box.y2 / height, 1.0)
        if x2 <= x1 or y2 <= y1:
            counts["outside"] += 1
            continue
        counts["clipped"] += (x1, y1, x2, y2) != (box.x1 / width, box.y1 / height, box.x2 / width, box.y2 / height)
        lines.append(f"{index_of[box.category_id]} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} "
                     f"{y2 - y1:.6f}")
    return lines


def _data_yaml(project, final: Path, names: list[str], groups: dict, counts: Counter) -> str:
    import yaml
    if None in groups:
        splits = {"train": "images", "val": "images"}
    else:
        splits = {split: f"images/{split}" for split in groups}
        splits.setdefault("train", next(iter(splits.values())))    # Ultralytics needs train and val
        counts["no_val"] += "val" not in splits
        splits.setdefault("val", splits["train"])
        splits = {k: splits[k] for k in _SPLITS if k in splits}
    body = {"path": str(final), **splits, "nc": len(names), "names": dict(enumerate(names))}
    source = project.path or project.image_root
    header = (f"# Written by DetScope from {project.kind} {source}.\n"
              "# Ultralytics: yolo train data=<this file>. Images under images/ are links to (or copies of)\n"
              "# the originals; labels/ mirrors images/ (Ultralytics' rule: /images/ -> /labels/, .txt).\n")
    return header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------- Pascal VOC


def _write_voc(project, stage: Path, final: Path, files: _ImageFiles, size_of: Callable) -> ExportResult:
    counts: Counter = Counter()      # what becomes notes (_notes)
    names = flat_names([im.file_name for im in project.images])
    category_names = {c.id: c.name for c in project.categories}
    (stage / "Annotations").mkdir(parents=True)
    for i, (image, name) in enumerate(zip(project.images, names)):
        suffix = Path(image.file_name).suffix
        counts["not_jpg"] += suffix.lower() != ".jpg"
        files.place(project.image_path(i), stage / "JPEGImages" / f"{name}{suffix}")
        xml = _voc_xml(image, f"{name}{suffix}", _image_size(project, i, size_of), category_names, counts)
        (stage / "Annotations" / f"{name}.xml").write_bytes(xml)
    _voc_image_sets(project, stage, names, counts)
    result = ExportResult("voc", final, len(project.images), project.num_boxes, files.counts)
    result.notes = _notes(counts, "VOC")
    return result


def _voc_xml(image, file_name: str, size, category_names: dict, counts: Counter) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = file_name
    if size is not None:
        size_element = ET.SubElement(root, "size")
        for tag, value in (("width", size[0]), ("height", size[1]), ("depth", 3)):
            ET.SubElement(size_element, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for box in image.boxes:
        _voc_object(root, box, category_names[box.category_id], counts)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"


def _voc_object(root, box, name: str, counts: Counter) -> None:
    """One ``<object>``: corners 1-based whole pixels, ``round(x) + 1`` (see the module's text)."""
    obj = ET.SubElement(root, "object")
    for tag, value in (("name", name), ("pose", "Unspecified"), ("truncated", "0"),
                       ("difficult", str(int(box.iscrowd)))):
        ET.SubElement(obj, tag).text = value
    bndbox = ET.SubElement(obj, "bndbox")
    corners = [round(v) for v in box.xyxy]
    counts["rounded"] += any(abs(a - b) > 1e-6 for a, b in zip(corners, box.xyxy))
    for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), corners):
        ET.SubElement(bndbox, tag).text = str(value + 1)


def _voc_image_sets(project, stage: Path, names: list[str], counts: Counter) -> None:
    groups = _split_groups(project, counts)
    sets = {"trainval": groups[None]} if None in groups else dict(groups)
    if None not in groups:
        sets["trainval"] = sorted(groups.get("train", []) + groups.get("val", []))
    folder = stage / "ImageSets" / "Main"
    folder.mkdir(parents=True)
    for set_name, indices in sets.items():
        (folder / f"{set_name}.txt").write_text("".join(f"{names[i]}\n" for i in indices), encoding="utf-8")


# --------------------------------------------------------------------------- labelme


def _write_labelme(project, stage: Path, final: Path, files: _ImageFiles, size_of: Callable) -> ExportResult:
    names = flat_names([im.file_name for im in project.images])
    category_names = {c.id: c.name for c in project.categories}
    for i, (image, name) in enumerate(zip(project.images, names)):
        image_name = f"{name}{Path(image.file_name).suffix}"
        files.place(project.image_path(i), stage / image_name)
        size = _image_size(project, i, size_of)
        data = _labelme_json(image, image_name, size, category_names)
        (stage / f"{name}.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return ExportResult("labelme", final, len(project.images), project.num_boxes, files.counts)


def _labelme_json(image, image_name: str, size, category_names: dict) -> dict:
    shapes = []
    for box in image.boxes:
        shape = {"label": category_names[box.category_id], "points": [[_tidy(box.x1), _tidy(box.y1)],
                                                                      [_tidy(box.x2), _tidy(box.y2)]],
                 "group_id": None, "description": "", "shape_type": "rectangle", "flags": {}, "mask": None}
        if box.iscrowd:
            shape["difficult"] = True
        shapes.append(shape)
    width, height = size if size is not None else (None, None)
    data = {"version": _LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": image_name,
            "imageData": None, "imageHeight": height, "imageWidth": width}
    if image.extra.get(SPLIT_KEY) in _SPLITS:
        data[SPLIT_KEY] = image.extra[SPLIT_KEY]
    return data


def _tidy(value: float) -> float | int:
    """Whole numbers as int, others rounded to 1e-6 px (as the COCO writer)."""
    value = round(float(value), 6)
    return int(value) if value.is_integer() else value
