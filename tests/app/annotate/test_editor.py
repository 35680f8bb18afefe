"""The annotation editor driven through the real widgets with mouse and key events: draw, move,
resize, change class, undo / redo, switch images, save and reopen (compared field by field
through pycocotools), autosave and recovery, class manager, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QContextMenuEvent, QDragEnterEvent, QDropEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from app.annotate import document
from app.annotate.image_list_panel import PROBLEM_MARK, UNSAVED_MARK
from app.dialogs import SHORTCUTS
from app.main_window import MainWindow
from app.paths import settings
from tests.app.projects import FakeDialogs, make_coco_project, make_voc_folder, write_image

ROOT = Path(__file__).resolve().parents[3]

L = Qt.MouseButton.LeftButton


@pytest.fixture
def coco_path(tmp_path):
    return make_coco_project(tmp_path / "project")


def open_window(qtbot, path, dialogs=None) -> MainWindow:
    win = MainWindow(open_path=str(path), dialogs=dialogs or FakeDialogs(), restore_layout=False)
    qtbot.addWidget(win)
    # room for the canvas, so a screen pixel is less than an image pixel whatever the Qt
    # version's dock sizes (PySide6 6.12 gives the canvas 232 px of a 1280 px window, 6.7 250 px)
    win.resize(2000, 1000)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=2000)      # window shortcuts need the active window
    win.canvas.fit()
    win.canvas.setFocus()
    return win


@pytest.fixture
def win(qtbot, coco_path):
    w = open_window(qtbot, coco_path)
    yield w
    if w.doc is not None:
        w.doc._autosave.stop()


def vp(win, x, y) -> QPoint:
    return win.canvas.image_to_viewport(x, y)


def drag(win, start, end, steps: int = 4) -> None:
    """Press at image pixel ``start``, move in a few steps, release at ``end``."""
    viewport = win.canvas.viewport()
    QTest.mousePress(viewport, L, Qt.KeyboardModifier.NoModifier, vp(win, *start))
    for k in range(1, steps + 1):
        x = start[0] + (end[0] - start[0]) * k / steps
        y = start[1] + (end[1] - start[1]) * k / steps
        QTest.mouseMove(viewport, vp(win, x, y))
    QTest.mouseRelease(viewport, L, Qt.KeyboardModifier.NoModifier, vp(win, *end))


def click(win, x, y, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    QTest.mouseClick(win.canvas.viewport(), L, modifier, vp(win, x, y))


def key(win, k, modifier=Qt.KeyboardModifier.NoModifier, widget=None) -> None:
    QTest.keyClick(widget or win.canvas, k, modifier)


def boxes(win, image=None):
    image = win.editor.index if image is None else image
    return [(b.id, b.category_id, b.x1, b.y1, b.x2, b.y2) for b in win.doc.project.images[image].boxes]


def same(a, b) -> bool:
    """Same ids and classes, coordinates equal up to float noise (xyxy -> xywh -> xyxy)."""
    return [x[:2] for x in a] == [y[:2] for y in b] and all(
        x[2:] == pytest.approx(y[2:], abs=1e-9) for x, y in zip(a, b, strict=True))


def tol(a, b, eps=1.01):
    """Compare box tuples with a pixel of slack for mouse-position rounding."""
    return len(a) == len(b) and all(abs(x - y) <= eps for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- the whole editing round trip


def test_draw_move_resize_class_undo_redo_switch_save_reopen(qtbot, win, coco_path):
    start = boxes(win)
    assert [b[:2] for b in start] == [(10, 3), (11, 7)]
    win.editor.set_current_class(7)

    drag(win, (70, 90), (110, 130))                          # draw on empty image area
    s1 = boxes(win)
    new_id, cat, *xyxy = s1[-1]
    assert len(s1) == 3 and cat == 7 and new_id == 13        # max id + 1, the current class
    assert tol(xyxy, (70, 90, 110, 130))
    assert win.canvas.selected == [new_id]
    assert tol(win.canvas.box_rects()[new_id], tuple(xyxy))  # what is drawn follows the project
    assert win.image_list.model.mark(0) == UNSAVED_MARK

    drag(win, (90, 110), (110, 120))                         # move it by (+20, +10)
    s2 = boxes(win)
    assert tol(s2[-1][2:], (90, 100, 130, 140))

    drag(win, (130, 140), (150, 145))                        # resize by the bottom-right handle
    s3 = boxes(win)
    assert tol(s3[-1][2:], (90, 100, 150, 145))

    key(win, Qt.Key.Key_1)                                   # number key: first class (cat, id 3)
    s4 = boxes(win)
    assert s4[-1][1] == 3 and s4[-1][2:] == s3[-1][2:]

    for expected in (s3, s2, s1, start):                     # undo each step
        key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        assert boxes(win) == expected
    assert win.image_list.model.mark(0) == ""                # back at the saved state
    for expected in (s1, s2, s3, s4):                        # redo each step
        key(win, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
        assert boxes(win) == expected

    key(win, Qt.Key.Key_N)                                   # next image and back: history survives
    assert win.editor.index == 1
    assert boxes(win) == [(12, 7, 10.0, 10.0, 40.0, 40.0)]
    key(win, Qt.Key.Key_P)
    assert win.editor.index == 0 and boxes(win) == s4
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert boxes(win) == s3
    key(win, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)

    key(win, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert not win.doc.is_dirty() and win.image_list.model.mark(0) == ""
    assert not win.doc.recovery_path().exists()

    coco = COCO(str(coco_path))                              # reopen through pycocotools, field by field
    anns = {a["id"]: a for a in coco.dataset["annotations"]}
    assert set(anns) == {10, 11, 12, 13}
    x1, y1, x2, y2 = s4[-1][2:]
    assert anns[13]["image_id"] == 1 and anns[13]["category_id"] == 3
    assert anns[13]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
    assert anns[13]["area"] == pytest.approx((x2 - x1) * (y2 - y1))
    assert anns[10]["segmentation"] == [[20, 30, 60, 30, 60, 80]]          # unknown fields kept
    assert anns[10]["attributes"] == {"occluded": False}
    assert [c["id"] for c in coco.dataset["categories"]] == [3, 7]
    assert coco.dataset["licenses"] == [{"id": 1, "name": "CC"}]
    assert coco.dataset["images"][0] == {"id": 1, "file_name": "img1.png", "width": 200, "height": 150, "license": 1}

    again = open_window(qtbot, coco_path)                    # the same annotations in a new window
    assert same(boxes(again, 0), s4) and same(boxes(again, 1), boxes(win, 1))


# --------------------------------------------------------------------------- single gestures


def test_click_without_drag_and_tiny_boxes_are_refused(win):
    before = boxes(win)
    click(win, 80, 100)
    assert boxes(win) == before
    win.canvas.zoom_by(40, vp(win, 80, 100))                 # very zoomed in: a 0.5-px drag is many screen px
    drag(win, (80, 100), (80.5, 110))
    assert boxes(win) == before
    assert "degenerate" in win.statusBar().currentMessage()


def test_boxes_are_clipped_to_the_image(win):
    drag(win, (150, 100), (260, 190))                        # the image is 200 x 150
    x1, y1, x2, y2 = boxes(win)[-1][2:]
    assert tol((x1, y1), (150, 100)) and (x2, y2) == (200, 150)


def test_move_stays_inside_the_image(win):
    drag(win, (40, 50), (0, 0))                              # box 10 is [20, 30, 60, 80]
    assert tol(boxes(win)[0][2:], (0, 0, 40, 50), 0.01)


def test_nudge_with_arrows_is_one_undo_step(win):
    click(win, 40, 50)
    assert win.canvas.selected == [10]
    for _ in range(3):
        key(win, Qt.Key.Key_Right)
    key(win, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    assert boxes(win)[0][2:] == (23.0, 40.0, 63.0, 90.0)
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert boxes(win)[0][2:] == (20.0, 30.0, 60.0, 80.0)


def test_delete_and_undo_restores_position(win):
    click(win, 40, 50)
    key(win, Qt.Key.Key_Delete)
    assert [b[0] for b in boxes(win)] == [11]
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [b[0] for b in boxes(win)] == [10, 11]


def test_ctrl_click_multi_select_and_class_from_class_list(qtbot, win):
    click(win, 40, 50)
    click(win, 140, 40, Qt.KeyboardModifier.ControlModifier)
    assert sorted(win.canvas.selected) == [10, 11]
    row = win.class_panel.list.item(1)                       # "dog", id 7
    rect = win.class_panel.list.visualItemRect(row)
    qtbot.mouseClick(win.class_panel.list.viewport(), L, pos=rect.center())
    assert [b[1] for b in boxes(win)] == [7, 7]
    assert win.editor.current_class == 7
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)   # one step for both
    assert [b[1] for b in boxes(win)] == [3, 7]


def test_class_popup_on_right_click(win):
    pos = vp(win, 40, 50)
    event = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, win.canvas.viewport().mapToGlobal(pos))
    QApplication.sendEvent(win.canvas.viewport(), event)
    menu = win.box_menu
    texts = [a.text().split("\t")[0] for a in menu.actions() if a.text()]
    assert texts[:2] == ["cat", "dog"]
    menu.actions()[1].trigger()
    menu.close()
    assert boxes(win)[0][1] == 7


def test_copy_paste_between_images_and_duplicate(win):
    click(win, 40, 50)
    key(win, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    key(win, Qt.Key.Key_N)
    key(win, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    pasted = boxes(win)[-1]
    assert pasted[1:] == (3, 20.0, 30.0, 60.0, 80.0) and pasted[0] == 13     # same place, new id
    key(win, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    dup = boxes(win)[-1]
    assert dup[0] == 14 and dup[2:] == (30.0, 40.0, 70.0, 90.0)
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert boxes(win) == [(12, 7, 10.0, 10.0, 40.0, 40.0)]


def test_draw_mode_starts_over_an_existing_box(win):
    key(win, Qt.Key.Key_W)
    drag(win, (30, 40), (50, 70))                            # inside box 10: would be a move without W
    assert len(boxes(win)) == 3
    assert boxes(win)[0][2:] == (20.0, 30.0, 60.0, 80.0)


# --------------------------------------------------------------------------- zoom, pan, readout


def test_wheel_zoom_keeps_the_point_under_the_cursor(win):
    pos = vp(win, 50, 40)
    before = win.canvas.scale_factor()
    win.canvas.zoom_by(2.0, pos)
    assert win.canvas.scale_factor() == pytest.approx(2 * before)
    p = win.canvas.mapToScene(pos)
    assert abs(p.x() - 50) < 1 and abs(p.y() - 40) < 1
    win.canvas.actual_size()
    assert win.canvas.scale_factor() == 1.0
    key(win, Qt.Key.Key_F)
    assert win.canvas.scale_factor() == pytest.approx(before, rel=0.02)


def test_pixel_readout(win):
    QTest.mouseMove(win.canvas.viewport(), vp(win, 12.5, 7.5))
    assert win.cursor_label.text().startswith("x 12  y 7  RGB")


# --------------------------------------------------------------------------- saving never loses work


def test_autosave_writes_a_recovery_file_and_the_next_start_offers_it(qtbot, coco_path, monkeypatch):
    monkeypatch.setattr(document, "AUTOSAVE_DELAY_MS", 50)
    original = coco_path.read_bytes()
    first = open_window(qtbot, coco_path)
    drag(first, (70, 90), (110, 130))
    recovery = first.doc.recovery_path()
    qtbot.waitUntil(recovery.exists, timeout=3000)
    assert coco_path.read_bytes() == original               # autosave never writes the user's file
    saved = json.loads(recovery.read_text())
    assert len(saved["annotations"]) == 4
    first.doc._autosave.stop()
    first.doc = None                                         # "crash": the window goes without asking

    dialogs = FakeDialogs()
    second = open_window(qtbot, coco_path, dialogs)
    assert "ask_recover" in dialogs.names()
    assert len(boxes(second, 0)) == 3 and second.doc.is_dirty()
    assert second.image_list.model.mark(0) == UNSAVED_MARK
    assert second.doc.project.path == coco_path
    second.save()
    assert len(COCO(str(coco_path)).dataset["annotations"]) == 4
    assert not recovery.exists()


def test_declined_recovery_is_discarded(qtbot, coco_path, monkeypatch):
    monkeypatch.setattr(document, "AUTOSAVE_DELAY_MS", 50)
    first = open_window(qtbot, coco_path)
    drag(first, (70, 90), (110, 130))
    qtbot.waitUntil(first.doc.recovery_path().exists, timeout=3000)
    first.doc._autosave.stop()
    first.doc = None
    dialogs = FakeDialogs()
    dialogs.recover_answer = False
    second = open_window(qtbot, coco_path, dialogs)
    assert len(boxes(second, 0)) == 2 and not second.doc.is_dirty()
    assert not second.doc.recovery_path().exists()


def test_close_with_unsaved_edits_asks(qtbot, win, coco_path):
    drag(win, (70, 90), (110, 130))
    win.dialogs.save_answer = "cancel"
    assert not win.close()
    assert win.isVisible()
    win.dialogs.save_answer = "save"
    assert win.close()
    assert len(COCO(str(coco_path)).dataset["annotations"]) == 4


def test_a_failed_save_keeps_the_old_file_and_the_edits(win, coco_path, monkeypatch):
    original = coco_path.read_bytes()
    drag(win, (70, 90), (110, 130))

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("detengine.io.os.replace", broken_replace)
    assert not win.save()
    assert coco_path.read_bytes() == original
    assert win.doc.is_dirty() and "error" in win.dialogs.names()
    assert not list(coco_path.parent.glob(".*.tmp"))        # the temporary file is removed


# --------------------------------------------------------------------------- class manager


def test_add_rename_keep_ids(win, coco_path):
    win.dialogs.class_names = ["bird", "kitty"]
    win.add_class()
    assert [(c.id, c.name) for c in win.doc.project.categories] == [(3, "cat"), (7, "dog"), (8, "bird")]
    assert win.editor.current_class == 8
    win.rename_class(3)
    assert win.doc.project.category(3).name == "kitty"
    assert win.class_panel.list.item(0).text().split()[1] == "kitty"
    assert win.canvas.items[10].label.text == "kitty"
    win.save()
    cats = {c["id"]: c["name"] for c in json.loads(coco_path.read_text())["categories"]}
    assert cats == {3: "kitty", 7: "dog", 8: "bird"}


def test_merge_and_delete_classes(win):
    win.dialogs.merge_target = 7
    win.merge_class(3)
    assert [c.id for c in win.doc.project.categories] == [7]
    assert [b[1] for b in boxes(win)] == [7, 7]
    assert win.image_list.model.mark(0) == UNSAVED_MARK
    win.dialogs.delete_answer = (True, None)
    win.delete_class(7)
    assert win.doc.project.categories == [] and win.doc.project.num_boxes == 0


def test_delete_class_moving_boxes(win):
    win.dialogs.delete_answer = (True, 7)
    win.delete_class(3)
    assert [b[1] for b in boxes(win)] == [7, 7]
    win.dialogs.delete_answer = (False, None)                # cancelled: nothing happens
    win.delete_class(7)
    assert [c.id for c in win.doc.project.categories] == [7]


# --------------------------------------------------------------------------- image list


def test_filter_by_name_and_class(win):
    panel = win.image_list
    assert panel.visible_count() == 3
    panel.filter_edit.setText("IMG2")
    assert panel.visible_count() == 1
    panel.filter_edit.clear()
    panel.class_combo.setCurrentIndex(panel.class_combo.findData(3))
    assert panel.visible_count() == 1                        # only image 1 has a cat
    panel.class_combo.setCurrentIndex(0)
    assert panel.visible_count() == 3


def test_box_counts_follow_edits(win):
    model = win.image_list.model
    assert model.data(model.index(0, 3)) == 2
    drag(win, (70, 90), (110, 130))
    assert model.data(model.index(0, 3)) == 3


# --------------------------------------------------------------------------- bad input


def test_unreadable_image_shows_placeholder_and_mark(qtbot, tmp_path):
    path = make_coco_project(tmp_path / "p", corrupt_image=2)
    win = open_window(qtbot, path)
    key(win, Qt.Key.Key_N)
    assert win.editor.index == 1, win.dialogs.calls
    assert win.canvas.image is None and win.canvas.image_size == (160, 120)
    assert win.image_list.model.mark(1) == PROBLEM_MARK
    assert "cannot read image img2.png" in win.image_list.model.problems[1]
    drag(win, (50, 50), (90, 90))                            # its boxes can still be edited
    assert len(boxes(win)) == 2


def test_malformed_json_opens_what_is_valid_and_lists_the_rest(qtbot, tmp_path, coco_path):
    data = json.loads(coco_path.read_text())
    data["annotations"].append({"id": 20, "image_id": 99, "category_id": 3, "bbox": [0, 0, 5, 5]})
    data["annotations"].append({"id": 21, "image_id": 1, "category_id": 3, "bbox": [0, 0, 0, 5]})
    data["images"].append({"id": 4, "file_name": 17})
    coco_path.write_text(json.dumps(data))
    dialogs = FakeDialogs()
    win = open_window(qtbot, coco_path, dialogs)
    assert len(win.doc.project.images) == 3 and win.doc.project.num_boxes == 3
    (title, lines), = [c[1:] for c in dialogs.calls if c[0] == "problems"]
    assert len(lines) == 3
    assert any("images[3]" in line and "file_name" in line for line in lines)
    assert any("annotations[3]" in line and "image_id" in line for line in lines)
    assert any("annotations[4]" in line and "degenerate" in line for line in lines)


def test_not_json_at_all_is_an_error_and_keeps_the_current_project(qtbot, win, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    assert not win.open_project(str(bad))
    (name, title, text), = [c for c in win.dialogs.calls if c[0] == "error"]
    assert "not valid JSON" in text and str(bad) in text
    assert len(win.doc.project.images) == 3


# --------------------------------------------------------------------------- other sources, settings, drops


def test_open_voc_folder_and_save_as_coco(qtbot, tmp_path):
    root = make_voc_folder(tmp_path / "voc")
    dialogs = FakeDialogs()
    win = open_window(qtbot, root, dialogs)
    project = win.doc.project
    assert project.kind == "voc" and project.path is None
    assert [(c.id, c.name) for c in project.categories] == [(1, "car"), (2, "person")]
    # every corner minus 1, as mmdetection's XMLDataset (and detengine's VocDataset) reads them
    assert boxes(win, 0) == [(1, 2, 10.0, 20.0, 39.0, 59.0), (2, 1, 0.0, 0.0, 9.0, 9.0)]
    assert project.images[0].boxes[1].iscrowd == 1              # difficult -> ignored
    from detengine.data.voc import VocDataset
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    ids = [p.stem for p in sorted((root / "Annotations").glob("*.xml"))]
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids) + "\n")
    cli = VocDataset(root, class_names=["car", "person"])._records[ids.index(Path(project.images[0].file_name).stem)]
    window = [b for b in project.images[0].boxes if not b.iscrowd]
    assert cli["boxes"].tolist() == [[b.x1, b.y1, b.x2, b.y2] for b in window]  # the CLI trains on the same boxes
    assert cli["ignore_boxes"].tolist() == [[b.x1, b.y1, b.x2, b.y2] for b in project.images[0].boxes if b.iscrowd]
    dialogs.save_path = str(tmp_path / "out" / "voc.json")
    assert win.save()                                            # no file yet: Save asks where
    assert "ask_save_path" in dialogs.names()
    coco = COCO(dialogs.save_path)
    assert len(coco.dataset["annotations"]) == 4
    again = open_window(qtbot, dialogs.save_path)                # images found through info.detscope_image_root
    assert again.doc.project.image_root_found and again.canvas.image is not None


def test_image_folder_starts_an_empty_project_and_asks_for_a_class(qtbot, tmp_path):
    for i in range(3):
        write_image(tmp_path / "pics" / f"p{i}.png", 120, 90, i)
    dialogs = FakeDialogs()
    win = open_window(qtbot, tmp_path / "pics", dialogs)
    assert win.doc.project.kind == "folder" and win.doc.project.categories == []
    assert win.doc.project.images[0].width == 120                # sizes from the file headers
    dialogs.class_names = ["tree"]
    drag(win, (10, 10), (60, 50))
    assert [(c.id, c.name) for c in win.doc.project.categories] == [(1, "tree")]
    assert boxes(win)[0][:2] == (1, 1)
    drag(win, (70, 10), (100, 50))                               # the class is kept for the next box
    assert [b[1] for b in boxes(win)] == [1, 1]
    assert dialogs.names().count("ask_class_name") == 1


def test_last_project_and_layout_are_remembered(qtbot, coco_path):
    first = MainWindow(open_path=str(coco_path), dialogs=FakeDialogs())
    qtbot.addWidget(first)
    first.close()
    win = MainWindow(dialogs=FakeDialogs())                      # no --open: the last project
    qtbot.addWidget(win)
    assert win.doc.project.path == coco_path
    assert settings().value("window/state") is not None


def test_without_a_last_project_the_sample_opens(qtbot):
    win = MainWindow(dialogs=FakeDialogs(), restore_layout=False)
    qtbot.addWidget(win)
    project = win.doc.project
    assert project.path.name == "annotations.json" and len(project.images) == 300
    assert {im.extra["detscope_split"] for im in project.images} == {"train", "val"}
    assert [c.name for c in project.categories] == ["circle", "square", "triangle", "ring", "bar"]
    assert win.canvas.image is not None


def test_drop_a_json_file_opens_it(qtbot, win, tmp_path):
    other = make_coco_project(tmp_path / "other")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(other))])
    pos = QPointF(win.width() / 2, win.height() / 2)
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, L, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(win, enter)
    assert enter.isAccepted()
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, L, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(win, drop)
    qtbot.waitUntil(lambda: win.doc.project.path == other, timeout=5000)     # opened after the drop returns


def test_shortcut_sheet_lists_every_key_the_issue_names():
    keys = " ".join(k for k, _ in SHORTCUTS)
    for needed in ("N", "P", "D", "A", "W", "Del", "Ctrl+Z", "Ctrl+Y", "Ctrl+S", "F", "Ctrl+wheel"):
        assert needed in keys


KILLED_SAVE = r"""
import os, sys, time
from pathlib import Path
from detengine.data.project import AnnotationProject, Box
import detengine.io as io
project = AnnotationProject.open(sys.argv[1])
for k in range(20000):                                       # a big file, written slowly
    project.insert_box(0, Box(project.new_box_id(), 3, 1, 1, 5 + k % 50, 5))
real_fsync = os.fsync
def slow_fsync(fd):
    if os.fstat(fd).st_size < 100_000:                       # the backup of the small file goes through
        return real_fsync(fd)
    Path(sys.argv[2]).write_text("writing")                  # tell the test we are mid-save
    time.sleep(60)
io.os.fsync = slow_fsync
project.save()
"""


def test_a_killed_save_leaves_the_previous_file_intact(tmp_path, coco_path):
    original = coco_path.read_bytes()
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(coco_path), str(marker)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the saving process ended early"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert coco_path.read_bytes() == original
    assert len(COCO(str(coco_path)).dataset["annotations"]) == 3
    leftovers = list(coco_path.parent.glob(".annotations.json.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 100_000   # the half-written copy, not the file
    assert f".{proc.pid}." in leftovers[0].name                               # named after the process that wrote it
    from detengine.data.project import AnnotationProject
    AnnotationProject.open(coco_path)                                         # the next open removes it
    assert not list(coco_path.parent.glob(".annotations.json.*.tmp"))


def test_predictions_are_drawn_dashed_with_scores_and_take_no_clicks(win):
    win.canvas.set_predictions([((30, 40, 50, 70), QColor("#ff0000"), "cat", 0.873)])
    (item,) = win.canvas.prediction_items
    assert item.dashed and item.label.text == "cat 0.87"
    assert (item.rect.left(), item.rect.top(), item.rect.right(), item.rect.bottom()) == (30, 40, 50, 70)
    drag(win, (5, 100), (15, 140))                           # drawing still works over predictions
    assert len(boxes(win)) == 3
    win.canvas.set_predictions([])
    assert win.canvas.prediction_items == []


# --------------------------------------------------------------------------- review findings (regressions)


def test_offscreen_run_keeps_the_recovery_file_and_the_layout(qtbot, coco_path, monkeypatch, detscope_home):
    from app.dialogs import ConsoleDialogs
    monkeypatch.setattr(document, "AUTOSAVE_DELAY_MS", 50)
    first = open_window(qtbot, coco_path)
    drag(first, (70, 90), (110, 130))
    recovery = first.doc.recovery_path()
    qtbot.waitUntil(recovery.exists, timeout=3000)
    first.doc._autosave.stop()
    first.doc = None
    shot = MainWindow(open_path=str(coco_path), dialogs=ConsoleDialogs(), restore_layout=False)
    qtbot.addWidget(shot)
    shot.close()
    assert recovery.exists()
    assert settings().value("window/geometry") is None


def test_the_next_start_reopens_the_crashed_project_and_offers_recovery(qtbot, coco_path, monkeypatch):
    monkeypatch.setattr(document, "AUTOSAVE_DELAY_MS", 50)
    first = MainWindow(open_path=str(coco_path), dialogs=FakeDialogs())
    qtbot.addWidget(first)
    first.show()
    drag(first, (70, 90), (110, 130))
    qtbot.waitUntil(first.doc.recovery_path().exists, timeout=3000)
    first.doc._autosave.stop()
    first.doc = None                                          # died: no closeEvent
    dialogs = FakeDialogs()
    second = MainWindow(dialogs=dialogs)                      # no --open
    qtbot.addWidget(second)
    assert second.doc.project.path == coco_path and "ask_recover" in dialogs.names()
    assert len(boxes(second, 0)) == 3


def test_save_as_leaves_no_stale_recovery_for_the_original(qtbot, coco_path, tmp_path, monkeypatch):
    monkeypatch.setattr(document, "AUTOSAVE_DELAY_MS", 50)
    win = open_window(qtbot, coco_path)
    old_recovery = win.doc.recovery_path()
    drag(win, (70, 90), (110, 130))
    qtbot.waitUntil(old_recovery.exists, timeout=3000)
    win.dialogs.save_path = str(tmp_path / "copy.json")
    assert win.save_as()
    assert not old_recovery.exists() and not win.doc.recovery_path().exists()


def test_an_empty_json_is_refused_and_the_project_stays(qtbot, win, tmp_path):
    labelme = tmp_path / "labelme.json"
    labelme.write_text(json.dumps({"version": "5.0", "shapes": []}))
    assert not win.open_project(str(labelme))
    (_, _, text), = [c for c in win.dialogs.calls if c[0] == "error"]
    assert "no images" in text
    assert len(win.doc.project.images) == 3
    drag(win, (70, 90), (110, 130))
    assert len(boxes(win)) == 3


def test_undo_after_a_class_delete_never_brings_back_the_class(win, coco_path):
    click(win, 140, 40)                                       # box 11, the only dog on image 1
    key(win, Qt.Key.Key_Delete)
    win.dialogs.delete_answer = (True, None)
    win.delete_class(7)
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)   # history was cleared: nothing comes back
    assert {b.category_id for im in win.doc.project.images for b in im.boxes} <= {3}
    win.dialogs.class_names = ["bird"]
    win.add_class()
    assert win.doc.project.categories[-1].id == 8             # 7 is retired, never reused
    win.save()
    assert COCO(str(coco_path)).dataset["info"]["detscope_next_category_id"] == 9


def test_undo_of_a_multi_delete_restores_the_order(win):
    drag(win, (70, 90), (110, 130))
    drag(win, (120, 90), (150, 130))
    ids = [b[0] for b in boxes(win)]
    click(win, 40, 50)
    click(win, 90, 110, Qt.KeyboardModifier.ControlModifier)
    key(win, Qt.Key.Key_Delete)
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [b[0] for b in boxes(win)] == ids


def test_an_edit_under_a_class_filter_stays_on_the_image(win):
    panel = win.image_list
    panel.class_combo.setCurrentIndex(panel.class_combo.findData(7))
    win.show_image(0)
    click(win, 140, 40)                                       # the dog
    key(win, Qt.Key.Key_1)                                    # -> cat: image 1 no longer matches the filter
    assert win.editor.index == 0
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert boxes(win)[1][1] == 7


def test_nudging_an_overhanging_box_moves_it_the_right_way(qtbot, tmp_path):
    path = make_coco_project(tmp_path / "p")
    data = json.loads(path.read_text())
    data["annotations"][1]["bbox"] = [150, 100, 52, 40]       # 2 px past the right edge (image is 200 wide)
    path.write_text(json.dumps(data))
    win = open_window(qtbot, path)
    click(win, 170, 120)
    key(win, Qt.Key.Key_Left)
    assert boxes(win)[1][2:] == (149.0, 100.0, 201.0, 140.0)
    key(win, Qt.Key.Key_Right)
    key(win, Qt.Key.Key_Right)
    assert boxes(win)[1][2:] == (149.0, 100.0, 201.0, 140.0)   # cannot go further right, never pushed left


def test_a_small_selected_box_can_be_moved(win):
    win.canvas.zoom_by(0.3)                                   # zoomed out: handles are large in image pixels
    drag(win, (95, 20), (101, 26))
    small = boxes(win)[-1]
    w = small[4] - small[2]
    click(win, small[2] + w / 2, small[3] + w / 2)
    before = boxes(win)[-1]
    drag(win, (small[2] + w / 2, small[3] + w / 2), (small[2] + w / 2 + 30, small[3] + w / 2))
    after = boxes(win)[-1]
    assert after[4] - after[2] == pytest.approx(before[4] - before[2])     # same size: moved, not resized
    assert after[2] > before[2] + 10


def test_steady_editing_still_autosaves(qtbot, win, monkeypatch):
    monkeypatch.setattr(document, "AUTOSAVE_DELAY_MS", 300)
    monkeypatch.setattr(document, "AUTOSAVE_MAX_WAIT_S", 0.5)
    click(win, 40, 50)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not win.doc.recovery_path().exists():
        key(win, Qt.Key.Key_Right)                            # an edit every 100 ms never lets 300 ms pass
        qtbot.wait(100)
    assert win.doc.recovery_path().exists()


def test_save_after_skipped_records_keeps_them_and_a_backup(qtbot, coco_path):
    data = json.loads(coco_path.read_text())
    data["annotations"].append({"id": 21, "image_id": 1, "category_id": 3, "bbox": [0, 0, 0, 5]})
    coco_path.write_text(json.dumps(data))
    original = coco_path.read_bytes()
    win = open_window(qtbot, coco_path)
    drag(win, (70, 90), (110, 130))
    win.save()
    backup, = coco_path.parent.glob(coco_path.name + ".*.bak")
    assert backup.read_bytes() == original
    saved = json.loads(coco_path.read_text())
    assert saved["annotations"][-1] == {"id": 21, "image_id": 1, "category_id": 3, "bbox": [0, 0, 0, 5]}


def test_image_folder_is_found_with_a_few_files_missing(qtbot, coco_path):
    (coco_path.parent.parent / "images" / "img2.png").unlink()
    win = open_window(qtbot, coco_path)
    assert win.doc.project.image_root_found
    assert "ask_open_folder" not in win.dialogs.names()
