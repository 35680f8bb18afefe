"""Two windows, or another program, on one file: a save never overwrites what someone else
saved without asking (and the answer acts), a live window's recovery file is neither offered
to another window nor deleted by it, the lock file says who else has the project open (a dead
process's entry is taken over), and the file watcher notices a change under the window."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pytest
from PySide6.QtCore import QCoreApplication, QEvent

from app.annotate import document
from app.annotate.commands import AddBoxes
from app.annotate.document import HOST, lock_holders, pending_recovery, recovery_path_for
from app.dialogs import ConsoleDialogs
from app.main_window import MainWindow
from detengine.data.project import AnnotationProject, Box
from tests.app.projects import FakeDialogs, make_coco_project


@pytest.fixture
def coco_path(tmp_path):
    return make_coco_project(tmp_path / "project")


@pytest.fixture
def open_window(qtbot):
    made = []

    def make(path, dialogs=None) -> MainWindow:
        win = MainWindow(open_path=str(path), dialogs=dialogs or FakeDialogs(), restore_layout=False)
        qtbot.addWidget(win)
        made.append(win)
        return win
    yield make
    for win in made:                                         # closed (panels shut down), edits dropped
        win.dialogs = FakeDialogs()
        win.close()


def add_box(win: MainWindow, image: int = 0, x: float = 5) -> int:
    """A new box, its id unique across windows (each window numbers its own new boxes)."""
    doc = win.doc
    box = Box(doc.project.new_box_id() + int(x) * 100, 3, x, x, x + 20, x + 20)
    doc.push(image, AddBoxes(doc, image, [box]))
    doc._autosave.stop()
    return box.id


def saved_ids(path) -> set[int]:
    return {a["id"] for a in json.loads(path.read_text())["annotations"]}


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def notices(dialogs: FakeDialogs) -> list[str]:
    return [c[2] for c in dialogs.calls if c[0] == "notice"]


@pytest.fixture
def two(open_window, coco_path):
    """Window A saved a new box; window B, opened before that save, has an edit of its own."""
    a, b = open_window(coco_path), open_window(coco_path)
    a_box, b_box = add_box(a, x=5), add_box(b, x=50)
    assert a.save()
    after_a = coco_path.read_bytes()
    assert a_box in saved_ids(coco_path)
    return a, b, a_box, b_box, after_a


# --------------------------------------------------------------------------- a save asks


def test_the_second_window_is_told_the_first_has_the_file_open(open_window, coco_path):
    a = open_window(coco_path)
    assert notices(a.dialogs) == []
    b = open_window(coco_path)
    text, = notices(b.dialogs)
    assert f"pid {os.getpid()}" in text and str(coco_path) in text
    assert len(lock_holders(a.doc.lock_path())) == 2
    b.close()
    assert [h["session"] for h in lock_holders(a.doc.lock_path())] == [a.doc.session]


def test_a_save_over_a_file_saved_by_another_window_asks_and_cancel_keeps_both(two, coco_path):
    a, b, a_box, b_box, after_a = two
    b.dialogs.file_changed_answer = "cancel"
    assert not b.save()
    assert ("ask_file_changed", str(coco_path)) in b.dialogs.calls
    assert coco_path.read_bytes() == after_a                 # A's save is still there
    assert b.doc.is_dirty() and any(x.id == b_box for x in b.doc.project.images[0].boxes)
    assert "ask_file_changed" not in a.dialogs.names()


def test_overwrite_writes_this_window_s_edits(two, coco_path):
    a, b, a_box, b_box, after_a = two
    b.dialogs.file_changed_answer = "overwrite"
    assert b.save()
    ids = saved_ids(coco_path)
    assert b_box in ids and a_box not in ids and not b.doc.is_dirty()
    from detengine.io import list_backups
    assert list_backups(coco_path)[-1].read_bytes() == after_a          # A's version kept as a .bak
    assert b.doc.disk_state() == "same"
    b.dialogs.calls.clear()
    add_box(b, x=70)
    assert b.save() and "ask_file_changed" not in b.dialogs.names()    # its own save is no change


def test_reload_reads_the_other_window_s_save(two, coco_path):
    a, b, a_box, b_box, after_a = two
    b.dialogs.file_changed_answer = "reload"
    assert not b.save()
    assert coco_path.read_bytes() == after_a
    ids = {x.id for im in b.doc.project.images for x in im.boxes}
    assert a_box in ids and b_box not in ids and not b.doc.is_dirty()
    assert not b.doc.recovery_path().exists()


def test_save_as_writes_elsewhere(two, coco_path, tmp_path):
    a, b, a_box, b_box, after_a = two
    b.dialogs.file_changed_answer = "save_as"
    b.dialogs.save_path = str(tmp_path / "mine.json")
    assert b.save()
    assert coco_path.read_bytes() == after_a and b_box in saved_ids(tmp_path / "mine.json")


def test_a_touched_file_is_not_a_change(open_window, coco_path):
    win = open_window(coco_path)
    add_box(win)
    later = time.time() + 60
    os.utime(coco_path, (later, later))
    assert win.doc.disk_state() == "same"
    assert win.save() and "ask_file_changed" not in win.dialogs.names()


def test_console_dialogs_refuse_to_overwrite_and_say_so(open_window, coco_path):
    stream = io.StringIO()
    win = open_window(coco_path, ConsoleDialogs(stream))
    add_box(win)
    other = AnnotationProject.open(coco_path)
    other.rename_category(3, "kitten")
    other.save()
    changed = coco_path.read_bytes()
    assert not win.save()
    assert coco_path.read_bytes() == changed and win.doc.is_dirty()
    assert "not overwritten" in stream.getvalue()


# --------------------------------------------------------------------------- recovery files per session


def test_a_live_window_s_recovery_file_is_not_offered_nor_deleted(open_window, coco_path):
    a = open_window(coco_path)
    add_box(a)
    a_recovery = a.doc.write_recovery()
    assert a_recovery.is_file() and str(os.getpid()) in a_recovery.name
    b = open_window(coco_path)
    assert "ask_recover" not in b.dialogs.names()
    assert pending_recovery(AnnotationProject.open(coco_path)) is None
    add_box(b, x=60)
    assert b.doc.write_recovery() != a_recovery
    assert b.save()                                          # A has not saved: no conflict
    assert a_recovery.is_file()
    b.close()                                                # and closing B leaves it alone too
    assert a_recovery.is_file() and a.doc.is_dirty()


def test_another_live_process_s_recovery_file_is_kept_a_dead_one_s_offered(open_window, coco_path):
    project = AnnotationProject.open(coco_path)
    data = project.to_coco(coco_path, for_file=True)
    data["annotations"].append({"id": 99, "image_id": 1, "category_id": 3, "bbox": [1, 1, 9, 9]})

    def write(pid: int, token: str, saved_at: float):
        session = f"{pid}.{token}"
        meta = {"project_path": str(coco_path), "image_root": str(project.image_root), "kind": "coco",
                "saved_at": saved_at, "dirty_images": [0], "source_sha1": project.source_digest,
                "pid": pid, "host": HOST, "session": session}
        path = recovery_path_for(project, session)
        path.write_text(json.dumps({**data, document.RECOVERY_KEY: meta}))
        return path

    live = write(os.getppid(), "aaaaaaaa", time.time())     # the process that started pytest: running
    win = open_window(coco_path)
    assert "ask_recover" not in win.dialogs.names()
    win.dialogs.save_answer = "discard"
    win.close()
    assert live.is_file()

    dead = write(dead_pid(), "bbbbbbbb", time.time() - 60)
    dialogs = FakeDialogs()
    win2 = open_window(coco_path, dialogs)
    assert "ask_recover" in dialogs.names()
    assert any(x.id == 99 for x in win2.doc.project.images[0].boxes) and win2.doc.is_dirty()
    assert not dead.exists() and live.is_file()             # the dead one is this window's now
    assert win2.save()
    assert live.is_file() and not win2.doc.recovery_path().exists()


def test_a_crashed_window_s_recovery_file_is_offered(open_window, coco_path):
    a = open_window(coco_path)
    add_box(a)
    recovery = a.doc.write_recovery()
    a.doc = None                                             # "crash": the window drops it without asking
    dialogs = FakeDialogs()
    b = open_window(coco_path, dialogs)
    assert "ask_recover" in dialogs.names() and b.doc.is_dirty()
    assert not recovery.exists()                             # adopted: B's own recovery file now


# --------------------------------------------------------------------------- the lock file


def write_lock(project_path, holders) -> os.PathLike:
    path = document.lock_path_for(AnnotationProject.open(project_path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"project": str(project_path), "holders": holders}))
    return path


def test_a_lock_of_another_live_process_is_said(open_window, coco_path):
    other = {"pid": os.getppid(), "host": HOST, "session": f"{os.getppid()}.cccccccc", "since": time.time()}
    lock = write_lock(coco_path, [other])
    win = open_window(coco_path)
    text, = notices(win.dialogs)
    assert f"pid {os.getppid()}" in text
    sessions = [h["session"] for h in json.loads(lock.read_text())["holders"]]
    assert sessions == [other["session"], win.doc.session]
    win.close()
    assert [h["session"] for h in json.loads(lock.read_text())["holders"]] == [other["session"]]


def test_a_stale_lock_of_a_dead_process_is_taken_over(open_window, coco_path):
    pid = dead_pid()
    lock = write_lock(coco_path, [{"pid": pid, "host": HOST, "session": f"{pid}.dddddddd", "since": 0}])
    win = open_window(coco_path)
    assert notices(win.dialogs) == []
    holders = json.loads(lock.read_text())["holders"]
    assert [h["session"] for h in holders] == [win.doc.session] and holders[0]["pid"] == os.getpid()
    win.close()
    assert not lock.exists()


# --------------------------------------------------------------------------- the file watcher


def write_outside(path, new_name: str) -> None:
    """Another program rewrites the file (a new class name)."""
    data = json.loads(path.read_text())
    data["categories"][0]["name"] = new_name
    tmp = path.with_name("other-program.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def test_the_watcher_reloads_a_clean_window(qtbot, open_window, coco_path, monkeypatch):
    monkeypatch.setattr(document, "WATCH_DELAY_MS", 50)
    win = open_window(coco_path)
    write_outside(coco_path, "kitten")
    qtbot.waitUntil(lambda: bool(notices(win.dialogs)), timeout=5000)
    assert "reloaded" in notices(win.dialogs)[0]
    assert win.doc.project.category(3).name == "kitten" and not win.doc.is_dirty()
    assert "reloaded" in win.statusBar().currentMessage()
    write_outside(coco_path, "tiger")                        # the new document watches too
    qtbot.waitUntil(lambda: win.doc.project.category(3).name == "tiger", timeout=5000)


def test_the_watcher_tells_a_window_with_edits_and_keeps_them(qtbot, open_window, coco_path):
    win = open_window(coco_path)
    box = add_box(win)
    write_outside(coco_path, "kitten")
    qtbot.waitUntil(lambda: bool(notices(win.dialogs)), timeout=5000)
    assert "unsaved edits are kept" in notices(win.dialogs)[0]
    assert "changed by another" in win.statusBar().currentMessage()
    assert win.doc.is_dirty() and any(x.id == box for x in win.doc.project.images[0].boxes)
    assert win.doc.project.category(3).name == "cat"


def test_the_watcher_ignores_the_window_s_own_save(qtbot, open_window, coco_path):
    win = open_window(coco_path)
    add_box(win)
    assert win.save()
    qtbot.wait(document.WATCH_DELAY_MS + 400)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert notices(win.dialogs) == [] and win.doc.check_disk() == "same"


# --------------------------------------------------------------------------- the real dialogs


def test_the_real_notice_does_not_block_and_the_question_maps_its_buttons(qtbot):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

    from app.dialogs import Dialogs
    parent = QWidget()
    qtbot.addWidget(parent)
    dialogs = Dialogs(parent)
    dialogs.notice("The file changed on disk", "text")       # returns at once
    box = parent.findChild(QMessageBox)
    assert box.isVisible() and not box.isModal()
    box.close()
    for label, answer in (("Reload", "reload"), ("Overwrite", "overwrite"), ("Save As…", "save_as"),
                          ("Cancel", "cancel")):
        def click(label=label):
            asked = QApplication.activeModalWidget()
            next(b for b in asked.buttons() if b.text().replace("&", "") == label).click()
        QTimer.singleShot(50, click)
        assert dialogs.ask_file_changed("/tmp/x.json") == answer
