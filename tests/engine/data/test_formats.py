"""Datasets in and out: YOLO (data.yaml, labelImg folders), labelme, Pascal VOC and COCO open with
the right pixel boxes, survive every ordered pair of conversions, list each bad line or shape
(file, line) while keeping the valid boxes, and the CLI's convert / stats run in-process.

Every fixture is a few 32x24 / 40x30 PNGs written to tmp_path. Round-trip budgets: boxes with
whole-pixel corners come back within 1e-3 px through every format (YOLO's 6 decimals are
< 1e-6 of the side, VOC's whole pixels exact); a fractional box through VOC moves by at most
0.5 px (VOC holds whole pixels: the writer rounds), and stays within 1e-6 of the side through YOLO.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from detengine.cli import main
from detengine.cli_data import CONVERT_FORMATS
from detengine.data.errors import DatasetError
from detengine.data.export import EXPORT_FORMATS, export_project, flat_names
from detengine.data.formats import detect_format
from detengine.data.labelme import read_labelme_folder
from detengine.data.parsed import IMAGE_SUFFIXES
from detengine.data.project import IMAGE_EXTENSIONS, SPLIT_KEY, AnnotationProject, Box, split_indices
from detengine.data.stats import dataset_stats
from detengine.data.yolo import label_path_for, parse_label_line

SIZES = {"a": (32, 24), "b": (32, 24), "c": (40, 30)}           # name -> (width, height)
SPLIT_OF = {"a": "train", "b": "train", "c": "val"}
# name -> [(class, x1, y1, x2, y2)], whole-pixel corners (one box touches all four image edges)
TRUTH = {"a": [("cat", 4, 2, 12, 10), ("dog", 0, 0, 32, 24), ("cat", 20, 6, 30, 20)],
         "b": [],
         "c": [("dog", 10, 5, 25, 28)]}
NAMES = ["cat", "dog"]
PX = 1e-3


def image(path: Path, size) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.zeros((size[1], size[0], 3), np.uint8))
    return path


def yolo_line(name: str, box, size) -> str:
    (x1, y1, x2, y2), (w, h) = box, size
    return f"{NAMES.index(name)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"


def write_labels(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def make_yolo(root: Path, names_text: str = "names: [cat, dog]") -> Path:
    for name, size in SIZES.items():
        split = SPLIT_OF[name]
        image(root / "images" / split / f"{name}.png", size)
        if TRUTH[name]:
            write_labels(root / "labels" / split / f"{name}.txt", [yolo_line(n, b, size) for n, *b in TRUTH[name]])
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\n{names_text}\n")
    return root / "data.yaml"


def make_voc(root: Path) -> Path:
    for name, size in SIZES.items():
        image(root / "JPEGImages" / f"{name}.png", size)
        objects = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin>"
                          f"<ymin>{y1 + 1}</ymin><xmax>{x2 + 1}</xmax><ymax>{y2 + 1}</ymax></bndbox></object>"
                          for n, x1, y1, x2, y2 in TRUTH[name])
        xml = (f"<annotation><filename>{name}.png</filename><size><width>{size[0]}</width><height>{size[1]}"
               f"</height><depth>3</depth></size>{objects}</annotation>")
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{name}.xml").write_text(xml)
    return root


def labelme_shape(label, points, shape_type="rectangle", **more) -> dict:
    return {"label": label, "points": points, "group_id": None, "shape_type": shape_type, "flags": {}, **more}


def make_labelme(root: Path) -> Path:
    for name, size in SIZES.items():
        image(root / f"{name}.png", size)
        shapes = [labelme_shape(n, [[x2, y2], [x1, y1]]) for n, x1, y1, x2, y2 in TRUTH[name]]  # corners swapped
        data = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": f"{name}.png", "imageData": None,
                "imageHeight": size[1], "imageWidth": size[0], SPLIT_KEY: SPLIT_OF[name]}
        (root / f"{name}.json").write_text(json.dumps(data))
    return root


def make_coco(root: Path) -> Path:
    images = [{"id": i, "file_name": f"{name}.png", "width": w, "height": h, SPLIT_KEY: SPLIT_OF[name]}
              for i, (name, (w, h)) in enumerate(SIZES.items(), start=1)]
    annotations = [{"id": len(images) * 10 + k, "image_id": i, "category_id": NAMES.index(n) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0}
                   for i, name in enumerate(SIZES, start=1) for k, (n, x1, y1, x2, y2) in enumerate(TRUTH[name])]
    for name, size in SIZES.items():
        image(root / f"{name}.png", size)
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": i, "name": n} for i, n in enumerate(NAMES, start=1)]}))
    return path


MAKERS = {"coco": make_coco, "yolo": make_yolo, "voc": make_voc, "labelme": make_labelme}


def boxes_by_image(project: AnnotationProject) -> dict[str, list]:
    """stem -> sorted [(class name, x1, y1, x2, y2)]."""
    names = {c.id: c.name for c in project.categories}
    return {Path(im.file_name).stem: sorted((names[b.category_id], *b.xyxy) for b in im.boxes)
            for im in project.images}


def assert_boxes(project: AnnotationProject, truth: dict, tolerance: float = PX) -> None:
    got = boxes_by_image(project)
    assert set(got) == set(truth)
    for name, boxes in truth.items():
        assert [b[0] for b in got[name]] == [b[0] for b in sorted(boxes)], name           # same classes, same count
        np.testing.assert_allclose([b[1:] for b in got[name]], [b[1:] for b in sorted(boxes)], atol=tolerance,
                                   err_msg=name) if boxes else None


# --------------------------------------------------------------------------- reading


def test_yolo_yaml_with_a_names_list_opens_with_pixel_boxes_and_splits(tmp_path):
    project = AnnotationProject.open(make_yolo(tmp_path / "ds"))
    assert project.kind == "yolo" and project.problems == []
    assert [(c.id, c.name) for c in project.categories] == [(1, "cat"), (2, "dog")]   # YOLO class i -> id i + 1
    assert project.image_root == (tmp_path / "ds").resolve()
    assert [im.file_name for im in project.images] == ["images/train/a.png", "images/train/b.png", "images/val/c.png"]
    assert [(im.width, im.height, im.extra[SPLIT_KEY]) for im in project.images] == \
        [(32, 24, "train"), (32, 24, "train"), (40, 30, "val")]
    assert_boxes(project, TRUTH, 1e-4)
    assert split_indices(project) == ([0, 1], [2])


def test_yolo_yaml_with_a_names_dict_a_list_file_and_a_test_split(tmp_path):
    root = tmp_path / "ds"
    make_yolo(root, "names:\n  0: cat\n  1: dog\nnc: 2")
    image(root / "images" / "test" / "t.png", (32, 24))
    (root / "test.txt").write_text("./images/test/t.png\n")
    text = (root / "data.yaml").read_text().replace("path: .\n", "") + "test: test.txt\n"
    (root / "data.yaml").write_text(text)
    project = AnnotationProject.open(root)                                  # the folder: its data.yaml
    assert project.kind == "yolo" and project.problems == []
    assert [c.name for c in project.categories] == NAMES
    assert project.images[-1].file_name == "images/test/t.png" and project.images[-1].extra[SPLIT_KEY] == "test"
    assert split_indices(project) == ([0, 1], [2])                          # test images are in neither


def test_a_labelimg_folder_with_classes_txt(tmp_path):
    root = tmp_path / "labelimg"
    for name, size in SIZES.items():
        image(root / f"{name}.png", size)
        write_labels(root / f"{name}.txt", [yolo_line(n, b, size) for n, *b in TRUTH[name]])
    (root / "classes.txt").write_text("cat\ndog\n")
    assert detect_format(root) == ("yolo", root)
    project = AnnotationProject.open(root)
    assert project.kind == "yolo" and project.problems == [] and project.image_root == root
    assert [c.name for c in project.categories] == NAMES
    assert_boxes(project, TRUTH, 1e-4)
    assert all(SPLIT_KEY not in im.extra for im in project.images)


def test_a_labelme_folder(tmp_path):
    root = make_labelme(tmp_path / "lm")
    data = json.loads((root / "a.json").read_text())
    data["shapes"] += [labelme_shape("dog", [[1, 1], [5, 2], [3, 7]], "polygon"),
                       labelme_shape("cat", [[5, 5], [8, 8]], "circle")]
    (root / "a.json").write_text(json.dumps(data))
    image(root / "extra.png", (32, 24))                                    # no JSON: an image without boxes
    project = AnnotationProject.open(root)
    assert project.kind == "labelme" and [c.name for c in project.categories] == NAMES
    truth = {**TRUTH, "a": [*TRUTH["a"], ("dog", 1, 1, 5, 7)], "extra": []}
    assert_boxes(project, truth)
    problems = [str(p) for p in project.problems]
    assert any("a.json: shapes[4]" in p and "'circle' is not a box" in p for p in problems)
    assert any("1 polygons" in p and "bounding boxes" in p for p in problems)
    assert [im.extra.get(SPLIT_KEY) for im in project.images] == ["train", "train", "val", None]


def test_voc_still_opens_as_voc(tmp_path):
    project = AnnotationProject.open(make_voc(tmp_path / "voc"))
    assert project.kind == "voc"
    assert_boxes(project, TRUTH, 0)


def test_formats_are_told_apart(tmp_path):
    assert detect_format(make_coco(tmp_path / "coco"))[0] == "coco"
    assert detect_format(make_yolo(tmp_path / "y")) == ("yolo", tmp_path / "y" / "data.yaml")
    assert detect_format(tmp_path / "y") == ("yolo", tmp_path / "y" / "data.yaml")
    assert detect_format(make_voc(tmp_path / "voc"))[0] == "voc"
    assert detect_format(make_labelme(tmp_path / "lm"))[0] == "labelme"
    image(tmp_path / "plain" / "x.png", (8, 8))
    assert detect_format(tmp_path / "plain")[0] == "folder"
    assert AnnotationProject.open(tmp_path / "plain").kind == "folder"
    with pytest.raises(DatasetError, match="no such file or folder"):
        detect_format(tmp_path / "missing")
    assert IMAGE_SUFFIXES == IMAGE_EXTENSIONS and CONVERT_FORMATS == EXPORT_FORMATS


def test_label_paths_follow_ultralytics():
    assert label_path_for(Path("/d/images/train/images/x.jpg")) == Path("/d/images/train/labels/x.txt")
    assert label_path_for(Path("/d/pics/x.png")) == Path("/d/pics/x.txt")
    assert parse_label_line("1 0.5 0.5 0.2 0.4".split(), 2) == (1, [0.4, 0.3, 0.6, 0.7], False)
    label, corners, polygon = parse_label_line("0 0.1 0.2 0.5 0.2 0.3 0.6".split(), None)
    assert (label, polygon) == (0, True) and corners == pytest.approx([0.1, 0.2, 0.5, 0.6])


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("target", EXPORT_FORMATS)
@pytest.mark.parametrize("source", EXPORT_FORMATS)
def test_every_box_survives_a_round_trip(tmp_path, source, target):
    """source -> target -> source: the same boxes per image (whole-pixel corners: within 1e-3 px)."""
    first = AnnotationProject.open(MAKERS[source](tmp_path / "src"))
    assert_boxes(first, TRUTH)
    there = AnnotationProject.open(export_project(first, tmp_path / "there", target).path)
    assert_boxes(there, TRUTH)
    assert [c.name for c in there.categories] == NAMES
    back = AnnotationProject.open(export_project(there, tmp_path / "back", source).path)
    assert_boxes(back, TRUTH)
    assert [c.name for c in back.categories] == NAMES
    if "voc" not in (source, target):                                       # VOC keeps no split
        assert {Path(im.file_name).stem: im.extra.get(SPLIT_KEY) for im in back.images} == SPLIT_OF


def test_voc_to_voc_writes_the_same_corners(tmp_path):
    root = make_voc(tmp_path / "voc")
    again = export_project(AnnotationProject.open(root), tmp_path / "again", "voc").path
    for name in SIZES:
        read = [o.findtext("bndbox/xmin") for o in _objects(root / "Annotations" / f"{name}.xml")]
        assert read == [o.findtext("bndbox/xmin") for o in _objects(again / "Annotations" / f"{name}.xml")]


def _objects(path):
    import xml.etree.ElementTree as ET
    return ET.parse(path).getroot().findall("object")


def test_fractional_boxes_keep_their_budgets(tmp_path):
    """YOLO: within 1e-6 of the side; VOC (whole pixels): within 0.5 px, and counted in a note."""
    project = AnnotationProject.open(make_labelme(tmp_path / "lm"))
    record = project.images[0]
    record.boxes[0] = record.boxes[0].replace(x1=4.3, y1=2.71, x2=11.6, y2=9.49)
    truth = {**TRUTH, "a": [("cat", 4.3, 2.71, 11.6, 9.49), *TRUTH["a"][1:]]}
    yolo = AnnotationProject.open(export_project(project, tmp_path / "yolo", "yolo").path)
    assert_boxes(yolo, truth, 1e-6 * 32)
    result = export_project(project, tmp_path / "voc", "voc")
    assert any("1 boxes moved to whole pixels" in note for note in result.notes)
    assert_boxes(AnnotationProject.open(result.path), truth, 0.5)


def test_crowd_boxes_stay_difficult_in_voc_and_labelme_and_are_counted_in_yolo(tmp_path):
    project = AnnotationProject.open(make_voc(tmp_path / "voc"))
    first = project.images[0].boxes[0]
    project.images[0].boxes[0] = first.replace(iscrowd=1)
    labelme = AnnotationProject.open(export_project(project, tmp_path / "lm", "labelme").path)
    voc = AnnotationProject.open(export_project(labelme, tmp_path / "voc2", "voc").path)
    assert [b.iscrowd for b in voc.images[0].boxes] == [1, 0, 0]
    result = export_project(project, tmp_path / "yolo", "yolo")
    assert result.boxes == 3 and any("1 crowd / difficult boxes left out" in n for n in result.notes)


def test_the_yolo_export_is_what_ultralytics_reads(tmp_path):
    project = AnnotationProject.open(make_coco(tmp_path / "coco"))
    result = export_project(project, tmp_path / "out", "yolo")
    out = tmp_path / "out"
    import yaml
    config = yaml.safe_load((out / "data.yaml").read_text())
    assert config == {"path": str(out), "train": "images/train", "val": "images/val", "nc": 2,
                      "names": {0: "cat", 1: "dog"}}
    assert (out / "images/train/a.png").is_symlink() and (out / "images/val/c.png").is_file()
    assert (out / "labels/train/b.txt").read_text() == ""                  # no boxes: an empty label file
    assert (out / "labels/val/c.txt").read_text() == "1 0.437500 0.550000 0.375000 0.766667\n"
    assert (out / "classes.txt").read_text() == "cat\ndog\n"
    assert result.image_files == {"linked": 3}
    copied = export_project(project, tmp_path / "copied", "yolo", images="copy")
    assert copied.image_files == {"copied": 3} and not (tmp_path / "copied/images/train/a.png").is_symlink()


def test_an_export_needs_a_new_or_empty_folder(tmp_path):
    project = AnnotationProject.open(make_coco(tmp_path / "coco"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="is not empty"):
        export_project(project, tmp_path / "busy", "voc")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert not any(p.name.startswith(".busy") for p in tmp_path.iterdir())    # no staging folder left
    with pytest.raises(ValueError, match="got 'darknet'"):
        export_project(project, tmp_path / "x", "darknet")
    assert flat_names(["a/x.png", "b/x.png", "c/y.png"]) == ["a__x", "b__x", "c__y"]


# --------------------------------------------------------------------------- bad input


def test_bad_yolo_lines_are_listed_and_the_valid_boxes_kept(tmp_path):
    root = tmp_path / "bad"
    make_yolo(root)
    label = root / "labels" / "train" / "a.txt"
    good = label.read_text().splitlines()
    write_labels(label, [good[0], "0 0.5 0.5 0.2", "1 0.5 abc 0.2 0.2", "7 0.5 0.5 0.2 0.2", good[1],
                         "0 0.5 0.5 0 0.2", "", "0 1.5 1.5 0.2 0.2", "1 0.95 0.5 0.2 0.2", "0.5 0.5 0.5 0.1 0.1",
                         good[2]])
    project = AnnotationProject.open(root / "data.yaml")
    assert_boxes(project, {**TRUTH, "a": [*TRUTH["a"], ("dog", 32 * 0.85, 24 * 0.4, 32, 24 * 0.6)]}, 1e-4)
    found = {(p.file, p.index): (p.message, p.action) for p in project.problems}
    file = str(label)
    assert set(found) == {(file, n) for n in (2, 3, 4, 6, 8, 9, 10)}
    assert "5 fields" not in found[(file, 2)][0] and "4 fields" in found[(file, 2)][0]
    assert "not a number: 'abc'" in found[(file, 3)][0]
    assert "class 7 is out of range" in found[(file, 4)][0]
    assert "must both be > 0" in found[(file, 6)][0]
    assert found[(file, 8)] == (found[(file, 8)][0], "skipped") and "entirely outside" in found[(file, 8)][0]
    assert found[(file, 9)][1] == "clipped to the image"
    assert "not a whole number" in found[(file, 10)][0]
    assert all(p.section == "line" and p.record for p in project.problems)
    assert "line[3] 1 0.5 abc 0.2 0.2: not a number" in str(project.problems[1])


def test_a_yaml_naming_missing_folders_opens_the_rest(tmp_path):
    root = tmp_path / "ds"
    make_yolo(root)
    (root / "data.yaml").write_text("train: images/train\nval: [images/val, images/nowhere]\nnames: [cat, dog]\n")
    project = AnnotationProject.open(root / "data.yaml")
    assert len(project.images) == 3
    assert [(p.section, "does not exist" in p.message) for p in project.problems] == [("val", True)]
    (root / "data.yaml").write_text("train: nothing/here\nval: nor/here\nnames: [cat]\n")
    with pytest.raises(DatasetError, match="no image found.*does not exist"):
        AnnotationProject.open(root / "data.yaml")
    (root / "data.yaml").write_text("train: [unclosed\n")
    with pytest.raises(DatasetError, match="not valid YAML"):
        AnnotationProject.open(root / "data.yaml")
    (root / "data.yaml").write_text("names: {a: cat}\ntrain: images/train\n")
    with pytest.raises(DatasetError, match="class id 'a' is not a whole number"):
        AnnotationProject.open(root / "data.yaml")


def test_bad_labelme_files_are_listed_and_the_valid_boxes_kept(tmp_path):
    root = make_labelme(tmp_path / "lm")
    (root / "b.json").write_text("{ not json")
    data = json.loads((root / "c.json").read_text())
    data["shapes"] += [labelme_shape("", [[1, 1], [5, 5]]), labelme_shape("dog", [[1, "x"], [5, 5]]),
                       labelme_shape("dog", [[3, 3], [3, 9]]), labelme_shape("cat", [[1, 1]], "point")]
    (root / "c.json").write_text(json.dumps(data))
    (root / "other.json").write_text(json.dumps({"images": []}))
    project = AnnotationProject.open(root)
    assert_boxes(project, TRUTH)                                  # b.png: its JSON is broken, the image stays
    where = sorted((Path(p.file).name, p.section, p.index) for p in project.problems)
    assert where == [("b.json", "file", -1), ("c.json", "shapes", 1), ("c.json", "shapes", 2),
                     ("c.json", "shapes", 3), ("c.json", "shapes", 4), ("other.json", "shapes", -1)]
    messages = " | ".join(str(p) for p in project.problems)
    assert "not valid" in messages or "Expecting" in messages
    assert "'label' must be a non-empty string" in messages and "'points' must be" in messages
    assert "has no area" in messages and "'point' is not a box" in messages and "not a labelme file" in messages
    (root / "a.json").write_text("[]")
    for name in ("b", "c"):
        (root / f"{name}.json").unlink()
    with pytest.raises(DatasetError, match="no labelme JSON file"):
        read_labelme_folder(root)


# --------------------------------------------------------------------------- stats, CLI, training data


def test_stats_count_what_the_dataset_holds(tmp_path):
    project = AnnotationProject.open(make_yolo(tmp_path / "ds"))
    project.images[2].boxes.append(Box(99, 1, 30, 20, 45, 29))              # reaches past the 40 px width
    stats = dataset_stats(project, bins=4)
    assert (stats.num_images, stats.num_boxes, stats.class_names) == (3, 5, NAMES)
    assert stats.boxes_per_class == [3, 2] and stats.images_per_class == [2, 2]
    assert stats.images_without_boxes == ["images/train/b.png"]
    assert stats.boxes_outside == [("images/val/c.png", 99)]
    np.testing.assert_allclose(sorted(stats.widths), [8, 10, 15, 15, 32])
    assert stats.width_hist.counts.sum() == 5 and len(stats.width_hist.edges) == 5
    assert stats.aspect_hist.counts.tolist() == [0, 0, 0, 2, 3, 0, 0, 0]    # 8/8=1, 10/14, 32/24, 15/23, 15/9
    assert json.loads(json.dumps(stats.to_json_dict()))["boxes_per_class"] == {"cat": 3, "dog": 2}


def test_the_cli_converts_and_counts(tmp_path, capsys):
    data = make_yolo(tmp_path / "ds")
    assert main(["stats", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "images: 3 (1 without boxes)   boxes: 4" in out and "cat (1)  2 ####" in out and "problems: 0" in out
    assert main(["convert", str(data), str(tmp_path / "voc"), "--to", "voc"]) == 0
    out = capsys.readouterr().out
    assert "read yolo" in out and "wrote voc: 3 images, 4 boxes" in out
    assert main(["stats", str(tmp_path / "voc"), "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert (numbers["kind"], numbers["images"], numbers["boxes"]) == ("voc", 3, 4)
    assert main(["convert", str(data), str(tmp_path / "voc"), "--to", "voc"]) == 2       # not empty: refused
    assert "is not empty" in capsys.readouterr().err


def test_training_data_accepts_a_yolo_yaml(tmp_path):
    from detengine.train.data import _project_sets, resolve_data
    data = make_yolo(tmp_path / "ds")
    assert resolve_data(str(data), {}) == ("project", {"path": data})
    assert resolve_data(str(tmp_path / "ds"), {})[0] == "project"
    train, val, description = _project_sets(data)
    assert (len(train), len(val), train.class_names) == (2, 1, NAMES)
    sample = val.load_sample(0)
    np.testing.assert_allclose(sample.boxes, [[10, 5, 25, 28]], atol=1e-4)
    assert "2 train / 1 val images" in description
