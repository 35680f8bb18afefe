"""The annotation editor: turns the canvas's gestures into undo commands on the document and
keeps the canvas showing the current image's boxes. Owns the current image, the current class
(the last one used, kept for the next box) and the box clipboard (shared between images)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from app.annotate.canvas import MIN_BOX_PX, Canvas, clamp_shift
from app.annotate.commands import NUDGE_MERGE_ID, AddBoxes, RemoveBoxes, ReplaceBoxes
from app.annotate.document import Document
from app.annotate.image_loader import ImageCache
from app.theme import class_color

if TYPE_CHECKING:                # detengine.data imports torch: not before the window shows (app/main.py)
    from detengine.api import Box

__all__ = ["Editor", "PASTE_OFFSET_PX"]

PASTE_OFFSET_PX = 10.0       # a duplicate, or a paste onto the same image, is shifted by this much
DECIMALS = 2                 # box corners from the mouse are kept to 0.01 px: what is saved is what is shown


class Editor(QObject):
    """Signals: ``imageShown(index)``, ``currentClassChanged(cat_id)``, ``message(text)``,
    ``imageProblem(index, text)`` (an unreadable image; empty text when it reads again)."""

    imageShown = Signal(int)
    currentClassChanged = Signal(int)
    message = Signal(str)
    imageProblem = Signal(int, str)

    def __init__(self, canvas: Canvas, parent=None):
        super().__init__(parent)
        self.canvas = canvas
        self.doc: Document | None = None
        self.index = -1
        self.current_class: int | None = None
        self.clipboard: list[Box] = []
        self._clipboard_image = -1
        self.cache = ImageCache()
        self.ask_class_name = lambda: None      # set by the window: asks for a class name when there is none
        # set by the window: (class names, the current one) -> the name for a new box, or None (cancelled)
        self.ask_box_class = lambda names, current: current
        self.ask_each_box = False               # True: every new box asks its class (labelme); else the last one
        self.show_labels = True                 # the class name tags on the boxes
        self.show_boxes = True                  # the boxes at all (to look at the image underneath)
        canvas.boxDrawn.connect(self.add_drawn_box)
        canvas.boxesEdited.connect(self._on_boxes_edited)
        canvas.nudgeRequested.connect(self.nudge)

    # ------------------------------------------------------------------ document and image

    def set_document(self, doc: Document) -> None:
        if self.doc is not None:
            self.doc.boxesChanged.disconnect(self._on_boxes_changed)
            self.doc.categoriesChanged.disconnect(self._on_categories_changed)
        self.doc = doc
        self.index = -1
        self.cache.clear()
        self.clipboard, self._clipboard_image = [], -1
        doc.boxesChanged.connect(self._on_boxes_changed)
        doc.categoriesChanged.connect(self._on_categories_changed)
        ids = doc.project.category_ids()
        self.set_current_class(ids[0] if ids else None)

    @property
    def project(self):
        return self.doc.project

    def show_image(self, index: int) -> None:
        """Show image ``index`` with its boxes; undo/redo now act on its stack."""
        project = self.project
        index = min(max(index, 0), len(project.images) - 1)
        record = project.images[index]
        image, problem = self.cache.get(project.image_path(index))
        if image is not None and (record.width, record.height) != (image.width(), image.height()):
            if record.width is None or record.height is None:
                record.width, record.height = image.width(), image.height()     # size unknown until now
            else:
                problem = ""
                self.message.emit(f"{record.file_name}: the file is {image.width()}x{image.height()} but the "
                                  f"annotation says {record.width}x{record.height}")
        self.index = index
        self.doc.activate(index)
        self.canvas.set_image(image, (record.width or 640, record.height or 480), problem)
        self.canvas.set_selection([])
        self.refresh_boxes()
        self.imageProblem.emit(index, problem)
        neighbours = [i for i in (index + 1, index - 1, index + 2) if 0 <= i < len(project.images)]
        self.cache.prefetch(project.image_path(i) for i in neighbours)
        self.imageShown.emit(index)

    def refresh_boxes(self) -> None:
        if self.index < 0:
            return
        names = {c.id: c.name for c in self.project.categories}
        drawn = []
        for box in self.project.images[self.index].boxes if self.show_boxes else ():
            label = names.get(box.category_id, f"class {box.category_id}") + (" (crowd)" if box.iscrowd else "")
            drawn.append((box.id, box.xyxy, class_color(box.category_id), label if self.show_labels else ""))
        self.canvas.set_boxes(drawn)

    def set_visibility(self, *, boxes: bool | None = None, labels: bool | None = None) -> None:
        """Hide or show the boxes (hidden boxes cannot be selected) or just their class tags."""
        if boxes is not None:
            self.show_boxes = boxes
            if not boxes:
                self.canvas.set_selection([])
        if labels is not None:
            self.show_labels = labels
        self.refresh_boxes()

    def select_all(self) -> None:
        """Ctrl+A: every box of the image (shown ones)."""
        if self.index >= 0 and self.show_boxes:
            self.canvas.set_selection([b.id for b in self.project.images[self.index].boxes])

    def _on_boxes_changed(self, image: int) -> None:
        if image == self.index:
            self.refresh_boxes()

    def _on_categories_changed(self) -> None:
        ids = self.project.category_ids()
        if self.current_class not in ids:
            self.set_current_class(ids[0] if ids else None)
        self.refresh_boxes()

    # ------------------------------------------------------------------ class

    def set_current_class(self, cat_id: int | None) -> None:
        self.current_class = cat_id
        self.currentClassChanged.emit(-1 if cat_id is None else cat_id)

    def apply_class(self, cat_id: int) -> None:
        """Give the selected boxes class ``cat_id`` (one undo step) and make it the current class."""
        self.set_current_class(cat_id)
        old = [b for b in self.selected_boxes() if b.category_id != cat_id]
        if old:
            name = self.project.category(cat_id).name
            self._push(ReplaceBoxes(self.doc, self.index, old, [b.replace(category_id=cat_id) for b in old],
                                    f"class -> {name}"))

    def _class_for_new_box(self) -> int | None:
        """The current class, or (with ``ask_each_box``, or when there is no class yet) the one
        the user names: an existing class, or a new one made on the spot."""
        if self.current_class is not None and not self.ask_each_box:
            return self.current_class
        if self.current_class is None and not self.project.categories:
            name = self.ask_class_name()
        else:
            current = self.project.category(self.current_class).name if self.current_class is not None else ""
            name = self.ask_box_class([c.name for c in self.project.categories], current)
        if not name:
            return None
        existing = {c.name: c.id for c in self.project.categories}
        if name in existing:
            self.set_current_class(existing[name])
            return existing[name]
        try:
            category = self.doc.add_category(name)
        except ValueError as exc:
            self.message.emit(str(exc))
            return None
        self.set_current_class(category.id)
        return category.id

    # ------------------------------------------------------------------ gestures -> commands

    def selected_boxes(self) -> list[Box]:
        if self.index < 0:
            return []
        by_id = {b.id: b for b in self.project.images[self.index].boxes}
        return [by_id[i] for i in self.canvas.selected if i in by_id]

    def _push(self, command) -> None:
        self.doc.push(self.index, command)

    def add_drawn_box(self, x1: float, y1: float, x2: float, y2: float) -> None:
        if self.index < 0:
            return
        cat_id = self._class_for_new_box()
        if cat_id is None:
            self.message.emit("box not added: no class chosen")
            self.refresh_boxes()
            return
        from detengine.api import Box
        box = Box(self.project.new_box_id(), cat_id, *self._clip((x1, y1, x2, y2)))
        self._push(AddBoxes(self.doc, self.index, [box], f"draw {self.project.category(cat_id).name}"))
        self.canvas.set_selection([box.id])

    def _clip(self, xyxy) -> tuple[float, float, float, float]:
        w, h = self.canvas.image_size
        x1, y1, x2, y2 = (round(v, DECIMALS) for v in xyxy)
        return (min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))

    def _on_boxes_edited(self, geometry: dict, kind: str) -> None:
        if self.index < 0:
            return
        by_id = {b.id: b for b in self.project.images[self.index].boxes}
        old = [by_id[i] for i in geometry if i in by_id]
        if not old:
            self.refresh_boxes()
            return
        new = [b.replace(**dict(zip(("x1", "y1", "x2", "y2"), self._clip(geometry[b.id])))) for b in old]
        if any(b.width < MIN_BOX_PX or b.height < MIN_BOX_PX for b in new):
            self.message.emit("edit refused: the box would be degenerate")
            self.refresh_boxes()
            return
        self._push(ReplaceBoxes(self.doc, self.index, old, new, f"{kind} {_count(old)}"))

    def nudge(self, dx: float, dy: float) -> None:
        """Shift the selected boxes, staying inside the image; consecutive nudges undo as one."""
        old = self.selected_boxes()
        if not old:
            return
        w, h = self.canvas.image_size
        dx = clamp_shift(dx, min(b.x1 for b in old), max(b.x2 for b in old), w)
        dy = clamp_shift(dy, min(b.y1 for b in old), max(b.y2 for b in old), h)
        if dx == 0 and dy == 0:
            return
        new = [b.replace(x1=b.x1 + dx, y1=b.y1 + dy, x2=b.x2 + dx, y2=b.y2 + dy) for b in old]
        self._push(ReplaceBoxes(self.doc, self.index, old, new, f"nudge {_count(old)}", NUDGE_MERGE_ID))

    def delete_selected(self) -> None:
        ids = [b.id for b in self.selected_boxes()]
        if ids:
            self._push(RemoveBoxes(self.doc, self.index, ids))

    def copy_selected(self) -> None:
        self.clipboard = self.selected_boxes()
        self._clipboard_image = self.index
        if self.clipboard:
            self.message.emit(f"copied {_count(self.clipboard)}")

    def paste(self) -> None:
        """Paste the clipboard into the current image (new ids, clipped to the image; shifted
        when pasted onto the image it came from, so it does not hide the original)."""
        shift = PASTE_OFFSET_PX if self._clipboard_image == self.index else 0.0
        self._add_copies(self.clipboard, shift, "paste")

    def duplicate_selected(self) -> None:
        self._add_copies(self.selected_boxes(), PASTE_OFFSET_PX, "duplicate")

    def _add_copies(self, boxes: list[Box], shift: float, verb: str) -> None:
        if self.index < 0:
            return
        known = set(self.project.category_ids())
        copies = []
        for b in boxes:
            if b.category_id not in known:
                continue
            x1, y1, x2, y2 = self._clip((b.x1 + shift, b.y1 + shift, b.x2 + shift, b.y2 + shift))
            if x2 - x1 >= MIN_BOX_PX and y2 - y1 >= MIN_BOX_PX:
                copies.append(b.replace(id=self.project.new_box_id(), x1=x1, y1=y1, x2=x2, y2=y2))
        if not copies:
            self.message.emit(f"nothing to {verb}")
            return
        self._push(AddBoxes(self.doc, self.index, copies, f"{verb} {_count(copies)}"))
        self.canvas.set_selection([b.id for b in copies])


def _count(boxes) -> str:
    n = len(boxes)
    return f"{n} box" if n == 1 else f"{n} boxes"
