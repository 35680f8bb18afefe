"""The open project as the window sees it: the Qt-free :class:`AnnotationProject`, one undo
stack per image (in a ``QUndoGroup``, so undo follows the shown image and survives switching),
what is unsaved, and the autosave / recovery file.

Saving rules: Ctrl+S writes the project file atomically. A few seconds after the last edit the
whole project is written (atomically) to a recovery file in DetScope's home, never over the
user's file; a clean save or an explicit discard deletes it. If DetScope dies with unsaved
edits, the recovery file is still there at the next start and the window offers it.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoGroup, QUndoStack

from app.paths import recovery_dir
from detengine.api import atomic_write_text

if TYPE_CHECKING:                # detengine.data imports torch: not before the window shows (app/main.py)
    from detengine.api import AnnotationProject, Box, Category

__all__ = ["Document", "RECOVERY_KEY", "AUTOSAVE_DELAY_MS"]

RECOVERY_KEY = "detscope_recovery"
AUTOSAVE_DELAY_MS = 3000
AUTOSAVE_MAX_WAIT_S = 30.0      # steady editing still autosaves at least this often


class Document(QObject):
    """Signals: ``boxesChanged(image)`` after any box edit of that image, ``categoriesChanged()``,
    ``dirtyChanged(image)`` when an image's unsaved mark may have changed (-1: the project's),
    ``autosaved(path)`` after a recovery file was written."""

    boxesChanged = Signal(int)
    categoriesChanged = Signal()
    dirtyChanged = Signal(int)
    autosaved = Signal(str)
    autosaveFailed = Signal(str)

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
            self.autosaveFailed.emit(f"autosave failed: {exc}")
            self._autosave.start(AUTOSAVE_DELAY_MS * 5)

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
        old_recovery = self.recovery_path()          # keyed by the old path: Save As must remove it too
        self._backup_before_dropping_records(path)
        target = self.project.save(path)
        old_recovery.unlink(missing_ok=True)
        for stack in self._stacks.values():
            stack.setClean()
        touched, self._touched = self._touched, set()
        self._project_dirty = False
        self._autosave.stop()
        self.discard_recovery()
        for image in touched:
            self.dirtyChanged.emit(image)
        self.dirtyChanged.emit(-1)
        return target

    def _backup_before_dropping_records(self, path) -> None:
        """The first save over a file that opened with skipped records keeps the original as
        ``NAME.json.bak`` (the skipped records are not lost with it)."""
        source = self.project.path
        if not self.project.problems or source is None or not source.is_file():
            return
        if path is not None and Path(path).absolute() != source:
            return
        backup = source.with_name(source.name + ".bak")
        if not backup.exists():
            shutil.copy2(source, backup)
        self.project.problems = []

    def discard(self) -> None:
        """The user threw the unsaved edits away: no more autosaves, no recovery file."""
        self._autosave.stop()
        self.discard_recovery()

    def recovery_path(self) -> Path:
        return recovery_path_for(self.project)

    def write_recovery(self) -> Path | None:
        """Write the whole project to the recovery file (atomic); removes it when nothing is unsaved."""
        if not self.is_dirty():
            self.discard_recovery()
            return None
        path = self.recovery_path()
        data = self.project.to_coco(path)
        data[RECOVERY_KEY] = {"project_path": str(self.project.path) if self.project.path else None,
                              "image_root": str(self.project.image_root), "kind": self.project.kind,
                              "saved_at": time.time(), "dirty_images": self.dirty_images()}
        atomic_write_text(path, json.dumps(data, separators=(",", ":")))
        self.autosaved.emit(str(path))
        return path

    def discard_recovery(self) -> None:
        self.recovery_path().unlink(missing_ok=True)


def _project_key(project: AnnotationProject) -> str:
    return str(project.path) if project.path is not None else f"{project.kind}:{project.image_root}"


def recovery_path_for(project: AnnotationProject) -> Path:
    digest = hashlib.sha1(_project_key(project).encode("utf-8")).hexdigest()[:16]
    return recovery_dir() / f"{digest}.json"


def pending_recovery(project: AnnotationProject) -> tuple[Path, float] | None:
    """``(recovery file, time it was written)`` if an earlier session left unsaved edits of
    this project (and the project file was not saved after them), else ``None``."""
    path = recovery_path_for(project)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get(RECOVERY_KEY, {})
    except (OSError, ValueError, AttributeError):
        return None
    saved_at = float(meta.get("saved_at", 0))
    if project.path is not None and project.path.is_file() and project.path.stat().st_mtime > saved_at:
        return None
    return path, saved_at


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
    return project, [int(i) for i in meta.get("dirty_images", [])]
