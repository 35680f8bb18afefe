"""The document's safety nets: recovery offered even when the project file changed after the
crash (saying so, with a box diff), a failed autosave that stays visible until one succeeds,
a read-only project file refused by the window's Save."""
from __future__ import annotations

import json
import os
import stat
import time

import pytest
from PySide6.QtCore import QCoreApplication, QEvent

from app.annotate import document
from app.annotate.commands import AddBoxes, RemoveBoxes, ReplaceBoxes
from app.annotate.document import Document, load_recovery, pending_recovery
from app.main_window import MainWindow
from detengine.data.project import AnnotationProject, Box
from tests.app.projects import FakeDialogs, make_coco_project


@pytest.fixture
def coco_path(tmp_path):
    return make_coco_project(tmp_path / "project")


@pytest.fixture
def docs(qtbot):
    """Makes documents; they are deleted the Qt way (deleteLater, as the window does) at the end,
    never by Python's garbage collector."""
    made = []

    def make(project) -> Document:
        doc = Document(project)
        made.append(doc)
        return doc
    yield make
    for doc in made:
        doc._autosave.stop()
        doc.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def crashed_session(docs, coco_path) -> Document:
    """A session that added, removed and moved one box each, autosaved, then died."""
    project = AnnotationProject.open(coco_path)
    doc = docs(project)
    doc.push(0, AddBoxes(doc, 0, [Box(project.new_box_id(), 3, 5, 5, 25, 25)]))
    doc.push(0, RemoveBoxes(doc, 0, [11]))
    old = project.images[1].boxes[0]
    doc.push(1, ReplaceBoxes(doc, 1, [old], [old.replace(x1=old.x1 + 3, x2=old.x2 + 3)], "move"))
    assert doc.write_recovery() is not None
    doc._autosave.stop()
    return doc


def test_recovery_is_offered_after_touch_with_a_diff_count(qtbot, docs, coco_path):
    crashed_session(docs, coco_path)
    later = time.time() + 60
    os.utime(coco_path, (later, later))                      # `touch`: a newer date, the same content
    project = AnnotationProject.open(coco_path)
    found = pending_recovery(project)
    assert found is not None
    path, saved_at = found                                   # unpacks as before
    assert path.is_file() and saved_at < later
    assert found.file_changed and not found.content_changed
    assert (found.added, found.removed, found.moved, found.relabelled) == (1, 1, 1, 0)
    note = found.note()
    assert "date changed" in note and "not its content" in note
    assert "1 added, 1 removed, 1 moved or resized" in note


def test_recovery_after_the_file_changed_says_so(qtbot, docs, coco_path):
    crashed_session(docs, coco_path)
    data = json.loads(coco_path.read_text())
    data["annotations"][0]["category_id"] = 7               # e.g. a git checkout of another version
    coco_path.write_text(json.dumps(data))
    later = time.time() + 60
    os.utime(coco_path, (later, later))
    found = pending_recovery(AnnotationProject.open(coco_path))
    assert found.file_changed and found.content_changed
    assert (found.added, found.removed, found.moved, found.relabelled) == (1, 1, 1, 1)
    assert "changed after the autosave" in found.note() and ".bak" in found.note()
    recovered, dirty = load_recovery(found.path)
    assert recovered.path == coco_path and dirty == [0, 1]


def test_an_unchanged_file_has_no_note(qtbot, docs, coco_path):
    crashed_session(docs, coco_path)
    found = pending_recovery(AnnotationProject.open(coco_path))
    assert not found.file_changed and found.note() == ""


def test_the_window_offers_recovery_after_touch(qtbot, docs, coco_path):
    crashed_session(docs, coco_path)
    later = time.time() + 60
    os.utime(coco_path, (later, later))
    dialogs = FakeDialogs()
    win = MainWindow(open_path=str(coco_path), dialogs=dialogs, restore_layout=False)
    qtbot.addWidget(win)
    assert "ask_recover" in dialogs.names()
    note = next(c[2] for c in dialogs.calls if c[0] == "ask_recover")
    assert "changed" in note                                  # the question says the file changed since
    assert win.doc.is_dirty() and win.doc.project.num_boxes == 3
    win.doc._autosave.stop()


def test_a_failed_autosave_stays_visible_until_one_succeeds(qtbot, docs, coco_path, monkeypatch):
    project = AnnotationProject.open(coco_path)
    doc = docs(project)
    doc.push(0, AddBoxes(doc, 0, [Box(project.new_box_id(), 3, 5, 5, 25, 25)]))
    doc._autosave.stop()
    real = document.atomic_write_text

    def full_disk(path, text):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(document, "atomic_write_text", full_disk)
    with qtbot.waitSignal(doc.autosaveProblemChanged) as changed:
        doc._on_autosave_timer()
    assert "No space left on device" in changed.args[0] and doc.autosave_problem == changed.args[0]
    assert doc._autosave.isActive()                          # it tries again later
    with qtbot.assertNotEmitted(doc.autosaveProblemChanged):
        doc._on_autosave_timer()                             # still failing: the same state, no flicker
    assert doc.autosave_problem
    monkeypatch.setattr(document, "atomic_write_text", real)
    with qtbot.waitSignal(doc.autosaveProblemChanged) as changed:
        doc._on_autosave_timer()
    assert changed.args == [""] and doc.autosave_problem == "" and doc.recovery_path().is_file()
    doc._autosave.stop()


def test_the_window_shows_a_failed_autosave_until_one_succeeds(qtbot, coco_path, monkeypatch):
    win = MainWindow(open_path=str(coco_path), dialogs=FakeDialogs(), restore_layout=False)
    qtbot.addWidget(win)
    doc = win.doc
    doc.push(0, AddBoxes(doc, 0, [Box(doc.project.new_box_id(), 3, 5, 5, 25, 25)]))
    doc._autosave.stop()
    real = document.atomic_write_text
    monkeypatch.setattr(document, "atomic_write_text", lambda path, text: (_ for _ in ()).throw(OSError(28, "No space")))
    doc._on_autosave_timer()
    assert "No space" in win.autosave_warning.text()
    monkeypatch.setattr(document, "atomic_write_text", real)
    doc._on_autosave_timer()
    assert win.autosave_warning.text() == ""
    doc._autosave.stop()


def test_the_window_refuses_to_save_over_a_read_only_file(qtbot, coco_path):
    dialogs = FakeDialogs()
    win = MainWindow(open_path=str(coco_path), dialogs=dialogs, restore_layout=False)
    qtbot.addWidget(win)
    doc = win.doc
    doc.push(0, AddBoxes(doc, 0, [Box(doc.project.new_box_id(), 3, 5, 5, 25, 25)]))
    before = coco_path.read_bytes()
    coco_path.chmod(0o444)
    try:
        assert not win.save()
        (_, title, text), = [c for c in dialogs.calls if c[0] == "error"]
        assert "read-only" in text and str(coco_path) in text
        assert "ask_save_path" in dialogs.names()                # Save As is offered at once
        assert coco_path.read_bytes() == before and stat.S_IMODE(coco_path.stat().st_mode) == 0o444
        assert doc.is_dirty()
    finally:
        coco_path.chmod(0o644)
        doc._autosave.stop()
