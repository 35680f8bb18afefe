"""Reading YOLO datasets: an Ultralytics ``data.yaml``, or a folder of images and ``.txt`` labels.

* ``data.yaml``: ``path`` (the dataset folder; relative to the YAML's folder, else to the
  current folder as Ultralytics resolves it; none: the YAML's folder), ``train`` / ``val`` /
  ``test`` (each an image folder, read recursively, a ``.txt`` list of image paths, or a list
  of those), ``names`` (a list, or a mapping ``{id: name}``) and optionally ``nc``.
* A folder (labelImg's YOLO mode, or ``images/`` + ``labels/`` without a YAML): every image
  under it, class names from ``classes.txt`` (the folder's, ``labels/``'s, else the first one
  found); an image under a folder named ``train``, ``val``/``valid`` or ``test`` gets that split.

An image's label file is found by Ultralytics' rule (:func:`label_path_for`): the last
``/images/`` of its path becomes ``/labels/`` and its suffix ``.txt`` (no ``/images/``: the
``.txt`` beside the image). An image without one has no boxes. A line is ``class cx cy w h``
normalised to the image (its size from the file header, :func:`read_image_size`), or a polygon
``class x1 y1 x2 y2 x3 y3 ...`` (an odd number of fields, at least 7), read as its bounding box
(counted in one note). YOLO class ``i`` becomes category ``i + 1`` of the project.

Bad input opens as far as it is valid; each bad line is a :class:`DatasetProblem` naming the
file, the 1-based line number, the line and what was done: a wrong field count, a non-number, a
class out of range or no area (skipped), a box reaching outside ``[0, 1]`` (clipped to the
image; one entirely outside: skipped). A YAML entry naming a missing folder is a problem too;
:class:`DatasetError` only when the YAML is unreadable or no image at all is found. Each image's
split (``train``/``val``/``test``) is kept in ``ParsedImage.split`` (the project's
``detscope_split`` tag, which :func:`~detengine.data.project.split_indices` follows).
"""
from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
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
    line_problem,
    list_images,
    relative_name,
    summary_problem,
)

__all__ = ["read_yolo_yaml", "read_yolo_folder", "label_path_for", "parse_label_line", "find_data_yaml",
           "is_yolo_folder", "SPLITS"]

SPLITS = ("train", "val", "test")
_SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "test": "test"}
_EDGE = 1e-6            # normalised values this little outside [0, 1] are float noise: kept as they are
_YAML_KEYS = re.compile(r"^(train|val|names)\s*:", re.MULTILINE)


@dataclass
class _LabelFile:
    """One label file as read: ``(label, normalised xyxy)`` per valid line."""

    boxes: list[tuple[int, list[float]]] = field(default_factory=list)
    problems: list[DatasetProblem] = field(default_factory=list)
    polygons: int = 0


@dataclass
class _Tally:
    """What the files of one dataset add up to: their problems and the notes' counts."""

    problems: list[DatasetProblem] = field(default_factory=list)
    polygons: int = 0
    polygon_files: int = 0
    max_label: int = -1

    def add(self, label_file: _LabelFile) -> None:
        self.problems += label_file.problems
        self.polygons += label_file.polygons
        self.polygon_files += bool(label_file.polygons)
        self.max_label = max([self.max_label, *(label for label, _ in label_file.boxes)])


# --------------------------------------------------------------------------- label files


def label_path_for(image_path) -> Path:
    """Ultralytics' ``img2label_paths``: the last ``/images/`` of the path becomes ``/labels/``,
    the suffix ``.txt``."""
    text = str(image_path)
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if images in text:
        text = labels.join(text.rsplit(images, 1))
    return Path(text).with_suffix(".txt")


def parse_label_line(fields: list[str], num_classes: int | None) -> tuple[int, list[float], bool]:
    """``(class, normalised xyxy, is_polygon)`` of one label line split into fields; a
    ``ValueError`` says what is wrong, quoting the bad field."""
    n = len(fields)
    if n != 5 and (n < 7 or n % 2 == 0):
        raise ValueError(f"{n} fields: a box line has 5 (class cx cy w h), a polygon line an odd number "
                         ">= 7 (class x1 y1 x2 y2 x3 y3 ...)")
    values = [_number(text) for text in fields]
    label = _class_index(fields[0], values[0], num_classes)
    if n == 5:
        cx, cy, w, h = values[1:]
        if w <= 0 or h <= 0:
            raise ValueError(f"width {fields[3]!r} and height {fields[4]!r} must both be > 0")
        return label, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], False
    xs, ys = values[1::2], values[2::2]
    corners = [min(xs), min(ys), max(xs), max(ys)]
    if corners[2] <= corners[0] or corners[3] <= corners[1]:
        raise ValueError("the polygon has no area (its points lie on one line)")
    return label, corners, True


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def _class_index(text: str, value: float, num_classes: int | None) -> int:
    if value < 0 or value != int(value):
        raise ValueError(f"class {text!r} is not a whole number >= 0")
    label = int(value)
    if num_classes is not None and label >= num_classes:
        raise ValueError(f"class {label} is out of range: the dataset names {num_classes} classes "
                         f"(0..{num_classes - 1})")
    return label


def _inside(corners: list[float]) -> tuple[list[float] | None, tuple[str, str] | None]:
    """The corners clipped to ``[0, 1]`` and what was done (None: nothing to say)."""
    clipped = [min(max(v, 0.0), 1.0) for v in corners]
    if all(abs(a - b) <= _EDGE for a, b in zip(corners, clipped)):
        return corners, None
    text = ", ".join(f"{v:g}" for v in corners)
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return None, (f"the box (x1, y1, x2, y2 = {text}, normalised) lies entirely outside the image", "skipped")
    return clipped, (f"the box (x1, y1, x2, y2 = {text}, normalised) reaches outside [0, 1]", "clipped to the image")


def read_label_file(path: Path, num_classes: int | None) -> _LabelFile:
    """The valid lines of one label file and a problem per bad line (no file: no boxes)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return _LabelFile()
    except (OSError, UnicodeDecodeError) as exc:
        return _LabelFile(problems=[summary_problem(path, "label file", f"cannot be read: {exc}", "no boxes read")])
    result = _LabelFile()
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            label, corners, is_polygon = parse_label_line(fields, num_classes)
        except ValueError as exc:
            result.problems.append(line_problem(path, number, line, str(exc)))
            continue
        corners, note = _inside(corners)
        if note:
            result.problems.append(line_problem(path, number, line, *note))
        if corners is not None:
            result.boxes.append((label, corners))
            result.polygons += is_polygon
    return result


def _image_entry(image: Path, root: Path, split: str | None, num_classes: int | None, size_of: Callable,
                 tally: _Tally) -> ParsedImage:
    """One image with its boxes in pixels (its label file read and its size taken from the header)."""
    label_path = label_path_for(image)
    label_file = read_label_file(label_path, num_classes)
    tally.add(label_file)
    size = size_of(image)
    width, height = size if size else (None, None)
    entry = ParsedImage(relative_name(image, root), width, height, split=split)
    if label_file.boxes and size is None:
        tally.problems.append(summary_problem(
            label_path, "label file", f"the image {image} is missing or unreadable: its size is unknown, so "
            "the normalised boxes cannot be placed", f"its {len(label_file.boxes)} boxes skipped"))
        return entry
    entry.boxes = [ParsedBox(label, x1 * width, y1 * height, x2 * width, y2 * height)
                   for label, (x1, y1, x2, y2) in label_file.boxes]
    return entry


def _finish(source: Path, image_root: Path, names: list[str] | None, images: list[ParsedImage],
            tally: _Tally) -> ParsedDataset:
    """The dataset, with the notes about all of it: classes named by number, polygons read as boxes."""
    if names is None:
        count = tally.max_label + 1
        names = [str(i) for i in range(count)]
        tally.problems.append(summary_problem(source, "names", "no class names (no 'names' in the YAML, no "
                                              "classes.txt)", f"the {count} classes are named by their numbers"))
    if tally.polygons:
        tally.problems.append(summary_problem(source, "labels", f"{tally.polygons} polygon lines in "
                                              f"{tally.polygon_files} label files", "read as their bounding boxes"))
    return ParsedDataset("yolo", source, image_root, names, images, tally.problems)


# --------------------------------------------------------------------------- data.yaml


def read_yolo_yaml(path, *, size_of: Callable | None = None) -> ParsedDataset:
    """An Ultralytics dataset YAML (see the module's text). ``size_of(path) -> (w, h) | None``
    gives image sizes (default: :func:`read_image_size`)."""
    path = Path(path).absolute()
    config = _read_yaml(path)
    tally = _Tally()
    names = _yaml_names(config, path, tally.problems)
    root = _dataset_root(config, path, tally.problems)
    listed = _split_images(config, root, path, tally.problems)
    if not listed:
        found = "; ".join(str(p) for p in tally.problems[:3]) or "it lists no train, val or test images"
        raise DatasetError(f"{path}: no image found: {found}", path=path)
    image_root = common_root(list(listed), root)
    num_classes = None if names is None else len(names)
    images = [_image_entry(image, image_root, split, num_classes, size_of or read_image_size, tally)
              for image, split in listed.items()]
    return _finish(path, image_root, names, images, tally)


def _read_yaml(path: Path) -> dict:
    import yaml
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"cannot read dataset YAML {path}: {exc.strerror or exc}", path=path) from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 text file (byte {exc.start}): not a dataset YAML", path=path) from exc
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML: {exc}", path=path) from exc
    if not isinstance(config, dict):
        raise DatasetError(f"{path}: a dataset YAML must be a mapping with train, val and names, got "
                           f"{shorten_json(config, 60)}", path=path)
    return config


def _yaml_names(config: dict, path: Path, problems: list) -> list[str] | None:
    """The class names (index = YOLO class), or None when the YAML gives neither names nor nc."""
    raw, nc = config.get("names"), config.get("nc")
    if raw is None:
        if isinstance(nc, int) and not isinstance(nc, bool) and nc > 0:
            problems.append(summary_problem(path, "names", f"no names, nc is {nc}", f"classes named 0..{nc - 1}"))
            return [str(i) for i in range(nc)]
        return None
    names = _names_list(raw, path, problems)
    if nc is not None and nc != len(names):
        problems.append(summary_problem(path, "nc", f"nc is {nc!r} but names lists {len(names)} classes",
                                        "the names are used"))
    return names


def _names_list(raw, path: Path, problems: list) -> list[str]:
    if isinstance(raw, list):
        return [str(name) for name in raw]
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: 'names' must be a list or a mapping {{id: name}}, got {shorten_json(raw, 60)}",
                           path=path)
    ids = {_class_id(key, path): str(name) for key, name in raw.items()}
    count = max(ids, default=-1) + 1
    missing = [i for i in range(count) if i not in ids]
    if missing:
        problems.append(summary_problem(path, "names", f"no name for class ids {missing[:10]}",
                                        "those classes are named by their numbers"))
    return [ids.get(i, str(i)) for i in range(count)]


def _class_id(key, path: Path) -> int:
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    if isinstance(key, str) and key.strip().isdigit():
        return int(key)
    raise DatasetError(f"{path}: names: class id {key!r} is not a whole number >= 0", path=path)


def _dataset_root(config: dict, path: Path, problems: list) -> Path:
    """``path`` of the YAML: relative to the YAML's folder, else to the current folder."""
    raw = config.get("path")
    if raw in (None, ""):
        return path.parent.resolve()
    given = Path(str(raw)).expanduser()
    for base in ([Path()] if given.is_absolute() else [path.parent, Path.cwd()]):
        if (base / given).is_dir():
            return (base / given).resolve()
    problems.append(summary_problem(path, "path", f"the dataset folder {raw!r} was not found (beside the YAML "
                                    "nor in the current folder)", f"used the YAML's folder {path.parent}"))
    return path.parent.resolve()


def _split_images(config: dict, root: Path, yaml_path: Path, problems: list) -> dict[Path, str]:
    """image -> split of every listed image; an image listed twice keeps its first split."""
    listed: dict[Path, str] = {}
    repeated: Counter = Counter()
    for split in SPLITS:
        entries = config.get(split)
        for entry in (entries if isinstance(entries, list) else [entries] if entries else []):
            for image in _entry_images(str(entry), split, root, yaml_path, problems):
                first = listed.setdefault(image, split)
                repeated[(split, first)] += first != split
    for (split, first), count in repeated.items():
        if count:
            problems.append(summary_problem(yaml_path, split, f"{count} {split} images are also {first} images",
                                            f"kept once, as {first} images"))
    return listed


def _entry_images(entry: str, split: str, root: Path, yaml_path: Path, problems: list) -> list[Path]:
    target = _resolve_entry(root, entry)
    if target.is_dir():
        found = list_images(target)
        if not found:
            problems.append(summary_problem(yaml_path, split, f"{entry!r} ({target}) holds no image files",
                                            "nothing read from it"))
        return found
    if target.is_file():
        return _list_file_images(target, problems)
    problems.append(summary_problem(yaml_path, split, f"{entry!r}: {target} does not exist", "skipped"))
    return []


def _resolve_entry(root: Path, entry: str) -> Path:
    """As Ultralytics: ``root / entry``, or ``root / entry[3:]`` for a missing ``../`` entry."""
    given = Path(entry).expanduser()
    if given.is_absolute():
        return given
    target = (root / given).resolve()
    if not target.exists() and entry.startswith("../"):
        target = (root / entry[3:]).resolve()
    return target


def _list_file_images(list_path: Path, problems: list) -> list[Path]:
    """The images a ``.txt`` list names, one per line (relative lines: to the list's folder)."""
    try:
        lines = list_path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(summary_problem(list_path, "image list", f"cannot be read: {exc}", "skipped"))
        return []
    images = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        image = Path(os.path.normpath(list_path.parent / (text[2:] if text.startswith("./") else text)))
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(line_problem(list_path, number, line, f"not an image file ({', '.join(IMAGE_SUFFIXES)})"))
        elif not image.is_file():
            problems.append(line_problem(list_path, number, line, f"image not found: {image}"))
        else:
            images.append(image)
    return images


# --------------------------------------------------------------------------- a folder (labelImg)


def read_yolo_folder(root, *, size_of: Callable | None = None) -> ParsedDataset:
    """Every image under ``root`` with its label file (see the module's text)."""
    root = Path(root).absolute()
    images = list_images(root)
    if not images:
        raise DatasetError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder or its "
                           "sub-folders", path=root)
    tally = _Tally()
    names = _classes_txt(root, tally.problems)
    num_classes = None if names is None else len(names)
    entries = [_image_entry(image, root, _folder_split(image, root), num_classes, size_of or read_image_size, tally)
               for image in images]
    tally.problems += _orphan_labels(images)
    return _finish(root, root, names, entries, tally)


def _classes_txt(root: Path, problems: list) -> list[str] | None:
    found = next((p for p in (root / "classes.txt", root / "labels" / "classes.txt") if p.is_file()), None)
    found = found or next(iter(sorted(root.rglob("classes.txt"))), None)
    if found is None:
        return None
    try:
        lines = found.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(summary_problem(found, "classes", f"cannot be read: {exc}", "classes named by their numbers"))
        return None
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            problems.append(line_problem(found, number, line, f"no name for class {number - 1}",
                                         f"named {str(number - 1)!r}"))
    return [line.strip() or str(i) for i, line in enumerate(lines)]


def _folder_split(image: Path, root: Path) -> str | None:
    for part in reversed(image.relative_to(root).parts[:-1]):
        if part.lower() in _SPLIT_FOLDERS:
            return _SPLIT_FOLDERS[part.lower()]
    return None


def _orphan_labels(images: list[Path]) -> list[DatasetProblem]:
    """A problem per ``.txt`` in a label folder that belongs to no image (``classes.txt`` aside)."""
    expected = {label_path_for(image) for image in images}
    folders = {p.parent for p in expected if p.parent.is_dir()}
    orphans = sorted(p for folder in folders for p in folder.glob("*.txt")
                     if p not in expected and p.name != "classes.txt")
    return [summary_problem(p, "label file", "no image of this name", "skipped") for p in orphans]


# --------------------------------------------------------------------------- recognising a YOLO dataset


def find_data_yaml(folder) -> Path | None:
    """``data.yaml`` in ``folder``, else its only ``*.yaml``/``*.yml`` naming train, val or names."""
    folder = Path(folder)
    if (folder / "data.yaml").is_file():
        return folder / "data.yaml"
    found = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in (".yaml", ".yml") and p.is_file()
             and _looks_like_data_yaml(p)]
    return found[0] if len(found) == 1 else None


def _looks_like_data_yaml(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8-sig", errors="replace")[:65536]
    except OSError:
        return False
    return _YAML_KEYS.search(head) is not None


def is_yolo_folder(folder) -> bool:
    """A ``classes.txt`` in ``folder`` or ``labels/``, or an image under it with a label file."""
    folder = Path(folder)
    if (folder / "classes.txt").is_file() or (folder / "labels" / "classes.txt").is_file():
        return True
    images = (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return any(label_path_for(image).is_file() for image in images)
