"""Small projects made on disk for the GUI tests: real image files and COCO / VOC annotations."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

SIZES = [(200, 150), (160, 120), (240, 180)]          # (w, h) of image 1, 2, 3
CATEGORIES = [{"id": 3, "name": "cat", "supercategory": "animal"}, {"id": 7, "name": "dog", "supercategory": "animal"}]
ANNOTATIONS = [
    {"id": 10, "image_id": 1, "category_id": 3, "bbox": [20, 30, 40, 50], "area": 2000, "iscrowd": 0,
     "segmentation": [[20, 30, 60, 30, 60, 80]], "attributes": {"occluded": False}},
    {"id": 11, "image_id": 1, "category_id": 7, "bbox": [120, 20, 50, 40], "area": 2000, "iscrowd": 0},
    {"id": 12, "image_id": 2, "category_id": 7, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
]


def write_image(path: Path, w: int, h: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    image = np.full((h, w, 3), 60 + 40 * seed, np.uint8)
    image[::7, :, :] = rng.integers(0, 255, 3, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def make_coco_project(root: Path, *, corrupt_image: int | None = None) -> Path:
    """``root/annotations.json`` + ``root/images/img{1,2,3}.png``; returns the JSON path."""
    images = []
    for i, (w, h) in enumerate(SIZES, start=1):
        name = f"img{i}.png"
        write_image(root / "images" / name, w, h, i)
        images.append({"id": i, "file_name": name, "width": w, "height": h, "license": 1})
    if corrupt_image is not None:
        (root / "images" / f"img{corrupt_image}.png").write_bytes(b"not a png at all")
    data = {"info": {"description": "test"}, "licenses": [{"id": 1, "name": "CC"}], "images": images,
            "annotations": ANNOTATIONS, "categories": CATEGORIES}
    path = root / "annotations" / "annotations.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def make_voc_folder(root: Path) -> Path:
    for name, (w, h) in (("a", (100, 80)), ("b", (90, 70))):
        write_image(root / "JPEGImages" / f"{name}.jpg", w, h, 1)
        xml = (f"<annotation><filename>{name}.jpg</filename><size><width>{w}</width><height>{h}</height>"
               "<depth>3</depth></size><object><name>person</name><difficult>0</difficult><bndbox><xmin>11</xmin>"
               "<ymin>21</ymin><xmax>40</xmax><ymax>60</ymax></bndbox></object><object><name>car</name>"
               "<difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>10</ymax>"
               "</bndbox></object></annotation>")
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{name}.xml").write_text(xml, encoding="utf-8")
    return root


class FakeDialogs:
    """Answers the window's questions without modal dialogs; records what was asked."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.save_answer = "discard"
        self.color_answer = None
        self.box_class_answer = None
        self.export_answer = None
        self.recover_answer = True
        self.run_config_answer = True
        self.class_names: list[str] = []
        self.merge_target = None
        self.delete_answer = (True, None)
        self.save_path = None
        self.folder = None
        self.file_changed_answer = "cancel"
        self.stop_training_answer = True

    def _log(self, *call):
        self.calls.append(call)

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def error(self, title, text):
        self._log("error", title, text)

    def info(self, title, text):
        self._log("info", title, text)

    def show_problems(self, title, lines):
        self._log("problems", title, lines)

    def ask_save_changes(self, what):
        self._log("ask_save_changes", what)
        return self.save_answer

    def ask_file_changed(self, path):
        self._log("ask_file_changed", path)
        return self.file_changed_answer

    def notice(self, title, text):
        self._log("notice", title, text)

    def ask_recover(self, what, saved_at, note=""):
        self._log("ask_recover", what, note)
        return self.recover_answer

    def ask_stop_training(self, run):
        self._log("ask_stop_training", run)
        return self.stop_training_answer

    def ask_run_config(self, path):
        self._log("ask_run_config", path)
        return self.run_config_answer

    def ask_class_name(self, existing, title="New class", initial=""):
        self._log("ask_class_name", title, initial)
        return self.class_names.pop(0) if self.class_names else None

    def ask_export_annotations(self, folder):
        self._log("ask_export_annotations", folder)
        return self.export_answer

    def ask_box_class(self, names, current):
        self._log("ask_box_class", tuple(names), current)
        return self.box_class_answer

    def ask_color(self, name, current):
        self._log("ask_color", name, current)
        return self.color_answer

    def ask_merge_target(self, name, others):
        self._log("ask_merge_target", name, others)
        return self.merge_target

    def ask_delete_class(self, name, count, others):
        self._log("ask_delete_class", name, count)
        return self.delete_answer

    def ask_open_json(self, folder):
        return None

    def ask_open_folder(self, folder, title=""):
        self._log("ask_open_folder", title)
        return self.folder

    def ask_save_path(self, folder):
        self._log("ask_save_path", folder)
        return self.save_path

    def show_shortcuts(self):
        self._log("show_shortcuts")
