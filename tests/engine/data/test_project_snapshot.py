"""The autosave's snapshot of a project and its JSON text: the text is what ``json.dumps`` makes
of :meth:`AnnotationProject.to_coco` (byte for byte), and a snapshot does not follow later edits
(the worker thread serialises it while the window edits the project)."""
from __future__ import annotations

import gc
import json

from detengine.data.project import AnnotationProject, Box, ImageRecord, _dumps_compact


def make_project(tmp_path, n_images=30, per_image=5) -> AnnotationProject:
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 80, "tag": {"k": [i]}}
              for i in range(1, n_images + 1)]
    annotations = [{"id": 100 * i + k, "image_id": i, "category_id": 1 + k % 2, "bbox": [k, k, 10.5, 20],
                    "area": 210, "iscrowd": 0, "attributes": {"a": k}}
                   for i in range(1, n_images + 1) for k in range(per_image)]
    annotations.append({"id": 9999, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 7]})     # skipped, kept
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"info": {"description": "é"}, "licenses": [{"id": 1}], "images": images,
                                "annotations": annotations,
                                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    return AnnotationProject.open(path)


def test_the_text_is_json_dumps_of_to_coco(tmp_path):
    project = make_project(tmp_path)
    project.replace_box(0, project.images[0].boxes[0].replace(x1=1.25))
    expected = json.dumps({**project.to_coco(tmp_path / "r.json", for_file=True), "meta": {"x": [1, 2]}},
                          separators=(",", ":"))
    assert project.to_coco_text(tmp_path / "r.json", for_file=True, add={"meta": {"x": [1, 2]}}) == expected
    data = json.loads(expected)
    for chunk in (1, 2, 7, 1000):
        assert _dumps_compact(data, chunk=chunk) == expected


def test_the_text_leaves_the_collector_as_it_was(tmp_path):
    project = make_project(tmp_path)
    assert gc.isenabled()
    project.to_coco_text(for_file=True)
    assert gc.isenabled()
    gc.disable()
    try:
        project.to_coco_text(for_file=True)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_snapshot_does_not_follow_later_edits(tmp_path):
    project = make_project(tmp_path)
    before = project.to_coco_text(for_file=True)
    snap = project.snapshot()
    project.insert_box(0, Box(project.new_box_id(), 1, 1, 1, 5, 5))
    project.remove_box(1, project.images[1].boxes[0].id)
    project.replace_box(2, project.images[2].boxes[0].replace(x2=60.0))
    project.images[3].extra["tag"] = "changed"
    project.images[4].width = 999
    project.images.append(ImageRecord(99, "new.png", 10, 10))
    project.rename_category(1, "renamed")
    project.add_category("c")
    project.info["description"] = "other"
    assert snap.to_coco_text(for_file=True) == before
    assert project.to_coco_text(for_file=True) != before
    assert project.snapshot().to_coco_text(for_file=True) == project.to_coco_text(for_file=True)
