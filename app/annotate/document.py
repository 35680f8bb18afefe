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
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoGroup, QUndoStack

from app.paths import recovery_dir
from detengine.api import atomic_write_text

if TYPE_CHECKING:                # detengine.data imports torch: not before the window shows (app/main.py)
    from detengine.api import AnnotationProject, Box, Category

__all__ = ["Document", "RECOVERY_KEY", "AUTOSAVE_DELAY_MS", "PendingRecovery", "pending_recovery", "load_recovery"]

RECOVERY_KEY = "detscope_recovery"
AUTOSAVE_DELAY_MS = 3000
AUTOSAVE_MAX_WAIT_S = 30.0      # steady editing still autosaves at least this often


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

    def __init__(self, project: AnnotationProject, parent: QObject | None = None):
        super().__init__(parent)
        self.project = project
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
        try:
            self.write_recovery()
        except Exception as exc:                 # a full disk, a read-only home: say so, try again later
            text = f"autosave failed, unsaved edits are not protected: {exc}"
            self._set_autosave_problem(text)
            self.autosaveFailed.emit(text)
            self._autosave.start(AUTOSAVE_DELAY_MS * 5)

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
        """Save the project (see :meth:`AnnotationProject.save`: versioned backup, read-only
        refused with :class:`~detengine.io.ReadOnlyFileError`, symlink written through)."""
        old_recovery = self.recovery_path()          # keyed by the old path: Save As must remove it too
        target = self.project.save(path)
        old_recovery.unlink(missing_ok=True)
        for stack in self._stacks.values():
            stack.setClean()
        touched, self._touched = self._touched, set()
        self._project_dirty = False
        self._autosave.stop()
        self.discard_recovery()
        self._set_autosave_problem("")
        for image in touched:
            self.dirtyChanged.emit(image)
        self.dirtyChanged.emit(-1)
        return target

    def discard(self) -> None:
        """The user threw the unsaved edits away: no more autosaves, no recovery file."""
        self._autosave.stop()
        self.discard_recovery()
        self._set_autosave_problem("")

    def recovery_path(self) -> Path:
        return recovery_path_for(self.project)

    def write_recovery(self) -> Path | None:
        """Write the whole project to the recovery file (atomic); removes it when nothing is unsaved."""
        if not self.is_dirty():
            self.discard_recovery()
            self._set_autosave_problem("")
            return None
        path = self.recovery_path()
        data = self.project.to_coco(path, for_file=True)
        data[RECOVERY_KEY] = {"project_path": str(self.project.path) if self.project.path else None,
                              "image_root": str(self.project.image_root), "kind": self.project.kind,
                              "saved_at": time.time(), "dirty_images": self.dirty_images(),
                              "source_sha1": self.project.source_digest}
        atomic_write_text(path, json.dumps(data, separators=(",", ":")))
        self._set_autosave_problem("")
        self.autosaved.emit(str(path))
        return path

    def discard_recovery(self) -> None:
        self.recovery_path().unlink(missing_ok=True)


def _project_key(project: AnnotationProject) -> str:
    return str(project.path) if project.path is not None else f"{project.kind}:{project.image_root}"


def recovery_path_for(project: AnnotationProject) -> Path:
    digest = hashlib.sha1(_project_key(project).encode("utf-8")).hexdigest()[:16]
    return recovery_dir() / f"{digest}.json"


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
    differ from the file's."""
    path = recovery_path_for(project)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        meta = data.get(RECOVERY_KEY, {})
        saved_at = float(meta.get("saved_at", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return None
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
