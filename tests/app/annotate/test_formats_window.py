"""Your own data in the window (issue "Your own data in and out"): a YOLO data.yaml and a labelme
folder open with their boxes (a bad label line is listed), File > Export Annotations As writes
YOLO that opens again with the same boxes, and the Dataset tab counts what the project holds."""
from __future__ import annotations

import json

import pytest

from app.main_window import MainWindow
from tests.app.projects import FakeDialogs
from tests.engine.data.test_formats import make_labelme, make_yolo, write_labels


def open_window(qtbot, path) -> MainWindow:
    win = MainWindow(open_path=str(path), dialogs=FakeDialogs(), restore_layout=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def boxes_of(project) -> dict[str, list]:
    names = {c.id: c.name for c in project.categories}
    return {im.file_name.rsplit("/", 1)[-1]: sorted((names[b.category_id], *(round(v, 3) for v in b.xyxy))
                                                  for b in im.boxes) for im in project.images}


def test_a_yolo_yaml_opens_exports_and_opens_again(qtbot, tmp_path):
    yaml_path = make_yolo(tmp_path / "yolo")
    label = next((tmp_path / "yolo" / "labels").rglob("*.txt"))
    write_labels(label, label.read_text().splitlines() + ["7 0.5 0.5 0.1"])       # a bad line: listed
    win = open_window(qtbot, yaml_path)
    assert win.doc.project.kind == "yolo" and win.doc.project.num_boxes > 0
    shown = [c for c in win.dialogs.calls if c[0] == "problems"]
    assert shown and any(str(label.name) in line for line in shown[0][2])
    before = boxes_of(win.doc.project)
    win.dialogs.export_answer = ("yolo", str(tmp_path / "out"), "copy")
    assert win.export_annotations()
    again = open_window(qtbot, tmp_path / "out" / "data.yaml")
    after = boxes_of(again.doc.project)
    assert after.keys() == before.keys()
    for name in before:
        assert [b[0] for b in after[name]] == [b[0] for b in before[name]]
        assert all(a[1:] == pytest.approx(b[1:], abs=1e-3) for a, b in zip(after[name], before[name], strict=True))
    win.dialogs.export_answer = ("yolo", str(tmp_path / "out"), "link")      # not over an existing export
    assert not win.export_annotations() and win.dialogs.calls[-1][0] == "error"


def test_a_labelme_folder_opens_and_the_dataset_tab_counts_it(qtbot, tmp_path):
    folder = make_labelme(tmp_path / "lm")
    win = open_window(qtbot, folder)
    project = win.doc.project
    assert project.kind == "labelme" and project.num_boxes > 0
    win.show_view("dataset")
    panel = win.dataset_panel
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=5000)
    assert panel.stats.num_boxes == project.num_boxes and f"{project.num_boxes} boxes" in panel.summary.text()
    drawn = panel.plot_items["class"].listDataItems() or panel.plot_items["class"].items
    assert drawn
    json.dumps(panel.stats.to_json_dict())
