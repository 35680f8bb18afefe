"""Annotation as labelme / X-AnyLabeling users expect (issue "The window as a daily tool", item
8): a new box can ask its class (a list with type-ahead; a new name adds a class) or keep the last
one (a toggle, remembered), a toolbar with the daily actions, Ctrl+A, hide boxes / class names,
and Save As proposes a file name."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from app.dialogs import ClassPickDialog
from tests.app.annotate.test_editor import boxes, drag, open_window
from tests.app.projects import make_coco_project


@pytest.fixture
def win(qtbot, tmp_path):
    w = open_window(qtbot, make_coco_project(tmp_path / "project"))
    yield w
    w.doc._autosave.stop()


def test_each_new_box_asks_its_class_when_the_toggle_is_on(qtbot, win):
    dialogs, doc = win.dialogs, win.doc
    toggle = win.actions_by_name["ask_each_box"]
    assert not toggle.isChecked()
    drag(win, (150, 100), (180, 140))                              # off: the current class, nothing asked
    assert "ask_box_class" not in dialogs.names() and boxes(win)[-1][1] == win.editor.current_class
    toggle.trigger()
    dialogs.box_class_answer = "dog"                               # an existing class by name
    drag(win, (10, 100), (40, 140))
    assert dialogs.calls[-1][0] == "ask_box_class" and "dog" in dialogs.calls[-1][1]
    assert boxes(win)[-1][1] == 7
    dialogs.box_class_answer = "bird"                              # a new name: a new class
    drag(win, (60, 100), (90, 140))
    assert [c.name for c in doc.project.categories][-1] == "bird"
    assert boxes(win)[-1][1] == doc.project.categories[-1].id
    n = len(boxes(win))
    dialogs.box_class_answer = None                                # cancelled: no box
    drag(win, (100, 100), (130, 140))
    assert len(boxes(win)) == n


def test_the_class_dialog_filters_as_you_type_and_takes_a_new_name(qtbot):
    dialog = ClassPickDialog(["cat", "dog", "person", "dogsled"], "cat")
    qtbot.addWidget(dialog)
    assert dialog.name() == "cat"
    dialog.edit.clear()
    QTest.keyClicks(dialog.edit, "dog")
    shown = [dialog.list.item(r).text() for r in range(dialog.list.count()) if not dialog.list.item(r).isHidden()]
    assert shown == ["dog", "dogsled"] and dialog.name() == "dog"
    dialog.list.setCurrentRow(3)                                   # a click on a row takes its name
    assert dialog.name() == "dogsled"


def test_select_all_hide_boxes_and_names_and_the_toolbar(qtbot, win):
    a = win.actions_by_name
    win.canvas.setFocus()
    QTest.keyClick(win.canvas, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    assert sorted(win.canvas.selected) == sorted(b[0] for b in boxes(win))
    a["show_labels"].trigger()                                     # Ctrl+L: boxes without their class names
    assert all(not item.label.text for item in win.canvas.items.values()) and win.canvas.items
    a["show_boxes"].trigger()                                      # Ctrl+H: the bare image
    assert not win.canvas.items and not win.canvas.selected
    a["show_boxes"].trigger()
    a["show_labels"].trigger()
    assert all(item.label.text for item in win.canvas.items.values())
    on_bar = {action.text() for action in win.toolbar.actions()}
    assert {"Save", "Previous Image", "Next Image", "Draw Box", "Show Boxes"} <= on_bar and win.actions_by_name["open_json"] in win.toolbar.actions()


def test_save_as_proposes_a_file_name(qtbot, win):
    win.dialogs.save_path = None
    win.save_as()
    asked = [c for c in win.dialogs.calls if c[0] == "ask_save_path"][-1][1]
    assert asked.endswith("annotations.json")
