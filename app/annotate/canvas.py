"""The image canvas: zoom / pan / fit, boxes drawn in class colours, and the mouse and key
gestures of an annotation tool (draw, select, move, resize by eight handles, nudge).

Two modes. Editing (the default): the gestures above. Inspecting (:meth:`set_inspect`, while a
debug view is shown and its edit mode is off): a left click only asks the view (``clicked``), a
left drag pans, boxes show no handles and cannot be selected, moved, resized, drawn or nudged
by the mouse or the arrows; so a click that asks "why?" can never also move a box.

Scene coordinates are image pixels (the image's top-left pixel covers [0, 1) x [0, 1)). The
canvas never changes the project: gestures are previewed on the items and reported by signal
(``boxDrawn``, ``boxesEdited``, ``nudgeRequested``, ...) to the editor, which pushes undo
commands; the project's change then comes back through :meth:`set_boxes`.
"""
from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QCursor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
)

from app import theme
from app.annotate.box_item import BoxItem, handle_half, handle_points

__all__ = ["Canvas", "MIN_BOX_PX", "clamp_shift"]

MIN_BOX_PX = 1.0             # a drawn or resized box narrower or lower than this (image px) is refused
_CLICK_SLOP_PX = 3           # a press-release closer than this (screen px) is a click, not a drag
_INSPECT_SLOP_PX = 6         # inspecting: a click may wobble this much (screen px) before it pans
_JUMP_MARGIN = 0.5           # zoom_to_rect: margin on each side, as a fraction of the box's longer side
_JUMP_MARGIN_MIN_PX = 8.0    # ... and at least this many image pixels
_ZOOM_STEP = 1.0015          # per wheel-delta unit (120 per notch: x1.2 per notch)
_MIN_SCALE, _MAX_SCALE = 0.01, 64.0
_BACKGROUND = QColor(theme.CANVAS_BACKGROUND)
_HANDLE_CURSORS = [Qt.CursorShape.SizeFDiagCursor, Qt.CursorShape.SizeVerCursor, Qt.CursorShape.SizeBDiagCursor,
                   Qt.CursorShape.SizeHorCursor, Qt.CursorShape.SizeFDiagCursor, Qt.CursorShape.SizeVerCursor,
                   Qt.CursorShape.SizeBDiagCursor, Qt.CursorShape.SizeHorCursor]


def clamp_shift(d: float, lo_edge: float, hi_edge: float, size: float) -> float:
    """Shift ``d`` limited so the selection does not leave [0, size]; a selection already
    overhanging an edge may still move inwards (never pushed the other way)."""
    lo = min(0.0, -lo_edge)
    hi = max(0.0, size - hi_edge)
    return min(max(d, lo), hi)



class Canvas(QGraphicsView):
    """Signals: ``boxDrawn(x1, y1, x2, y2)``; ``boxesEdited(dict id -> xyxy, kind)`` with kind
    ``"move"`` or ``"resize"``; ``nudgeRequested(dx, dy)``; ``selectionChanged(list)``;
    ``boxMenuRequested(id, QPoint global)``; ``cursorMoved(x, y)`` in image pixels;
    ``clicked(x, y)`` for a left click without a drag (the debug views probe anchors with it);
    ``escaped()`` on Esc (after cancelling a gesture and clearing the selection);
    ``message(text)`` for the status bar; ``zoomChanged(scale)``."""

    boxDrawn = Signal(float, float, float, float)
    boxesEdited = Signal(object, str)
    nudgeRequested = Signal(float, float)
    selectionChanged = Signal(object)
    boxMenuRequested = Signal(int, QPoint)
    cursorMoved = Signal(float, float)
    clicked = Signal(float, float)
    escaped = Signal()
    message = Signal(str)
    zoomChanged = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setBackgroundBrush(_BACKGROUND)
        self.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setMouseTracking(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)    # pan by dragging instead
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(False)              # drops go to the window
        self.image: QImage | None = None
        self.image_size = (0, 0)                # (w, h)
        self.items: dict[int, BoxItem] = {}
        self.prediction_items: list[BoxItem] = []   # dashed, read-only (a model's detections)
        self.selected: list[int] = []
        self.draw_mode = False                  # W: the next drag draws even over a box
        self.inspect = False                    # a debug view asks: clicks inspect, drags pan, nothing edits
        self._pixmap_item = QGraphicsPixmapItem()
        self._pixmap_item.setZValue(-10)
        self.scene().addItem(self._pixmap_item)
        self._placeholder: list = []
        self._draft = QGraphicsRectItem()       # the box being drawn
        pen = self._draft.pen()
        pen.setCosmetic(True)
        pen.setWidthF(1.5)
        pen.setColor(QColor(theme.FOCUS))
        pen.setStyle(Qt.PenStyle.DashLine)
        self._draft.setPen(pen)
        self._draft.setZValue(5)
        self._draft.hide()
        self.scene().addItem(self._draft)
        self._drag = None                       # the gesture in progress (dict)
        self._space = False
        self._fit_pending = True               # fit mode: refit on resize until the user zooms

    # ------------------------------------------------------------------ content

    def set_image(self, image: QImage | None, size: tuple[int, int], problem: str = "") -> None:
        """Show ``image`` (or, when it is ``None``, a placeholder of ``size`` saying ``problem``)."""
        for item in self._placeholder:
            self.scene().removeItem(item)
        self._placeholder = []
        self.image = image
        w, h = (image.width(), image.height()) if image is not None else size
        self.image_size = (max(int(w), 1), max(int(h), 1))
        self._pixmap_item.setPixmap(QPixmap.fromImage(image) if image is not None else QPixmap())
        if image is None:
            self._show_placeholder(problem)
        self._cancel_drag()
        self.fit()

    def _show_placeholder(self, problem: str) -> None:
        w, h = self.image_size
        rect = QGraphicsRectItem(0, 0, w, h)
        rect.setBrush(QColor(theme.PLACEHOLDER_FILL))
        rect.setPen(QColor(theme.PLACEHOLDER_EDGE))
        text = QGraphicsSimpleTextItem(problem or "no image")
        text.setBrush(QColor(theme.PLACEHOLDER_TEXT))
        font = QFont()
        font.setPointSizeF(11)
        text.setFont(font)
        text.setFlag(text.GraphicsItemFlag.ItemIgnoresTransformations, True)
        text.setPos(w * 0.03, h * 0.03)
        for item in (rect, text):
            item.setZValue(-9)
            self.scene().addItem(item)
            self._placeholder.append(item)

    def set_boxes(self, boxes: list[tuple[int, tuple, QColor, str]]) -> None:
        """Make the drawn boxes exactly ``[(id, (x1, y1, x2, y2), colour, label), ...]``."""
        wanted = {b[0] for b in boxes}
        if self._drag and ({self._drag.get("id")} | set(self._drag.get("orig", {}) or {})) - wanted - {None}:
            self._drag = None                    # an undo removed the box being dragged
            self._draft.hide()
        for box_id in [i for i in self.items if i not in wanted]:
            self.items.pop(box_id).remove_from(self.scene())
        scale = self.scale_factor()
        for z, (box_id, xyxy, color, label) in enumerate(boxes):
            item = self.items.get(box_id)
            if item is None:
                item = self.items[box_id] = BoxItem(box_id)
                item.set_view_scale(scale)
                item.set_handles(not self.inspect)
                item.add_to(self.scene())
            item.set_geometry(*xyxy)
            item.set_style(color, label)
        self._set_selected([i for i in self.selected if i in wanted], emit=True)

    def set_predictions(self, predictions: list[tuple[tuple, QColor, str, float]]) -> None:
        """Draw a model's detections ``[(xyxy, colour, class name, score), ...]`` as dashed boxes
        labelled ``name 0.87``, under the ground truth; they take no mouse gestures."""
        for item in self.prediction_items:
            item.remove_from(self.scene())
        self.prediction_items = []
        scale = self.scale_factor()
        for k, (xyxy, color, name, score) in enumerate(predictions):
            item = BoxItem(-1 - k, dashed=True)
            item.set_view_scale(scale)
            item.setZValue(0.5)
            item.set_geometry(*xyxy)
            item.set_style(color, name if score is None else f"{name} {score:.2f}")   # None: a marked GT
            item.add_to(self.scene())
            self.prediction_items.append(item)

    def box_rects(self) -> dict[int, tuple[float, float, float, float]]:
        """What is drawn: id -> (x1, y1, x2, y2) in image pixels."""
        return {i: (it.rect.left(), it.rect.top(), it.rect.right(), it.rect.bottom()) for i, it in self.items.items()}

    # ------------------------------------------------------------------ selection

    def set_selection(self, ids) -> None:
        self._set_selected([i for i in ids if i in self.items], emit=True)

    def _set_selected(self, ids: list[int], emit: bool) -> None:
        changed = ids != self.selected
        self.selected = list(ids)
        for box_id, item in self.items.items():
            item.set_selected(box_id in self.selected)
        if changed and emit:
            self.selectionChanged.emit(list(self.selected))

    # ------------------------------------------------------------------ mode

    def set_inspect(self, on: bool) -> None:
        """Inspect (``True``: clicks ask a debug view, nothing is edited) or edit (``False``)."""
        if on == self.inspect:
            return
        self._cancel_drag()
        self.inspect = on
        self.draw_mode = False
        for item in self.items.values():
            item.set_handles(not on)
        self._update_hover_cursor(self.mapToScene(self.viewport().mapFromGlobal(QCursor.pos())))

    # ------------------------------------------------------------------ zoom

    def scale_factor(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        """Fit the whole image in the window."""
        w, h = self.image_size
        if w <= 0 or h <= 0:
            return
        self.fitInView(QRectF(0, 0, w, h), Qt.AspectRatioMode.KeepAspectRatio)
        self._update_scene_rect()
        self.centerOn(w / 2, h / 2)
        self._fit_pending = True
        self._after_zoom()

    def actual_size(self) -> None:
        """One image pixel per screen pixel, keeping the centre."""
        centre = self.mapToScene(self.viewport().rect().center())
        self.resetTransform()
        self._update_scene_rect()
        self.centerOn(centre)
        self._fit_pending = False
        self._after_zoom()

    def zoom_by(self, factor: float, anchor: QPoint | None = None) -> None:
        """Zoom by ``factor`` keeping the image point under ``anchor`` (viewport px) in place."""
        scale = self.scale_factor()
        top = max(_MAX_SCALE, scale)             # a tiny image fits above the cap: zooming in must not zoom out
        factor = min(max(factor, min(_MIN_SCALE, scale) / scale), top / scale)
        anchor = anchor if anchor is not None else self.viewport().rect().center()
        before = self.mapToScene(anchor)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.scale(factor, factor)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self._update_scene_rect()
        self._scroll_to_keep(before, anchor)
        self._fit_pending = False
        self._after_zoom()

    def zoom_to_rect(self, x1: float, y1: float, x2: float, y2: float) -> None:
        """Centre the image rectangle and zoom so that it fills the view but for a margin of half
        its longer side (at least ``_JUMP_MARGIN_MIN_PX`` image px) on every side: jump to a box."""
        w, h = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
        m = max(_JUMP_MARGIN * max(w, h), _JUMP_MARGIN_MIN_PX)
        target = QRectF(x1 - m, y1 - m, w + 2 * m, h + 2 * m)
        view = self.viewport().rect()
        scale = min(view.width() / target.width(), view.height() / target.height())
        scale = min(max(scale, _MIN_SCALE), _MAX_SCALE)
        self.resetTransform()
        self.scale(scale, scale)
        self._update_scene_rect()
        self.centerOn(target.center())
        self._fit_pending = False
        self._after_zoom()

    def zoom_to_box(self, box_id: int) -> None:
        """:meth:`zoom_to_rect` on a drawn box (nothing when it is not drawn)."""
        item = self.items.get(box_id)
        if item is not None:
            r = item.rect
            self.zoom_to_rect(r.left(), r.top(), r.right(), r.bottom())

    def _update_scene_rect(self) -> None:
        """The image plus a viewport's worth of margin on every side, so that any image point
        can be brought under the cursor (zoom around the cursor, pan past the edges)."""
        w, h = self.image_size
        scale = self.scale_factor() or 1.0
        mx, my = self.viewport().width() / scale, self.viewport().height() / scale
        self.scene().setSceneRect(QRectF(-mx, -my, w + 2 * mx, h + 2 * my))

    def _scroll_to_keep(self, scene_point: QPointF, anchor: QPoint) -> None:
        """With scroll bars the translate above is ignored: scroll so ``scene_point`` is at ``anchor``."""
        now = self.mapFromScene(scene_point)
        dx, dy = now.x() - anchor.x(), now.y() - anchor.y()
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + dx)
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + dy)

    def _after_zoom(self) -> None:
        scale = self.scale_factor()
        for item in (*self.items.values(), *self.prediction_items):
            item.set_view_scale(scale)
        self.zoomChanged.emit(scale)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit_pending:
            self.fit()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._fit_pending:
            self.fit()

    def wheelEvent(self, event) -> None:
        delta = event.angleDelta().y() or event.angleDelta().x()
        if delta:
            self.zoom_by(_ZOOM_STEP ** delta, event.position().toPoint())
        event.accept()

    # ------------------------------------------------------------------ coordinates

    def image_to_viewport(self, x: float, y: float) -> QPoint:
        return self.mapFromScene(QPointF(x, y))

    def _clip_point(self, p: QPointF) -> QPointF:
        w, h = self.image_size
        return QPointF(min(max(p.x(), 0.0), w), min(max(p.y(), 0.0), h))

    # ------------------------------------------------------------------ hit testing

    def box_at(self, p: QPointF) -> int | None:
        """The smallest box whose rectangle (grown by a few screen pixels) contains ``p``."""
        tol = 3.0 / self.scale_factor()
        hits = [(it.rect.width() * it.rect.height(), box_id) for box_id, it in self.items.items()
                if it.rect.adjusted(-tol, -tol, tol, tol).contains(p)]
        return min(hits)[1] if hits else None

    def handle_at(self, p: QPointF) -> tuple[int, int] | None:
        """``(box id, handle 0..7)`` of a selected box's handle under ``p`` (what is drawn: none
        when inspecting or on a box too small for handles)."""
        if self.inspect:
            return None
        scale = self.scale_factor()
        for box_id in reversed(self.selected):
            rect = self.items[box_id].rect
            half = handle_half(rect, scale)
            if half <= 0:
                continue
            reach = min(half + 2 / scale, rect.width() / 4, rect.height() / 4)     # small boxes stay movable
            for k, h in enumerate(handle_points(rect)):
                if abs(h.x() - p.x()) <= reach and abs(h.y() - p.y()) <= reach:
                    return box_id, k
        return None

    # ------------------------------------------------------------------ mouse

    def mousePressEvent(self, event) -> None:
        pos = event.position().toPoint()
        if event.button() == Qt.MouseButton.MiddleButton or (
                event.button() == Qt.MouseButton.LeftButton and self._space):
            self._drag = {"kind": "pan", "last": pos}
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        p = self.mapToScene(pos)
        self._drag = self._start_gesture(p, pos, event.modifiers())

    def _start_gesture(self, p: QPointF, pos: QPoint, modifiers) -> dict:
        if self.inspect:                         # a click asks the view; past the slop it pans
            return {"kind": "inspect", "press": pos, "last": pos, "slop": _INSPECT_SLOP_PX}
        if self.draw_mode:
            return {"kind": "draw", "start": self._clip_point(p), "press": pos}
        handle = self.handle_at(p)
        if handle is not None:
            box_id, k = handle
            return {"kind": "resize", "id": box_id, "handle": k, "orig": QRectF(self.items[box_id].rect), "press": pos}
        box_id = self.box_at(p)
        if box_id is None:
            self._set_selected([], emit=True)
            return {"kind": "draw", "start": self._clip_point(p), "press": pos}
        if modifiers & Qt.KeyboardModifier.ControlModifier:
            ids = [i for i in self.selected if i != box_id] if box_id in self.selected else self.selected + [box_id]
            self._set_selected(ids, emit=True)
            return {"kind": "none"}
        if box_id not in self.selected:
            self._set_selected([box_id], emit=True)
        return {"kind": "move", "start": p, "press": pos,
                "orig": {i: QRectF(self.items[i].rect) for i in self.selected}}

    def mouseMoveEvent(self, event) -> None:
        pos = event.position().toPoint()
        p = self.mapToScene(pos)
        self.cursorMoved.emit(p.x(), p.y())
        drag = self._drag
        if drag is None:
            self._update_hover_cursor(p)
            return
        if drag["kind"] == "inspect" and self._dragged(drag, pos):
            drag["kind"], drag["panned"] = "pan", True
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
        if drag["kind"] == "pan":
            delta = pos - drag["last"]
            drag["last"] = pos
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - delta.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - delta.y())
        elif drag["kind"] == "draw":
            self._draft.setRect(QRectF(drag["start"], self._clip_point(p)).normalized())
            self._draft.setVisible(self._dragged(drag, pos))
        elif drag["kind"] == "move" and self._dragged(drag, pos):
            self._preview_move(drag, p)
        elif drag["kind"] == "resize":
            self._preview_resize(drag, p)

    def _dragged(self, drag: dict, pos: QPoint) -> bool:
        return (pos - drag["press"]).manhattanLength() >= drag.get("slop", _CLICK_SLOP_PX)

    def _preview_move(self, drag: dict, p: QPointF) -> None:
        dx, dy = p.x() - drag["start"].x(), p.y() - drag["start"].y()
        w, h = self.image_size
        rects = list(drag["orig"].values())
        dx = clamp_shift(dx, min(r.left() for r in rects), max(r.right() for r in rects), w)
        dy = clamp_shift(dy, min(r.top() for r in rects), max(r.bottom() for r in rects), h)
        for box_id, r in drag["orig"].items():
            moved = r.translated(dx, dy)
            if box_id in self.items:
                self.items[box_id].set_geometry(moved.left(), moved.top(), moved.right(), moved.bottom())
        drag["moved"] = (dx, dy)

    def _preview_resize(self, drag: dict, p: QPointF) -> None:
        r = QRectF(drag["orig"])
        p = self._clip_point(p)
        k = drag["handle"]
        if k in (0, 6, 7):
            r.setLeft(p.x())
        if k in (2, 3, 4):
            r.setRight(p.x())
        if k in (0, 1, 2):
            r.setTop(p.y())
        if k in (4, 5, 6):
            r.setBottom(p.y())
        r = r.normalized()
        if drag["id"] in self.items:
            self.items[drag["id"]].set_geometry(r.left(), r.top(), r.right(), r.bottom())
            drag["rect"] = r

    def mouseReleaseEvent(self, event) -> None:
        drag, self._drag = self._drag, None
        if drag is None:
            return super().mouseReleaseEvent(event)
        kind = drag["kind"]
        pos = event.position().toPoint()
        if "press" in drag and not drag.get("panned") and not self._dragged(drag, pos):
            p = self.mapToScene(pos)
            self.clicked.emit(p.x(), p.y())
        if kind == "pan":
            self._update_hover_cursor(self.mapToScene(event.position().toPoint()))
        elif kind == "draw":
            self._finish_draw(drag, event.position().toPoint())
        elif kind == "move" and "moved" in drag:
            self._finish_move(drag)
        elif kind == "resize" and "rect" in drag:
            self._finish_resize(drag)

    def _finish_draw(self, drag: dict, pos: QPoint) -> None:
        self._draft.hide()
        self.draw_mode = False
        if not self._dragged(drag, pos):
            return
        r = QRectF(drag["start"], self._clip_point(self.mapToScene(pos))).normalized()
        if r.width() < MIN_BOX_PX or r.height() < MIN_BOX_PX:
            self.message.emit(f"box refused: {r.width():.1f} x {r.height():.1f} px is degenerate "
                              f"(at least {MIN_BOX_PX:g} px each way)")
            return
        self.boxDrawn.emit(r.left(), r.top(), r.right(), r.bottom())

    def _finish_move(self, drag: dict) -> None:
        dx, dy = drag["moved"]
        if dx == 0 and dy == 0:
            return
        new = {i: (r.left() + dx, r.top() + dy, r.right() + dx, r.bottom() + dy) for i, r in drag["orig"].items()}
        self.boxesEdited.emit(new, "move")

    def _finish_resize(self, drag: dict) -> None:
        r, orig = drag["rect"], drag["orig"]
        if r.width() < MIN_BOX_PX or r.height() < MIN_BOX_PX:
            self.items[drag["id"]].set_geometry(orig.left(), orig.top(), orig.right(), orig.bottom())
            self.message.emit(f"resize refused: {r.width():.1f} x {r.height():.1f} px is degenerate")
            return
        if r != orig:
            self.boxesEdited.emit({drag["id"]: (r.left(), r.top(), r.right(), r.bottom())}, "resize")

    def _cancel_drag(self) -> None:
        drag, self._drag = self._drag, None
        self._draft.hide()
        if drag and drag["kind"] == "move":
            for box_id, r in drag["orig"].items():
                if box_id in self.items:
                    self.items[box_id].set_geometry(r.left(), r.top(), r.right(), r.bottom())
        if drag and drag["kind"] == "resize" and drag["id"] in self.items:
            r = drag["orig"]
            self.items[drag["id"]].set_geometry(r.left(), r.top(), r.right(), r.bottom())

    def mouseDoubleClickEvent(self, event) -> None:
        box_id = None if self.inspect else self.box_at(self.mapToScene(event.position().toPoint()))
        if box_id is not None and event.button() == Qt.MouseButton.LeftButton:
            self._set_selected([box_id], emit=True)
            self.boxMenuRequested.emit(box_id, event.globalPosition().toPoint())

    def contextMenuEvent(self, event) -> None:
        box_id = None if self.inspect else self.box_at(self.mapToScene(event.pos()))
        if box_id is not None:
            if box_id not in self.selected:
                self._set_selected([box_id], emit=True)
            self.boxMenuRequested.emit(box_id, event.globalPos())

    def _update_hover_cursor(self, p: QPointF) -> None:
        if self._space:
            shape = Qt.CursorShape.OpenHandCursor
        elif self.inspect or self.draw_mode:
            shape = Qt.CursorShape.CrossCursor
        elif (handle := self.handle_at(p)) is not None:
            shape = _HANDLE_CURSORS[handle[1]]
        elif self.box_at(p) is not None:
            shape = Qt.CursorShape.SizeAllCursor
        else:
            shape = Qt.CursorShape.CrossCursor
        self.viewport().setCursor(QCursor(shape))

    # ------------------------------------------------------------------ keys

    def keyPressEvent(self, event) -> None:
        key = event.key()
        if key == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            return
        arrows = {Qt.Key.Key_Left: (-1, 0), Qt.Key.Key_Right: (1, 0), Qt.Key.Key_Up: (0, -1), Qt.Key.Key_Down: (0, 1)}
        if key in arrows and self.selected and not self.inspect:
            step = 10.0 if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else 1.0
            dx, dy = arrows[key]
            self.nudgeRequested.emit(dx * step, dy * step)
            return
        if key == Qt.Key.Key_Escape:
            self._cancel_drag()
            self.draw_mode = False
            self._set_selected([], emit=True)
            self.escaped.emit()
            return
        super().keyPressEvent(event)

    def focusOutEvent(self, event) -> None:
        self._space = False                      # Space released elsewhere must not leave pan mode on
        super().focusOutEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.viewport().setCursor(Qt.CursorShape.CrossCursor)
            return
        super().keyReleaseEvent(event)

    def start_draw_mode(self) -> None:
        """W: the next drag draws a box, even when it starts on an existing box (not while
        inspecting: the debug view's edit mode comes first)."""
        if self.inspect:
            self.message.emit("a debug view is inspecting: press E (Edit boxes) to draw, move or resize boxes")
            return
        self.draw_mode = True
        self.viewport().setCursor(Qt.CursorShape.CrossCursor)
        self.message.emit("draw mode: drag to draw a box (Esc cancels)")
