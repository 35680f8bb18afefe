"""Ctrl+S on a big project writes in a worker thread while the window stays usable: the file holds
the project as it was when Save was pressed, edits made meanwhile stay unsaved (also after an
undo back to the saved state's index) and keep their recovery file, a failure says so and loses
nothing, and closing or reloading waits for the write (item 12 of "Nothing lost, nothing silently
changed")."""
from __future__ import annotations

import json
import threading

import pytest
from PySide6.QtCore import QTimer

from app.annotate import document
from app.annotate.commands import AddBoxes
from app.main_window import MainWindow
from detengine.api import ReadOnlyFileError
from detengine.data import project as project_module
from detengine.data.project import Box
from tests.app.projects import FakeDialogs, make_coco_project


@pytest.fixture
def win(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(document, "ASYNC_AUTOSAVE_MIN_RECORDS", 0)      # every project counts as big
    window = MainWindow(open_path=str(make_coco_project(tmp_path / "project")), dialogs=FakeDialogs(),
                        restore_layout=False)
    qtbot.addWidget(window)
    return window


class GatedWrite:
    """The project file's atomic write, held until ``go`` is set; notes the writing thread."""

    def __init__(self, real):
        self.real, self.go, self.entered, self.threads = real, threading.Event(), threading.Event(), []

    def __call__(self, path, data):
        self.threads.append(threading.current_thread())
        self.entered.set()
        assert self.go.wait(10)
        self.real(path, data)


def add_box(doc, image: int, x: float) -> None:
    doc.push(image, AddBoxes(doc, image, [Box(doc.project.new_box_id(), 3, x, x, x + 10, x + 10)]))


def saved_boxes(path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for ann in json.loads(path.read_text())["annotations"]:
        counts[ann["image_id"]] = counts.get(ann["image_id"], 0) + 1
    return counts


def test_ctrl_s_writes_in_a_worker_while_the_window_keeps_editing(qtbot, win, monkeypatch):
    doc, path = win.doc, win.doc.project.path
    gate = GatedWrite(project_module.atomic_write_bytes)
    monkeypatch.setattr(project_module, "atomic_write_bytes", gate)
    add_box(doc, 0, 5)
    add_box(doc, 1, 5)
    assert win.save(background=True)                          # returns at once: the write waits on the gate
    assert gate.entered.wait(5) and gate.threads[0] is not threading.main_thread()
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    qtbot.waitUntil(lambda: len(ticks) >= 5, timeout=3000)    # the event loop runs during the save
    timer.stop()
    add_box(doc, 1, 40)                                       # edited while the file is written
    doc.undo_group.setActiveStack(doc.stack(1))
    assert "in the background" in win.statusBar().currentMessage()
    with qtbot.waitSignal(doc.saveFinished, timeout=10000) as done:
        gate.go.set()
    job = done.args[0]
    assert job.error is None and job.target == path
    assert saved_boxes(path) == {1: 3, 2: 2}                  # the project as it was at Ctrl+S
    assert not doc.is_image_dirty(0) and doc.is_image_dirty(1) and doc.is_dirty()
    assert "not in it yet" in win.statusBar().currentMessage()
    doc.stack(1).undo()                                       # back to the saved index: still unsaved
    assert doc.is_image_dirty(1)                              # (the clean state is the file's, now unreachable)
    assert doc._autosave.isActive()                           # the later edit's recovery file is coming
    doc.stack(1).redo()
    win.save()                                                # a save on this thread: all clean
    assert not doc.is_dirty() and saved_boxes(path) == {1: 3, 2: 3}
    assert not doc.recovery_path().exists()


def test_a_failed_background_save_loses_nothing_and_offers_another_file(qtbot, win, monkeypatch, tmp_path):
    doc, path = win.doc, win.doc.project.path
    before = path.read_bytes()

    def refuse(target):
        raise ReadOnlyFileError(f"{target} is read-only", target)
    monkeypatch.setattr(project_module, "check_writable", refuse)
    add_box(doc, 0, 5)
    win.dialogs.save_path = None                              # the user cancels the Save As offered
    with qtbot.waitSignal(doc.saveFinished, timeout=10000) as done:
        assert win.save(background=True)
    assert isinstance(done.args[0].error, ReadOnlyFileError)
    assert path.read_bytes() == before and doc.is_dirty()
    assert "error" in win.dialogs.names() and "ask_save_path" in win.dialogs.names()
    assert doc._autosave.isActive()                           # the unsaved edit is still protected


def test_closing_during_a_background_save_waits_for_it(qtbot, win, monkeypatch):
    doc, path = win.doc, win.doc.project.path
    gate = GatedWrite(project_module.atomic_write_bytes)
    monkeypatch.setattr(project_module, "atomic_write_bytes", gate)
    add_box(doc, 2, 5)
    win.save(background=True)
    assert gate.entered.wait(5)
    threading.Timer(0.2, gate.go.set).start()
    win.close()                                               # nothing unsaved once the write ends: no question
    assert "ask_save_changes" not in win.dialogs.names()
    assert saved_boxes(path) == {1: 2, 2: 1, 3: 1}
    assert doc.save_job is None and not doc.recovery_path().exists()


def test_a_second_ctrl_s_during_a_save_saves_again_when_it_ends(qtbot, win, monkeypatch):
    doc, path = win.doc, win.doc.project.path
    gate = GatedWrite(project_module.atomic_write_bytes)
    monkeypatch.setattr(project_module, "atomic_write_bytes", gate)
    add_box(doc, 0, 5)
    win.save(background=True)
    assert gate.entered.wait(5)
    add_box(doc, 2, 5)
    win.save(background=True)
    assert "saving again" in win.statusBar().currentMessage()
    gate.go.set()
    qtbot.waitUntil(lambda: doc.save_job is None and not doc.is_dirty(), timeout=10000)
    assert saved_boxes(path) == {1: 3, 2: 1, 3: 1}
