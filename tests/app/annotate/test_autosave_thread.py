"""The autosave of a big project runs in a worker thread: the GUI thread keeps running while it
writes, the recovery file is the one the synchronous autosave writes, a failure still sets the
persistent problem state, a newer autosave replaces an older waiting one, and save / discard /
close leave no write behind (item 12 of "Nothing lost, nothing silently changed")."""
from __future__ import annotations

import json
import threading
import time

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QTimer

from app.annotate import document
from app.annotate.commands import AddBoxes
from app.annotate.document import RECOVERY_KEY, Document
from app.main_window import MainWindow
from detengine.data.project import AnnotationProject, Box
from tests.app.projects import FakeDialogs, make_coco_project


@pytest.fixture
def coco_path(tmp_path):
    return make_coco_project(tmp_path / "project")


@pytest.fixture
def threaded(monkeypatch):
    """Every project counts as big: the autosave goes to the worker thread."""
    monkeypatch.setattr(document, "ASYNC_AUTOSAVE_MIN_RECORDS", 0)


@pytest.fixture
def docs(qtbot):
    made = []

    def make(project) -> Document:
        doc = Document(project)
        made.append(doc)
        return doc
    yield make
    for doc in made:
        doc.release()
        doc.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def edited(docs, coco_path) -> Document:
    project = AnnotationProject.open(coco_path)
    doc = docs(project)
    doc.push(0, AddBoxes(doc, 0, [Box(project.new_box_id(), 3, 5, 5, 25, 25)]))
    doc._autosave.stop()
    return doc


class SlowWriter:
    """``atomic_write_text`` that blocks until released, noting which thread called it."""

    def __init__(self, real):
        self.real, self.go, self.entered, self.threads, self.calls = real, threading.Event(), threading.Event(), [], 0

    def __call__(self, path, text):
        self.threads.append(threading.current_thread())
        self.calls += 1
        self.entered.set()
        assert self.go.wait(10)
        self.real(path, text)


def without_time(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    data[RECOVERY_KEY].pop("saved_at")
    return data


def test_the_autosave_runs_off_the_gui_thread_and_the_event_loop_keeps_ticking(qtbot, docs, coco_path, threaded,
                                                                                monkeypatch):
    doc = edited(docs, coco_path)
    slow = SlowWriter(document.atomic_write_text)
    monkeypatch.setattr(document, "atomic_write_text", slow)
    ticks = []
    ticker = QTimer()
    ticker.timeout.connect(lambda: ticks.append(time.monotonic()))
    ticker.start(10)
    doc._on_autosave_timer()                                  # returns at once: the write waits in the worker
    assert slow.entered.wait(5)
    qtbot.wait(200)
    ticker.stop()
    assert len(ticks) >= 5                                    # the GUI thread's event loop kept running
    assert not doc.recovery_path().exists()
    assert slow.threads and slow.threads[0] is not threading.main_thread()
    handled_on = []
    doc.autosaved.connect(lambda _path: handled_on.append(threading.current_thread()))
    with qtbot.waitSignal(doc.autosaved) as saved:
        slow.go.set()
    assert saved.args == [str(doc.recovery_path())] and doc.recovery_path().is_file()
    assert handled_on == [threading.main_thread()]            # the outcome is handled on the GUI thread


def test_the_recovery_file_is_what_the_synchronous_autosave_writes(qtbot, docs, coco_path, threaded):
    doc = edited(docs, coco_path)
    old = doc.project.images[1].boxes[0]
    doc.replace_boxes(1, [old.replace(x1=old.x1 + 3.25)])
    doc.mark_project_dirty([1])
    with qtbot.waitSignal(doc.autosaved):
        doc._on_autosave_timer()
    threaded_data = json.loads(doc.recovery_path().read_text())
    assert doc.write_recovery() == doc.recovery_path()         # the synchronous one, on this thread
    assert without_time(threaded_data) == without_time(json.loads(doc.recovery_path().read_text()))
    assert len(threaded_data["annotations"]) == 4
    assert threaded_data[RECOVERY_KEY]["dirty_images"] == [0, 1]


def test_the_snapshot_is_taken_when_the_autosave_starts(qtbot, docs, coco_path, threaded, monkeypatch):
    """Edits made while the worker writes are not in that file (nor do they disturb it)."""
    doc = edited(docs, coco_path)
    slow = SlowWriter(document.atomic_write_text)
    monkeypatch.setattr(document, "atomic_write_text", slow)
    doc._on_autosave_timer()
    assert slow.entered.wait(5)
    doc.push(0, AddBoxes(doc, 0, [Box(doc.project.new_box_id(), 3, 30, 30, 40, 40)]))    # while it writes
    with qtbot.waitSignal(doc.autosaved):
        slow.go.set()
    assert len(json.loads(doc.recovery_path().read_text())["annotations"]) == 4
    assert doc._autosave.isActive()                           # the newer edit has its own autosave coming
    doc._on_autosave_timer()
    assert doc.flush_autosave(10)
    assert len(json.loads(doc.recovery_path().read_text())["annotations"]) == 5


def test_a_failing_threaded_autosave_sets_the_persistent_problem_state(qtbot, docs, coco_path, threaded,
                                                                       monkeypatch):
    doc = edited(docs, coco_path)
    real = document.atomic_write_text

    def full_disk(path, text):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(document, "atomic_write_text", full_disk)
    with qtbot.waitSignal(doc.autosaveProblemChanged) as changed:
        doc._on_autosave_timer()
    assert "No space left on device" in changed.args[0] and doc.autosave_problem == changed.args[0]
    assert doc._autosave.isActive()                           # it tries again later
    with qtbot.assertNotEmitted(doc.autosaveProblemChanged, wait=100):
        doc._on_autosave_timer()                              # still failing: the same state, no flicker
        assert doc.flush_autosave(10)
    assert doc.autosave_problem
    monkeypatch.setattr(document, "atomic_write_text", real)
    with qtbot.waitSignal(doc.autosaveProblemChanged) as changed:
        doc._on_autosave_timer()
    assert changed.args == [""] and doc.autosave_problem == "" and doc.recovery_path().is_file()


def test_the_window_shows_a_failed_threaded_autosave(qtbot, coco_path, threaded, monkeypatch):
    win = MainWindow(open_path=str(coco_path), dialogs=FakeDialogs(), restore_layout=False)
    qtbot.addWidget(win)
    doc = win.doc
    doc.push(0, AddBoxes(doc, 0, [Box(doc.project.new_box_id(), 3, 5, 5, 25, 25)]))
    doc._autosave.stop()
    monkeypatch.setattr(document, "atomic_write_text", lambda path, text: (_ for _ in ()).throw(OSError(28, "No space")))
    doc._on_autosave_timer()
    qtbot.waitUntil(lambda: "No space" in win.autosave_warning.text(), timeout=5000)
    doc._autosave.stop()


def test_a_newer_autosave_replaces_an_older_waiting_one(qtbot, docs, coco_path, threaded, monkeypatch):
    doc = edited(docs, coco_path)
    slow = SlowWriter(document.atomic_write_text)
    monkeypatch.setattr(document, "atomic_write_text", slow)
    doc._on_autosave_timer()
    assert slow.entered.wait(5)
    for k in range(3):                                        # three more autosaves while the first writes
        doc.push(0, AddBoxes(doc, 0, [Box(doc.project.new_box_id(), 3, 30 + k, 30, 40 + k, 40)]))
        doc._autosave.stop()
        doc._on_autosave_timer()
    slow.go.set()
    assert doc.flush_autosave(10)
    assert slow.calls == 2                                    # the first, then only the newest
    assert len(json.loads(doc.recovery_path().read_text())["annotations"]) == 7


def test_save_while_an_autosave_writes_leaves_no_recovery_file(qtbot, docs, coco_path, threaded, monkeypatch):
    doc = edited(docs, coco_path)
    slow = SlowWriter(document.atomic_write_text)
    monkeypatch.setattr(document, "atomic_write_text", slow)
    doc._on_autosave_timer()
    assert slow.entered.wait(5)
    threading.Timer(0.2, slow.go.set).start()                 # the write ends while save() waits for it
    doc.save()
    assert not doc.recovery_path().exists() and not doc.is_dirty() and doc.autosave_problem == ""
    with qtbot.assertNotEmitted(doc.autosaved, wait=200):
        pass
    assert not doc.recovery_path().exists()
    assert len(json.loads(coco_path.read_text())["annotations"]) == 4


def test_discard_drops_a_serialising_autosave_before_it_writes(qtbot, docs, coco_path, threaded, monkeypatch):
    doc = edited(docs, coco_path)
    gate, started = threading.Event(), threading.Event()
    real = doc.project.to_coco_text

    def slow_serialise(project, *args, **kwargs):
        started.set()
        assert gate.wait(10)
        return real.__func__(project, *args, **kwargs)
    monkeypatch.setattr(AnnotationProject, "to_coco_text", slow_serialise)
    writes = []
    monkeypatch.setattr(document, "atomic_write_text", lambda path, text: writes.append(path))
    doc._on_autosave_timer()
    assert started.wait(5)
    doc.discard()                                             # does not wait for the serialisation
    gate.set()
    qtbot.wait(200)
    assert writes == [] and not doc.recovery_path().exists()


def test_close_with_a_pending_autosave_writes_nothing_after_the_window_is_gone(qtbot, coco_path, threaded,
                                                                               monkeypatch):
    win = MainWindow(open_path=str(coco_path), dialogs=FakeDialogs(), restore_layout=False)
    qtbot.addWidget(win)
    doc = win.doc
    recovery = doc.recovery_path()
    doc.push(0, AddBoxes(doc, 0, [Box(doc.project.new_box_id(), 3, 5, 5, 25, 25)]))
    assert doc._autosave.isActive()                           # an autosave is pending
    slow = SlowWriter(document.atomic_write_text)
    monkeypatch.setattr(document, "atomic_write_text", slow)
    doc._autosave.stop()
    doc._on_autosave_timer()                                  # ... and one is being written
    assert slow.entered.wait(5)
    win.dialogs.save_answer = "discard"
    threading.Timer(0.2, slow.go.set).start()
    win.close()
    assert not recovery.exists()
    qtbot.wait(300)
    assert not recovery.exists() and slow.calls == 1


def test_close_after_saving_keeps_every_edit(qtbot, coco_path, threaded, monkeypatch):
    win = MainWindow(open_path=str(coco_path), dialogs=FakeDialogs(), restore_layout=False)
    qtbot.addWidget(win)
    doc = win.doc
    slow = SlowWriter(document.atomic_write_text)
    monkeypatch.setattr(document, "atomic_write_text", slow)
    doc.push(0, AddBoxes(doc, 0, [Box(doc.project.new_box_id(), 3, 5, 5, 25, 25)]))
    doc._autosave.stop()
    doc._on_autosave_timer()
    assert slow.entered.wait(5)
    doc.push(0, AddBoxes(doc, 0, [Box(doc.project.new_box_id(), 3, 30, 30, 40, 40)]))   # after the snapshot
    win.dialogs.save_answer = "save"
    threading.Timer(0.2, slow.go.set).start()
    win.close()
    assert len(json.loads(coco_path.read_text())["annotations"]) == 5
    assert not doc.recovery_path().exists()


def test_the_collector_and_the_switch_interval_come_back_after_the_jobs(qtbot, docs, coco_path, threaded,
                                                                        monkeypatch):
    """Held off while a job lives (GUI stalls), put back when the last one is done or dropped."""
    import gc
    import sys
    interval = sys.getswitchinterval()
    doc = edited(docs, coco_path)
    slow = SlowWriter(document.atomic_write_text)
    monkeypatch.setattr(document, "atomic_write_text", slow)
    doc._on_autosave_timer()
    assert slow.entered.wait(5)
    assert not gc.isenabled() and sys.getswitchinterval() < interval
    doc._on_autosave_timer()                                  # waiting ...
    doc._on_autosave_timer()                                  # ... replaced
    threading.Timer(0.2, slow.go.set).start()
    doc.discard()                                             # the running one is waited for, the waiting one dropped
    qtbot.waitUntil(gc.isenabled, timeout=3000)               # the worker lets go as it ends
    assert sys.getswitchinterval() == interval
    assert slow.calls == 1 and not doc.recovery_path().exists()
