"""Undo commands for box edits. Each command changes the project only through the
:class:`~app.annotate.document.Document`'s three box primitives, so every change emits one signal and
marks the image, and undo/redo replay exactly the same primitives in reverse."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QUndoCommand

if TYPE_CHECKING:                # detengine.data imports torch: not before the window shows (app/main.py)
    from detengine.api import Box

__all__ = ["AddBoxes", "RemoveBoxes", "ReplaceBoxes", "NUDGE_MERGE_ID"]

NUDGE_MERGE_ID = 1701          # consecutive arrow-key nudges of the same boxes merge into one step


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 'es' if word.endswith('x') else 's'}"


class AddBoxes(QUndoCommand):
    """Add ``boxes`` (with their ids already chosen) to ``image``."""

    def __init__(self, doc, image: int, boxes: list[Box], text: str | None = None):
        super().__init__(text or f"add {_plural(len(boxes), 'box')}")
        self.doc, self.image, self.boxes = doc, image, list(boxes)

    def redo(self) -> None:
        self.doc.insert_boxes(self.image, [(None, b) for b in self.boxes])

    def undo(self) -> None:
        self.doc.remove_boxes(self.image, [b.id for b in self.boxes])


class RemoveBoxes(QUndoCommand):
    """Delete boxes by id; undo puts each back at its old position in the image's list."""

    def __init__(self, doc, image: int, box_ids: list[int], text: str | None = None):
        super().__init__(text or f"delete {_plural(len(box_ids), 'box')}")
        self.doc, self.image, self.box_ids = doc, image, list(box_ids)
        self.removed: list[tuple[int, Box]] = []

    def redo(self) -> None:
        self.removed = self.doc.remove_boxes(self.image, self.box_ids)

    def undo(self) -> None:
        self.doc.insert_boxes(self.image, list(reversed(self.removed)))     # the inverse order of removal


class ReplaceBoxes(QUndoCommand):
    """Replace boxes by new versions with the same ids (move, resize, nudge, class change)."""

    def __init__(self, doc, image: int, old: list[Box], new: list[Box], text: str, merge_id: int = -1):
        super().__init__(text)
        if [b.id for b in old] != [b.id for b in new]:
            raise ValueError("ReplaceBoxes needs the same box ids, in the same order, before and after")
        self.doc, self.image, self.old, self.new = doc, image, list(old), list(new)
        self._merge_id = merge_id

    def id(self) -> int:
        return self._merge_id

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, ReplaceBoxes) or other.image != self.image:
            return False
        if [b.id for b in other.old] != [b.id for b in self.old]:
            return False
        self.new = other.new
        self.setObsolete(self.new == self.old)     # nudged back where it was: no undo step left
        return True

    def redo(self) -> None:
        self.doc.replace_boxes(self.image, self.new)

    def undo(self) -> None:
        self.doc.replace_boxes(self.image, self.old)
