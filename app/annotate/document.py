"""The open project as the window sees it: the Qt-free :class:`AnnotationProject`, one undo
stack per image (in a ``QUndoGroup``, so undo follows the shown image and survives switching),
what is unsaved, and the autosave / recovery file.

Saving rules: Ctrl+S writes the project file atomically (the replaced file kept as a versioned
``.bak``, a read-only file refused, a symlink written through: :meth:`AnnotationProject.save`).
A few seconds after the last edit the whole project is written (atomically) to a recovery file
in DetScope's home, never over the user's file; a clean save or an explicit discard deletes it.
If DetScope dies with unsaved edits, the recovery file is still there at the next start and the
window offers it, also when the project file changed since (then saying so, with how the
recovered boxes differ from the file's). An autosave that fails (full disk) leaves
``autosave_problem`` set, and ``autosaveProblemChanged`` tells, until an autosave succeeds.

A big project (:data:`ASYNC_AUTOSAVE_MIN_RECORDS` images + boxes or more) is autosaved off the
GUI thread: the GUI thread takes a cheap snapshot (:meth:`AnnotationProject.snapshot`), a worker
thread makes the JSON (in pieces, so the GUI keeps running) and writes it; the outcome comes
back to the GUI thread as a queued signal. One write at a time: a newer autosave waits for the
running one and replaces any older one still waiting. Save, discard and release cancel what
is waiting and wait for a write in progress, so no recovery file appears after them. A small
project is written at once on the GUI thread (a few milliseconds).

Two windows (or another program) on one file: each document is a *session* (``PID.TOKEN``).
Its recovery file is named after the session (``DIGEST.PID.TOKEN.json``) and is offered to
another window only once its owner is gone (:func:`session_alive`: another process that no
longer runs, or a window of this process that dropped it), never while the owner is live. A
window that opens a project joins the project's lock file (``locks/DIGEST.lock`` in DetScope's
home: pid, host and session of every window that has it open, :meth:`Document.claim`) and learns
which other live windows have it; holders whose process is dead are dropped (a stale lock is
taken over). The project file's state (mtime, size, sha1) is remembered at open and at each
save: :meth:`Document.disk_state` says whether someone else changed it since (the window asks
before overwriting), and a ``QFileSystemWatcher`` emits ``changedOnDisk`` when that happens
under the window.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal
from PySide6.QtGui import QUndoGroup, QUndoStack

from app.paths import home_dir, recovery_dir
from detengine.api import atomic_write_text, pid_alive

if TYPE_CHECKING:                # detengine.data imports torch: not before the window shows (app/main.py)
    from detengine.api import AnnotationProject, Box, Category

__all__ = ["Document", "SaveJob", "RECOVERY_KEY", "AUTOSAVE_DELAY_MS", "PendingRecovery", "pending_recovery", "load_recovery",
           "session_alive", "lock_path_for", "lock_holders", "HOST", "holder_text"]

RECOVERY_KEY = "detscope_recovery"
AUTOSAVE_DELAY_MS = 3000
AUTOSAVE_MAX_WAIT_S = 30.0      # steady editing still autosaves at least this often
WATCH_DELAY_MS = 300            # a change on disk is looked at this long after the last event (writes settle)
ASYNC_AUTOSAVE_MIN_RECORDS = 5000   # images + boxes from which the autosave runs in a worker thread
HOST = socket.gethostname()

# the sessions of this process that a window holds: session -> "is it still held?"
_LIVE_SESSIONS: dict[str, Callable[[], bool]] = {}


def session_alive(pid, host: str | None, session: str | None) -> bool:
    """Whether the session that wrote a lock entry or a recovery file is still running: another
    process of this machine that runs (:func:`pid_alive`; a reused pid counts as running), a
    window of this process that still holds it, or another machine's (cannot be asked: assumed
    running)."""
    if host and host != HOST:
        return True
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid == os.getpid():
        check = _LIVE_SESSIONS.get(session or "")
        return check is not None and bool(check())
    return pid_alive(pid)


class Document(QObject):
    """Signals: ``boxesChanged(image)`` after any box edit of that image, ``categoriesChanged()``,
    ``dirtyChanged(image)`` when an image's unsaved mark may have changed (-1: the project's),
    ``autosaved(path)`` after a recovery file was written, ``autosaveFailed(text)`` after each
    failed autosave, ``autosaveProblemChanged(text)`` when :attr:`autosave_problem` changes
    (the text of the last failure, ``""`` once an autosave or a save succeeded): a window shows
    it for as long as it is not empty."""

    boxesChanged = Signal(int)
    categoriesChanged = Signal()
    dirtyChanged = Signal(int)
    autosaved = Signal(str)
    autosaveFailed = Signal(str)
    autosaveProblemChanged = Signal(str)
    changedOnDisk = Signal(str)
    saveFinished = Signal(object)       # a background save ended: its SaveJob (``target`` or ``error``)

    def __init__(self, project: AnnotationProject, parent: QObject | None = None):
        super().__init__(parent)
        self.project = project
        self.session = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._claimed = False
        self._adopted: list[Path] = []          # recovery files taken over that could not be renamed
        self._disk_stat: tuple[int, int] | None = None
        self._disk_sha1: str | None = None
        self._reported: tuple | None = None      # the disk state last reported by changedOnDisk
        self.remember_disk(project.source_digest)
        self.watcher = QFileSystemWatcher(self)
        self.watcher.fileChanged.connect(self._on_watch_event)
        self.watcher.directoryChanged.connect(self._on_watch_event)
        self._watch_timer = QTimer(self)
        self._watch_timer.setSingleShot(True)
        self._watch_timer.setInterval(WATCH_DELAY_MS)
        self._watch_timer.timeout.connect(self.check_disk)
        self._watch()
        self.undo_group = QUndoGroup(self)
        self._stacks: dict[int, QUndoStack] = {}
        self._touched: set[int] = set()          # images changed outside an undo stack (class merges, ...)
        self._project_dirty = False              # categories or sizes changed
        self._autosave = QTimer(self)
        self._autosave.setSingleShot(True)
        self._autosave.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave.timeout.connect(self._on_autosave_timer)
        self._pending_since: float | None = None
        self.autosave_problem = ""               # the last autosave failure, "" when the unsaved edits are safe
        self._job: _AutosaveJob | None = None    # the autosave being written in the worker thread
        self._next_job: _AutosaveJob | None = None   # the newest autosave waiting for it
        self._write_lock = threading.Lock()      # held by the worker while it writes the recovery file
        self.save_job: SaveJob | None = None     # the background save running now (start_save)
        self._save_again: object = None          # a Save asked for while one runs: its path (or True)
        self._edits_since_snapshot = _EditLog()  # what changed while a background save was writing
        _bridge().finished.connect(self._on_job_finished)

    # ------------------------------------------------------------------ undo stacks

    def stack(self, image: int) -> QUndoStack:
        if image not in self._stacks:
            stack = QUndoStack(self)
            stack.setObjectName(str(image))
            stack.cleanChanged.connect(self._on_stack_clean_changed)
            stack.indexChanged.connect(self._on_stack_index_changed)
            self.undo_group.addStack(stack)
            self._stacks[image] = stack
        return self._stacks[image]

    def _on_stack_clean_changed(self, _clean: bool) -> None:
        self._on_change(int(self.sender().objectName()))

    def _on_stack_index_changed(self, _index: int) -> None:
        self._schedule_autosave()

    def _schedule_autosave(self) -> None:
        """Debounce: write a few seconds after the last edit, but never let steady editing
        postpone the write by more than AUTOSAVE_MAX_WAIT_S."""
        now = time.monotonic()
        if not self._autosave.isActive():
            self._pending_since = now
            self._autosave.start(AUTOSAVE_DELAY_MS)
        elif now - (self._pending_since or now) < AUTOSAVE_MAX_WAIT_S:
            self._autosave.start(AUTOSAVE_DELAY_MS)

    def _on_autosave_timer(self) -> None:
        self._pending_since = None
        if self.is_dirty() and len(self.project.images) + self.project.num_boxes >= ASYNC_AUTOSAVE_MIN_RECORDS:
            self._start_job(self._make_job())
            return
        try:
            self.write_recovery()
        except Exception as exc:                 # a full disk, a read-only home: say so, try again later
            self._autosave_failed(exc)

    def _autosave_failed(self, exc: BaseException) -> None:
        text = f"autosave failed, unsaved edits are not protected: {exc}"
        self._set_autosave_problem(text)
        self.autosaveFailed.emit(text)
        self._autosave.start(AUTOSAVE_DELAY_MS * 5)

    # ------------------------------------------------------------------ autosave in a worker thread

    def _recovery_meta(self) -> dict:
        return {"project_path": str(self.project.path) if self.project.path else None,
                "image_root": str(self.project.image_root), "kind": self.project.kind,
                "saved_at": time.time(), "dirty_images": self.dirty_images(),
                "source_sha1": self.project.source_digest,
                "pid": os.getpid(), "host": HOST, "session": self.session}

    def _make_job(self) -> _AutosaveJob:
        """The GUI thread's part: the project as it is now (a snapshot) and the recovery meta.
        The garbage collector is held off until the job is done (:func:`_hold_gc`)."""
        return _AutosaveJob(self.recovery_path(), self._held_snapshot(), self._recovery_meta(), self._write_lock)

    def _held_snapshot(self) -> AnnotationProject:
        """The project's snapshot, with the garbage collector held off (:func:`_hold_gc`) until the
        job that writes it releases it."""
        _hold_gc()
        try:
            return self.project.snapshot()
        except BaseException:
            _release_gc()
            raise

    def _start_job(self, job: _AutosaveJob) -> None:
        if self._job is not None:                # one write at a time; the newest waiting one wins
            if self._next_job is not None:
                self._next_job.drop()
            self._next_job = job
            return
        self._job = job
        threading.Thread(target=job.run, name="detscope-autosave", daemon=True).start()

    def _on_job_finished(self, job: object) -> None:
        if isinstance(job, SaveJob):
            self._on_save_finished(job)
            return
        if job is not self._job:                 # another document's, or one cancelled since
            return
        self._job = None
        if job.error is not None:
            self._autosave_failed(job.error)
        elif job.written:
            self._set_autosave_problem("")
            self.autosaved.emit(str(job.path))
        following, self._next_job = self._next_job, None
        if following is not None:
            self._start_job(following)

    def _cancel_autosave(self) -> None:
        """Drop the waiting autosave and wait for a write in progress: after this, the worker
        writes no recovery file for this document (a job still serialising stops before it writes)."""
        if self._next_job is not None:
            self._next_job.drop()
            self._next_job = None
        job, self._job = self._job, None
        if job is not None:
            job.cancelled = True
            with self._write_lock:
                pass

    def flush_autosave(self, timeout: float | None = None) -> bool:
        """Wait (blocking) until no autosave is running or waiting, handling the outcomes;
        False when ``timeout`` seconds passed first. Tests and benchmarks use it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._job is not None:
            job = self._job
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not job.finished.wait(left):
                return False
            self._on_job_finished(job)
        return True

    def _set_autosave_problem(self, text: str) -> None:
        if text != self.autosave_problem:
            self.autosave_problem = text
            self.autosaveProblemChanged.emit(text)

    def activate(self, image: int) -> None:
        self.undo_group.setActiveStack(self.stack(image))

    def push(self, image: int, command) -> None:
        self.stack(image).push(command)

    # ------------------------------------------------------------------ unsaved state

    def is_image_dirty(self, image: int) -> bool:
        stack = self._stacks.get(image)
        return image in self._touched or (stack is not None and not stack.isClean())

    def dirty_images(self) -> list[int]:
        return sorted(i for i in set(self._stacks) | self._touched if self.is_image_dirty(i))

    def is_dirty(self) -> bool:
        return self._project_dirty or bool(self.dirty_images())

    def mark_project_dirty(self, images=()) -> None:
        self._project_dirty = True
        self._touched.update(images)
        self._edits_since_snapshot.note(images)
        self._on_change(-1)
        for i in images:
            self.dirtyChanged.emit(i)

    def _on_change(self, image: int) -> None:
        self.dirtyChanged.emit(image)
        self._schedule_autosave()

    # ------------------------------------------------------------------ box primitives (used by commands)

    def insert_boxes(self, image: int, placed: list[tuple[int | None, Box]]) -> None:
        for position, box in placed:
            self.project.insert_box(image, box, position)
        self.boxesChanged.emit(image)

    def remove_boxes(self, image: int, box_ids: list[int]) -> list[tuple[int, Box]]:
        removed = [self.project.remove_box(image, box_id) for box_id in box_ids]
        self.boxesChanged.emit(image)
        return removed

    def replace_boxes(self, image: int, boxes: list[Box]) -> None:
        for box in boxes:
            self.project.replace_box(image, box)
        self.boxesChanged.emit(image)

    # ------------------------------------------------------------------ class manager (not undoable: asked first)

    def add_category(self, name: str) -> Category:
        category = self.project.add_category(name)
        self.mark_project_dirty()
        self.categoriesChanged.emit()
        return category

    def rename_category(self, cat_id: int, name: str) -> None:
        self.project.rename_category(cat_id, name)
        self.mark_project_dirty()
        self.categoriesChanged.emit()

    def merge_categories(self, source_id: int, target_id: int) -> list[int]:
        changed = self.project.merge_categories(source_id, target_id)
        self._after_class_edit(changed)
        return changed

    def delete_category(self, cat_id: int, reassign_to: int | None = None) -> list[int]:
        changed = self.project.delete_category(cat_id, reassign_to=reassign_to)
        self._after_class_edit(changed)
        return changed

    def _after_class_edit(self, changed: list[int]) -> None:
        """A merge or delete rewrites boxes outside the undo stacks, and any image's history may
        hold boxes of the class that is gone: every undo history is cleared (the dialog says
        so), images whose history held edits stay marked unsaved."""
        unsaved = [i for i, stack in self._stacks.items() if not stack.isClean()]
        self._touched.update(unsaved)
        for stack in self._stacks.values():
            stack.clear()
        self.mark_project_dirty(sorted(set(changed) | set(unsaved)))
        self.categoriesChanged.emit()
        for image in changed:
            self.boxesChanged.emit(image)

    # ------------------------------------------------------------------ saving

    def save(self, path=None) -> Path:
        """Save the project now, on this thread (see :meth:`AnnotationProject.save`: versioned
        backup, read-only refused with :class:`~detengine.io.ReadOnlyFileError`, symlink written
        through). A background save still running is waited for first."""
        self.wait_for_save()
        old_recovery = self.recovery_path()          # keyed by the old path: Save As must remove it too
        old_lock = lock_path_for(self.project)
        self._cancel_autosave()
        try:
            target = self.project.save(path)
        except BaseException:
            self._owe_autosave()
            raise
        marks = _SaveMarks(self)
        self._after_save(old_recovery, old_lock, marks)
        return target

    def _owe_autosave(self) -> None:
        if self.is_dirty() and not self._autosave.isActive():    # the cancelled autosave is owed
            self._schedule_autosave()

    def _after_save(self, old_recovery: Path, old_lock: Path, marks: "_SaveMarks") -> None:
        """The file now holds the project as ``marks`` saw it: what was not edited since is
        clean, what was stays unsaved (and keeps its recovery file)."""
        self.remember_disk(self.project.source_digest)
        if lock_path_for(self.project) != old_lock and self._claimed:     # Save As: the lock moves along
            _remove_holder(old_lock, self.session)
            self._join_lock()
        self._watch()
        since = self._edits_since_snapshot
        for image, stack in self._stacks.items():
            if marks.indexes.get(image, 0) == stack.index() and image not in since.images:
                stack.setClean()
            elif image in marks.indexes:
                stack.resetClean()                   # edited since: unsaved until the next save, undo or not
        touched, self._touched = self._touched, set(since.images)
        self._project_dirty = since.project
        if self.is_dirty():                          # edits made while the file was written
            if old_recovery != self.recovery_path():
                old_recovery.unlink(missing_ok=True)
            self._schedule_autosave()
        else:
            old_recovery.unlink(missing_ok=True)
            self._autosave.stop()
            self.discard_recovery()
            self._set_autosave_problem("")
        for image in touched:
            self.dirtyChanged.emit(image)
        self.dirtyChanged.emit(-1)

    # ------------------------------------------------------------------ saving in the background

    def start_save(self, path=None) -> "SaveJob":
        """Save in a worker thread while the window stays usable (what Ctrl+S does for a big
        project): a snapshot is taken now and written as :meth:`save` writes; ``saveFinished``
        brings the job back (``target`` set, or ``error``). Edits made meanwhile are not in the
        file and stay unsaved. A Save asked for while one runs is done when it ends."""
        if self.save_job is not None:
            self._save_again = path if path is not None else True
            return self.save_job
        old_recovery, old_lock = self.recovery_path(), lock_path_for(self.project)
        self._cancel_autosave()
        self._autosave.stop()
        marks = _SaveMarks(self)
        self.save_job = job = SaveJob(path, self._held_snapshot(), marks, old_recovery, old_lock)
        threading.Thread(target=job.run, name="detscope-save", daemon=True).start()
        return job

    def _on_save_finished(self, job: "SaveJob") -> None:
        if job is not self.save_job:
            return
        self.save_job = None
        if job.error is None:
            saved = job.saved
            self.project.path, self.project.kind, self.project.source_digest = saved
            self._after_save(job.old_recovery, job.old_lock, job.marks)
        else:
            self._owe_autosave()
        self.saveFinished.emit(job)
        again, self._save_again = self._save_again, None
        if again is not None and job.error is None and self.is_dirty():
            self.start_save(None if again is True else again)

    def wait_for_save(self, timeout: float | None = None) -> bool:
        """Block until the background save (if any) has ended and been handled; False when
        ``timeout`` seconds passed first. Closing, reloading and a save on this thread use it."""
        job = self.save_job
        if job is None:
            return True
        if not job.finished.wait(timeout):
            return False
        self._save_again = None
        self._on_save_finished(job)
        return True

    def discard(self) -> None:
        """The user threw the unsaved edits away: no more autosaves, no recovery file."""
        self._autosave.stop()
        self._cancel_autosave()
        self.discard_recovery()
        self._set_autosave_problem("")

    def recovery_path(self) -> Path:
        return recovery_path_for(self.project, self.session)

    def adopt_recovery(self, path) -> None:
        """This session takes over a dead session's recovery file (the edits it recovered): the
        file becomes this session's, so it is never offered again while this window lives, and
        goes with this window's save or discard."""
        path = Path(path)
        if path == self.recovery_path():
            return
        try:
            os.replace(path, self.recovery_path())
        except OSError:
            self._adopted.append(path)

    # ------------------------------------------------------------------ the file on disk, other windows

    def remember_disk(self, sha1: str | None = None) -> None:
        """The project file as it is now is the one this window read or wrote (``sha1``: its
        content's digest, read from the file when not given)."""
        path = self._file()
        self._disk_stat = _stat(path) if path is not None else None
        if sha1 is None and self._disk_stat is not None:
            sha1 = _sha1_of(path)
        self._disk_sha1 = sha1 if self._disk_stat is not None else None
        self._reported = None

    def _file(self) -> Path | None:
        path = self.project.path
        return path if path is not None and self.project.kind == "coco" else None

    def disk_state(self) -> str:
        """``"same"`` when the project file is what this window last read or wrote (a new date
        alone, as after ``touch``, counts as the same), ``"changed"`` when another window or
        program wrote it since, ``"missing"`` when it is gone (saving writes it again)."""
        path = self._file()
        if path is None:
            return "same"
        st = _stat(path)
        if st is None:
            return "missing" if self._disk_stat is not None else "same"
        if st == self._disk_stat:
            return "same"
        sha1 = _sha1_of(path)
        if sha1 is not None and sha1 == self._disk_sha1:
            self._disk_stat = st                     # touched: the same content
            return "same"
        return "changed"

    def _watch(self) -> None:
        """Watch the project file and its folder (an atomic replace by another program swaps the
        file, which a watch on the file alone would lose)."""
        watched = self.watcher.files() + self.watcher.directories()
        if watched:
            self.watcher.removePaths(watched)
        path = self._file()
        if path is None:
            return
        for p in (path, path.parent):
            if p.exists():
                self.watcher.addPath(str(p))

    def _on_watch_event(self, _path: str) -> None:
        self._watch_timer.start()

    def check_disk(self) -> str:
        """Look at the project file now; emit ``changedOnDisk(state)`` once per new outside
        change. Returns :meth:`disk_state`; while a background save writes the file, ``"same"``
        (its end looks again)."""
        if self.save_job is not None:
            return "same"
        path = self._file()
        if path is not None and path.exists() and str(path) not in self.watcher.files():
            self.watcher.addPath(str(path))
        state = self.disk_state()
        if state == "same":
            self._reported = None
            return state
        seen = (state, _stat(path))
        if seen != self._reported:
            self._reported = seen
            self.changedOnDisk.emit(state)
        return state

    def lock_path(self) -> Path:
        return lock_path_for(self.project)

    def claim(self, alive: Callable[[], bool]) -> list[dict]:
        """A window holds this document: its session counts as running while ``alive()``
        says so, and it joins the project's lock file. Returns the other windows (live lock
        entries: ``pid``, ``host``, ``session``, ``since``) that have the project open; entries
        of dead processes are dropped."""
        _LIVE_SESSIONS[self.session] = alive
        self._claimed = True
        return self._join_lock()

    def _join_lock(self) -> list[dict]:
        path = self.lock_path()
        others = [h for h in lock_holders(path) if h.get("session") != self.session]
        me = {"pid": os.getpid(), "host": HOST, "session": self.session, "since": time.time()}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps({"project": _project_key(self.project), "holders": [*others, me]}))
        except OSError:                          # a read-only home: the window works, unannounced
            pass
        return others

    def release(self) -> None:
        """The window lets go of this document (closed, or another project opened): no more
        autosaves or watching, its session no longer counts as running, it leaves the lock. An
        autosave being written is waited for (the recovery file holds the edits it snapshot);
        none is written after this."""
        self.wait_for_save()
        self._autosave.stop()
        self._cancel_autosave()
        self._watch_timer.stop()
        watched = self.watcher.files() + self.watcher.directories()
        if watched:
            self.watcher.removePaths(watched)
        _LIVE_SESSIONS.pop(self.session, None)
        if self._claimed:
            self._claimed = False
            _remove_holder(self.lock_path(), self.session)

    def write_recovery(self) -> Path | None:
        """Write the whole project to the recovery file now, on this thread (atomic); removes it
        when nothing is unsaved. An autosave running or waiting in the worker is dropped first."""
        self._cancel_autosave()
        return self._write_recovery_now()

    def _write_recovery_now(self) -> Path | None:
        if not self.is_dirty():
            self.discard_recovery()
            self._set_autosave_problem("")
            return None
        path = self.recovery_path()
        atomic_write_text(path, self.project.to_coco_text(path, for_file=True, add={RECOVERY_KEY: self._recovery_meta()}))
        self._set_autosave_problem("")
        self.autosaved.emit(str(path))
        return path

    def discard_recovery(self) -> None:
        self.recovery_path().unlink(missing_ok=True)
        for path in self._adopted:
            path.unlink(missing_ok=True)
        self._adopted.clear()


class _AutosaveJob:
    """One autosave: made on the GUI thread (``snapshot``: the project's copy), serialised and
    written by :meth:`run` in a worker thread, which then posts itself back through
    :func:`_bridge` (a queued signal: handled on the GUI thread)."""

    def __init__(self, path: Path, snapshot: AnnotationProject, meta: dict, lock: threading.Lock):
        self.path, self.snapshot, self.meta, self.lock = path, snapshot, meta, lock
        self.cancelled = False
        self.written = False
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._gc_held = True                     # _make_job held the collector off for this job

    def drop(self) -> None:
        """Never to run (replaced by a newer one, or cancelled while waiting): let go of it."""
        self.snapshot = None
        self._release_gc()

    def _release_gc(self) -> None:
        if self._gc_held:
            self._gc_held = False
            _release_gc()

    def run(self) -> None:
        try:
            if not self.cancelled:
                text = self.snapshot.to_coco_text(self.path, for_file=True, add={RECOVERY_KEY: self.meta})
                with self.lock:
                    if not self.cancelled:
                        atomic_write_text(self.path, text)
                        self.written = True
        except Exception as exc:                 # a full disk, a read-only home: the GUI thread says so
            self.error = exc
        finally:
            self.snapshot = None                 # freed before the collector comes back
            self._release_gc()
            self.finished.set()
            bridge = _BRIDGE[0] if _BRIDGE else None
            if bridge is not None and shiboken6.isValid(bridge):
                bridge.finished.emit(self)


class _EditLog:
    """What was edited outside the undo stacks (class edits, sizes) since the last snapshot a
    save took: those images and the project stay unsaved after that save."""

    def __init__(self):
        self.images: set[int] = set()
        self.project = False

    def note(self, images) -> None:
        self.images.update(images)
        self.project = True


class _SaveMarks:
    """Where each undo stack stood when a save took its snapshot (so that only what was not
    edited since becomes clean); starts a fresh :class:`_EditLog` on the document."""

    def __init__(self, doc: "Document"):
        self.indexes = {image: stack.index() for image, stack in doc._stacks.items()}
        doc._edits_since_snapshot = _EditLog()


class SaveJob:
    """One background save: the snapshot written by :meth:`run` in a worker thread exactly as
    :meth:`AnnotationProject.save` writes the project; posted back through :func:`_bridge`.
    ``target`` is the file written, ``error`` what stopped it (the file is then as it was)."""

    def __init__(self, path, snapshot: AnnotationProject, marks: _SaveMarks, old_recovery: Path, old_lock: Path):
        self.path, self.snapshot, self.marks = path, snapshot, marks
        self.old_recovery, self.old_lock = old_recovery, old_lock
        self.target: Path | None = None
        self.saved: tuple | None = None          # the snapshot's (path, kind, source_digest) after the write
        self.error: BaseException | None = None
        self.images = len(snapshot.images)
        self.boxes = snapshot.num_boxes
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            self.target = self.snapshot.save(self.path)
            self.saved = (self.snapshot.path, self.snapshot.kind, self.snapshot.source_digest)
        except Exception as exc:                 # read-only, a full disk: the GUI thread says so
            self.error = exc
        finally:
            self.snapshot = None
            _release_gc()
            self.finished.set()
            bridge = _BRIDGE[0] if _BRIDGE else None
            if bridge is not None and shiboken6.isValid(bridge):
                bridge.finished.emit(self)


_GC_LOCK = threading.Lock()
_GC_HOLD = {"count": 0, "enabled": False, "interval": 0.005}
AUTOSAVE_SWITCH_INTERVAL_S = 0.0005     # the GIL's switch interval while an autosave job lives


def _hold_gc() -> None:
    """The cyclic garbage collector off while an autosave's snapshot lives: the snapshot (three
    objects per image) and the JSON records (one dict per box) would set off full collections
    over the whole project (0.4-0.5 s at 200,000 boxes, holding the GIL: the GUI stalls). Made
    and freed while it is off, they are never scanned. Nested holds count; the last release
    puts it back as it was.

    Meanwhile the GIL's switch interval is :data:`AUTOSAVE_SWITCH_INTERVAL_S` (Python's 5 ms
    otherwise): each call from Qt into Python (a repaint of the image list makes hundreds) waits
    for the worker to hand over the GIL, up to the interval each time (600 ms stalls at 5 ms)."""
    with _GC_LOCK:
        if _GC_HOLD["count"] == 0:
            _GC_HOLD["enabled"] = gc.isenabled()
            _GC_HOLD["interval"] = sys.getswitchinterval()
            gc.disable()
            sys.setswitchinterval(min(_GC_HOLD["interval"], AUTOSAVE_SWITCH_INTERVAL_S))
        _GC_HOLD["count"] += 1


def _release_gc() -> None:
    with _GC_LOCK:
        _GC_HOLD["count"] -= 1
        if _GC_HOLD["count"] == 0:
            sys.setswitchinterval(_GC_HOLD["interval"])
            if _GC_HOLD["enabled"]:
                gc.enable()


class _Bridge(QObject):
    """Lives on the GUI thread; the worker emits ``finished(job)`` on it (queued to the GUI thread)."""

    finished = Signal(object)


_BRIDGE: list[_Bridge] = []


def _bridge() -> _Bridge:
    if not _BRIDGE or not shiboken6.isValid(_BRIDGE[0]):
        _BRIDGE[:] = [_Bridge()]
    return _BRIDGE[0]


def _stat(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _sha1_of(path) -> str | None:
    digest = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _project_key(project: AnnotationProject) -> str:
    return str(project.path) if project.path is not None else f"{project.kind}:{project.image_root}"


def _digest(project: AnnotationProject) -> str:
    return hashlib.sha1(_project_key(project).encode("utf-8")).hexdigest()[:16]


def recovery_path_for(project: AnnotationProject, session: str | None = None) -> Path:
    """The recovery file of ``project`` written by ``session`` (``PID.TOKEN``); without a
    session, the name an older DetScope used (one file per project, owner unknown)."""
    name = f"{_digest(project)}.{session}.json" if session else f"{_digest(project)}.json"
    return recovery_dir() / name


def _recovery_files(project: AnnotationProject) -> list[Path]:
    digest = _digest(project)
    return sorted(p for p in recovery_dir().glob(f"{digest}*.json")
                  if p.name == f"{digest}.json" or p.name.startswith(f"{digest}."))


def _recovery_owner(path: Path, meta: dict) -> tuple[object, str | None, str | None]:
    """``(pid, host, session)`` of a recovery file: from its meta, else from its name."""
    parts = path.name.split(".")
    session = meta.get("session") or (".".join(parts[1:3]) if len(parts) == 4 else None)
    pid = meta.get("pid") or (parts[1] if len(parts) == 4 else None)
    return pid, meta.get("host"), session


# --------------------------------------------------------------------------- the lock file


def lock_path_for(project: AnnotationProject) -> Path:
    """The lock file of ``project`` in DetScope's home (``locks/DIGEST.lock``)."""
    return home_dir() / "locks" / f"{_digest(project)}.lock"


def lock_holders(path) -> list[dict]:
    """The live entries of a lock file (entries of dead processes are left out)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        holders = [h for h in data.get("holders", []) if isinstance(h, dict)]
    except (OSError, ValueError, AttributeError, TypeError):
        return []
    return [h for h in holders if session_alive(h.get("pid"), h.get("host"), h.get("session"))]


def _remove_holder(path: Path, session: str) -> None:
    rest = [h for h in lock_holders(path) if h.get("session") != session]
    try:
        if rest:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["holders"] = rest
            atomic_write_text(path, json.dumps(data))
        else:
            path.unlink(missing_ok=True)
    except (OSError, ValueError, AttributeError, TypeError):
        pass


def holder_text(holder: dict) -> str:
    """``another DetScope window (pid 123, host h, since 12:03)`` for a lock entry."""
    parts = [f"pid {holder.get('pid')}"]
    if holder.get("host") and holder.get("host") != HOST:
        parts.append(f"on {holder['host']}")
    elif str(holder.get("pid")) == str(os.getpid()):
        parts.append("this process")
    try:
        parts.append("since " + datetime.fromtimestamp(float(holder["since"])).strftime("%H:%M:%S"))
    except (KeyError, TypeError, ValueError):
        pass
    return f"another DetScope window ({', '.join(parts)})"


class PendingRecovery(tuple):
    """What :func:`pending_recovery` found; unpacks as ``(recovery file, time it was written)``.

    ``file_changed``: the project file is no longer what the edits were made on (its content
    differs; ``content_changed`` False when only its date moved, as after ``touch``).
    ``added`` / ``removed`` / ``moved`` / ``relabelled``: how the recovered boxes differ from
    the file's now. :meth:`note` says all that in a sentence for the question to the user."""

    def __new__(cls, path: Path, saved_at: float, *, file_changed: bool = False, content_changed: bool = False,
                file_mtime: float | None = None, added: int = 0, removed: int = 0, moved: int = 0,
                relabelled: int = 0):
        self = super().__new__(cls, (path, saved_at))
        self.path, self.saved_at = path, saved_at
        self.file_changed, self.content_changed, self.file_mtime = file_changed, content_changed, file_mtime
        self.added, self.removed, self.moved, self.relabelled = added, removed, moved, relabelled
        return self

    def diff_text(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.added, "added"), (self.removed, "removed"),
                                              (self.moved, "moved or resized"), (self.relabelled, "relabelled"))
                 if n]
        if not parts:
            return "the recovered boxes are the same as the file's"
        return "compared with the file, the recovered edits have boxes " + ", ".join(parts)

    def note(self) -> str:
        """"" when the file did not change since the autosave, else what changed and what
        recovering would do."""
        if not self.file_changed:
            return ""
        when = datetime.fromtimestamp(self.file_mtime).strftime("%Y-%m-%d %H:%M:%S") if self.file_mtime else "?"
        if self.content_changed:
            head = (f"The project file changed after the autosave (modified {when}); recovering replaces "
                    "its content with the recovered edits when you save (the file is kept as a .bak).")
        else:
            head = f"The project file's date changed after the autosave ({when}) but not its content."
        diff = self.diff_text()
        return f"{head} {diff[0].upper()}{diff[1:]}."


def pending_recovery(project: AnnotationProject) -> PendingRecovery | None:
    """A :class:`PendingRecovery` if an earlier session left unsaved edits of this project,
    else ``None``. It is offered also when the project file changed since (``touch``, a ``git
    checkout``): then ``file_changed`` is set and the counts say how the recovered boxes
    differ from the file's. Only sessions that are gone count (:func:`session_alive`): the
    live autosave of another window is never offered; of several, the newest."""
    found = None
    for candidate in _recovery_files(project):
        try:
            candidate_data = json.loads(candidate.read_text(encoding="utf-8"))
            candidate_meta = candidate_data.get(RECOVERY_KEY, {})
            candidate_saved = float(candidate_meta.get("saved_at", 0))
        except (OSError, ValueError, AttributeError, TypeError):
            continue
        if session_alive(*_recovery_owner(candidate, candidate_meta)):
            continue
        if found is None or candidate_saved > found[2]:
            found = (candidate, candidate_data, candidate_saved, candidate_meta)
    if found is None:
        return None
    path, data, saved_at, meta = found
    file_changed = content_changed = False
    file_mtime = None
    if project.path is not None and project.path.is_file():
        file_mtime = project.path.stat().st_mtime
        base = meta.get("source_sha1")
        if base and project.source_digest:
            content_changed = base != project.source_digest
            file_changed = content_changed or file_mtime > saved_at
        else:                                    # an older recovery file: only the date can tell
            file_changed = content_changed = file_mtime > saved_at
    return PendingRecovery(path, saved_at, file_changed=file_changed, content_changed=content_changed,
                           file_mtime=file_mtime, **_box_diff(project, data.get("annotations")))


def _box_diff(project: AnnotationProject, recovered) -> dict:
    """How the recovery file's boxes differ from the project's, by annotation id."""
    mine = {b.id: (im.id, b.category_id, b.x1, b.y1, b.width, b.height) for im in project.images for b in im.boxes}
    theirs = {}
    for a in recovered if isinstance(recovered, list) else []:
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            theirs[a["id"]] = (a["image_id"], a["category_id"], x, y, w, h)
        except (KeyError, TypeError, ValueError):
            continue
    common = mine.keys() & theirs.keys()
    moved = sum(1 for i in common if mine[i][0] != theirs[i][0]
                or any(abs(p - q) > 1e-6 for p, q in zip(mine[i][2:], theirs[i][2:])))
    relabelled = sum(1 for i in common if mine[i][1] != theirs[i][1])
    return {"added": len(theirs.keys() - mine.keys()), "removed": len(mine.keys() - theirs.keys()),
            "moved": moved, "relabelled": relabelled}


def load_recovery(path: Path) -> tuple[AnnotationProject, list[int]]:
    """The project stored in a recovery file, pointing back at the user's file, and the images
    that were unsaved."""
    from detengine.api import AnnotationProject
    meta = json.loads(Path(path).read_text(encoding="utf-8"))[RECOVERY_KEY]
    project = AnnotationProject.from_coco(path, image_root=meta["image_root"])
    project.path = Path(meta["project_path"]) if meta.get("project_path") else None
    project.kind = meta.get("kind", "coco")
    project.info.pop("detscope_image_root", None)
    project.extra.pop(RECOVERY_KEY, None)
    project._top_keys = [k for k in project._top_keys if k != RECOVERY_KEY]
    project.source_digest = meta.get("source_sha1")
    return project, [int(i) for i in meta.get("dirty_images", [])]
