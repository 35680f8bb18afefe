"""COCO / VOC / image-folder datasets: checked loading, label maps, ignore boxes, bad files."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from detengine.data import (
    CocoDataset,
    DatasetError,
    DetectionSample,
    ImageFolderDataset,
    ImageReadError,
    VocDataset,
    load_coco_checked,
    read_image,
    write_coco,
)
from detengine.data.transforms import Compose, Resize, ToTensor


def _write_image(path, h=40, w=60, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), value, np.uint8)
    img[5:15, 10:30] = (255, 0, 0)  # BGR blue patch: RGB read must see it in channel 2
    assert cv2.imwrite(str(path), img)


def _coco(images=None, annotations=None, categories=None):
    images = images if images is not None else [{"id": 1, "file_name": "a.png", "width": 60, "height": 40}]
    categories = categories if categories is not None else [{"id": 1, "name": "cat"}]
    annotations = annotations if annotations is not None else [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 10], "area": 200, "iscrowd": 0}]
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.fixture
def coco_dir(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        _write_image(tmp_path / "img" / name)
    return tmp_path


def _dump(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- malformed COCO

GOOD_ANN = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}
MALFORMED = {
    "no_bbox": ([GOOD_ANN, {"id": 2, "image_id": 1, "category_id": 1}], 1, "has no 'bbox'"),
    "no_image_id": ([GOOD_ANN, {"id": 2, "category_id": 1, "bbox": [1, 2, 3, 4]}], 1, "has no 'image_id'"),
    "no_category_id": ([{"id": 2, "image_id": 1, "bbox": [1, 2, 3, 4]}], 0, "has no 'category_id'"),
    "bbox_3_numbers": ([GOOD_ANN, {**GOOD_ANN, "id": 2, "bbox": [1, 2, 3]}], 1, "4 finite numbers"),
    "bbox_string": ([{**GOOD_ANN, "bbox": [1, "2", 3, 4]}], 0, "4 finite numbers"),
    "unknown_image": ([GOOD_ANN, {**GOOD_ANN, "id": 2, "image_id": 7}], 1, "'image_id' 7 is not the id of any image"),
    "unknown_category": ([{**GOOD_ANN, "category_id": 3}], 0, "'category_id' 3 is not the id of any category"),
    "id_zero": ([{**GOOD_ANN, "id": 0}, {**GOOD_ANN, "id": 0, "bbox": [0, 0, 1, 1]}], 0, "positive integer"),
    "duplicate_id": ([GOOD_ANN, {**GOOD_ANN, "bbox": [0, 0, 9, 9]}, {**GOOD_ANN, "id": 3}], 1,
                     "duplicate annotation id 1"),
    "missing_id": ([GOOD_ANN, {k: v for k, v in GOOD_ANN.items() if k != "id"}], 1, "has no 'id'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_annotation_names_file_and_first_bad_record(tmp_path, case):
    anns, bad_index, what = MALFORMED[case]
    path = _dump(tmp_path / f"{case}.json", _coco(annotations=anns))
    with pytest.raises(DatasetError) as info:
        load_coco_checked(path)
    msg = str(info.value)
    assert str(path) in msg and what in msg
    assert f"annotations[{bad_index}] " in msg
    assert json.dumps(anns[bad_index], separators=(",", ":"))[:40] in msg  # the record's JSON
    assert info.value.path == path


def test_not_json_gives_line_and_column(tmp_path):
    path = _dump(tmp_path / "broken.json", '{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DatasetError, match=re.escape(str(path)) + r".*line 2, column 1[12]"):
        load_coco_checked(path)


@pytest.mark.parametrize("missing", ["images", "annotations", "categories"])
def test_missing_section(tmp_path, missing):
    data = _coco()
    del data[missing]
    path = _dump(tmp_path / "x.json", data)
    with pytest.raises(DatasetError, match=re.escape(str(path)) + f'.*no "{missing}" list'):
        load_coco_checked(path)


def test_bad_top_level_image_and_category_records(tmp_path):
    path = _dump(tmp_path / "list.json", [1, 2])
    with pytest.raises(DatasetError, match="top level must be a JSON object"):
        load_coco_checked(path)
    path = _dump(tmp_path / "img.json", _coco(images=[{"id": 1, "file_name": "a.png"}, {"file_name": "b.png"}]))
    with pytest.raises(DatasetError, match=r'images\[1\] \{"file_name":"b.png"\}: image \'id\' must be'):
        load_coco_checked(path)
    path = _dump(tmp_path / "cat.json", _coco(categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]))
    with pytest.raises(DatasetError, match=r"categories\[1\] .*duplicate category id 1"):
        load_coco_checked(path)
    path = _dump(tmp_path / "missing.json", "")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_coco_checked(path)
    with pytest.raises(DatasetError, match="cannot read annotation file"):
        load_coco_checked(tmp_path / "nope.json")


def test_long_record_is_shortened(tmp_path):
    ann = {**GOOD_ANN, "category_id": 9, "segmentation": [[float(i) for i in range(500)]]}
    path = _dump(tmp_path / "long.json", _coco(annotations=[ann]))
    with pytest.raises(DatasetError) as info:
        load_coco_checked(path)
    assert "..." in str(info.value) and len(str(info.value)) < 400 + len(str(path))


def test_lenient_returns_clean_dict_and_problems(tmp_path):
    anns = [GOOD_ANN, {"id": 2, "image_id": 1, "category_id": 1}, {**GOOD_ANN, "id": 0},
            {**GOOD_ANN, "id": 4, "image_id": 99}, {**GOOD_ANN, "id": 1, "bbox": [5, 5, 2, 2]}]
    path = _dump(tmp_path / "mixed.json", _coco(annotations=anns))
    data, problems = load_coco_checked(path, lenient=True)
    assert [a["id"] for a in data["annotations"]] == [1, 2, 3]
    assert all("area" in a and a["iscrowd"] == 0 for a in data["annotations"])
    by_index = {p.index: p for p in problems}
    assert set(by_index) == {1, 2, 3, 4}
    assert by_index[1].action == "skipped" and "no 'bbox'" in by_index[1].message
    assert by_index[2].action == "renumbered to 2" and by_index[4].action == "renumbered to 3"
    assert str(path) in str(by_index[3])
    ds = CocoDataset(path, tmp_path, lenient=True)
    assert ds.problems == problems and len(ds.coco.getAnnIds()) == 3
    data, problems = load_coco_checked(_dump(tmp_path / "no_anns.json", {"images": [], "categories": []}),
                                       lenient=True)
    assert data["annotations"] == [] and str(problems[0]).endswith('"annotations": the file has no "annotations" '
                                                                    "list (keys: ['categories', 'images']) "
                                                                    "(treated as empty)")


# --------------------------------------------------------------------------- CocoDataset


def test_dataset_label_maps_crowd_degenerate_order(coco_dir):
    cats = [{"id": 90, "name": "z"}, {"id": 1, "name": "a"}, {"id": 5, "name": "m"}]
    images = [{"id": 7, "file_name": "c.png"}, {"id": 3, "file_name": "a.png"}, {"id": 5, "file_name": "b.png"}]
    anns = [{"id": 1, "image_id": 3, "category_id": 90, "bbox": [10, 5, 20, 10]},
            {"id": 2, "image_id": 3, "category_id": 5, "bbox": [0, 0, 4, 6], "iscrowd": 1},
            {"id": 3, "image_id": 3, "category_id": 1, "bbox": [1, 1, 0, 5]},
            {"id": 4, "image_id": 7, "category_id": 5, "bbox": [2, 3, 4, 5]}]
    path = _dump(coco_dir / "ann.json", _coco(images, anns, cats))
    ds = CocoDataset(path, coco_dir / "img")
    assert ds.cat_ids == [1, 5, 90] and ds.class_names == ["a", "m", "z"] and ds.num_classes == 3
    assert ds.cat_id_to_label == {1: 0, 5: 1, 90: 2}
    assert all(ds.label_to_cat_id[ds.cat_id_to_label[c]] == c for c in (1, 5, 90))
    assert ds.image_ids == [3, 5, 7] and len(ds) == 3
    s = ds[0]
    assert isinstance(s, DetectionSample) and s.image_id == 3 and s.file_name == "a.png"
    assert s.image.dtype == np.uint8 and s.image.shape == (40, 60, 3) and s.ori_shape == (40, 60)
    assert tuple(s.image[6, 12]) == (0, 0, 255)  # RGB order
    np.testing.assert_array_equal(s.boxes, [[10, 5, 30, 15]])
    assert s.boxes.dtype == np.float32 and s.labels.dtype == np.int64 and s.labels.tolist() == [2]
    np.testing.assert_array_equal(s.ignore_boxes, [[0, 0, 4, 6]])
    assert len(ds.skipped) == 1 and ds.skipped[0][0]["id"] == 3 and "degenerate" in ds.skipped[0][1]
    assert ds[1].boxes.shape == (0, 4) and ds[2].labels.tolist() == [1]
    assert ds.coco.getCatIds() == [90, 1, 5] and len(ds.coco.getAnnIds()) == 4
    assert [im["id"] for im in CocoDataset(path, coco_dir / "img", filter_empty=True).image_infos] == [3, 7]


def test_dataset_applies_transforms(coco_dir):
    path = _dump(coco_dir / "ann.json", _coco())
    ds = CocoDataset(path, coco_dir / "img", transforms=Compose([Resize(scale=(120, 80)), ToTensor()]))
    out = ds[0]
    assert out["image"].shape == (3, 80, 120)
    assert out["boxes"].tolist() == [[20, 10, 60, 30]]
    assert out["meta"]["image_id"] == 1 and out["meta"]["ori_shape"] == (40, 60)


@pytest.mark.parametrize("content", [b"", b"not an image at all" * 10, b"\xff\xd8\xff\xe0" + b"\x00" * 50])
def test_corrupt_image_raises_image_read_error_naming_it(coco_dir, content):
    (coco_dir / "img" / "a.png").unlink()
    bad = coco_dir / "img" / "a.jpg"
    bad.write_bytes(content)
    path = _dump(coco_dir / "ann.json", _coco(images=[{"id": 1, "file_name": "a.jpg"}]))
    ds = CocoDataset(path, coco_dir / "img")
    with pytest.raises(ImageReadError, match=re.escape(str(bad))) as info:
        ds[0]
    assert info.value.path == bad


def test_missing_image_file(tmp_path):
    with pytest.raises(ImageReadError, match=re.escape(str(tmp_path / "nope.png"))):
        read_image(tmp_path / "nope.png")


def test_write_coco_is_atomic_and_numbers_from_one(tmp_path):
    out = tmp_path / "sub" / "out.json"
    anns = [{"image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4], "id": 0},
            {"image_id": 1, "category_id": 5, "bbox": [0, 0, 2, 2]}]
    data = write_coco(out, [{"id": 1, "file_name": "a.png"}], anns, [{"id": 5, "name": "x"}])
    assert [a["id"] for a in data["annotations"]] == [1, 2] and data["annotations"][0]["area"] == 12
    assert json.loads(out.read_text()) == data
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.json"]
    with pytest.raises(DatasetError, match="category_id"):
        write_coco(tmp_path / "bad.json", [{"id": 1, "file_name": "a.png"}],
                   [{"image_id": 1, "category_id": 6, "bbox": [1, 2, 3, 4]}], [{"id": 5, "name": "x"}])
    assert not (tmp_path / "bad.json").exists()
    assert load_coco_checked(out) == data


# --------------------------------------------------------------------------- image folder


def test_image_folder(tmp_path):
    for name in ("b.png", "a.jpg", "c.BMP"):
        _write_image(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    ds = ImageFolderDataset(tmp_path)
    assert len(ds) == 3 and [p.name for p in ds.files] == ["a.jpg", "b.png", "c.BMP"]
    s = ds[1]
    assert s.image_id == 2 and s.file_name == "b.png" and s.boxes.shape == (0, 4) and s.labels.shape == (0,)
    assert ds[-1].file_name == "c.BMP"
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(DatasetError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope")


# --------------------------------------------------------------------------- VOC


def _voc_xml(objects, size=(60, 40)):
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, d, b in objects)
    head = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    return f"<annotation>{head}{objs}</annotation>"


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "VOC2007"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n000002\n\n")
    (root / "Annotations" / "000001.xml").write_text(_voc_xml(
        [("dog", 0, (11, 6, 30, 15)), ("person", 1, (1, 1, 5, 5)), ("unicorn", 0, (2, 2, 8, 8)),
         ("cat", 0, ("3.7", 4, 20, 25))]))
    (root / "Annotations" / "000002.xml").write_text(_voc_xml([]))
    for voc_id in ("000001", "000002"):
        _write_image(root / "JPEGImages" / f"{voc_id}.jpg")
    return root


def test_voc_dataset(voc_root):
    ds = VocDataset(voc_root)
    assert len(ds) == 2 and ds.num_classes == 20 and ds.voc_ids == ["000001", "000002"]
    s = ds[0]
    # mmdetection 3.x XMLDataset: int(float(v)) - 1 on all four coordinates
    np.testing.assert_array_equal(s.boxes, [[10, 5, 29, 14], [2, 3, 19, 24]])
    assert s.labels.tolist() == [11, 7]
    np.testing.assert_array_equal(s.ignore_boxes, [[0, 0, 4, 4]])
    assert s.image_id == 1 and s.file_name == "000001.jpg" and s.image.shape == (40, 60, 3)
    assert len(ds.skipped) == 1 and "unicorn" in ds.skipped[0][1]
    assert ds[1].boxes.shape == (0, 4)
    coco = ds.coco
    assert len(coco.getAnnIds()) == 3 and len(coco.getAnnIds(iscrowd=False)) == 2
    crowd = [a for a in coco.loadAnns(coco.getAnnIds()) if a["iscrowd"]]
    assert crowd[0]["category_id"] == 15 and crowd[0]["bbox"] == [0, 0, 4, 4]
    small = VocDataset(voc_root, class_names=("cat", "dog"))
    assert small[0].labels.tolist() == [1, 0] and len(small.skipped) == 2


def test_voc_bad_files_name_the_file(voc_root):
    bad = voc_root / "Annotations" / "000002.xml"
    bad.write_text("<annotation><object></annotation>")
    with pytest.raises(DatasetError, match=re.escape(str(bad)) + ".*not valid XML.*line 1"):
        VocDataset(voc_root)
    bad.write_text(_voc_xml([("dog", 0, ("x", 1, 2, 3))]))
    with pytest.raises(DatasetError, match=re.escape(str(bad)) + r".*<object> 0 \('dog'\)"):
        VocDataset(voc_root)
    bad.unlink()
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        VocDataset(voc_root)
    with pytest.raises(DatasetError, match="test.txt"):
        VocDataset(voc_root, split="test")


def test_data_package_never_imports_qt():
    import subprocess
    import sys

    code = ("import sys, detengine.data; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
