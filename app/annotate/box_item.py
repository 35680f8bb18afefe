"""One box on the canvas: a rectangle in image pixels drawn with a cosmetic pen, its label in
screen pixels (it does not grow with the zoom), and eight resize handles when selected (smaller
on a small box, none on a tiny one, so they never hide the box they resize).

The item only draws; the canvas does hit-testing and dragging and tells the editor, which
changes the project through undo commands; the canvas then updates the item from the project.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPen
from PySide6.QtWidgets import QGraphicsItem

from app import theme

__all__ = ["BoxItem", "LabelItem", "HANDLE_PX", "MIN_HANDLE_PX", "handle_points", "handle_half"]

HANDLE_PX = 8.0          # handle square side, screen pixels
MIN_HANDLE_PX = 3.0      # below this a box gets no handles (zoom in to resize it; it still moves)
_FONT: list = []         # (font, metrics), made on first use (a QApplication must exist by then)


def _label_font() -> tuple[QFont, QFontMetricsF]:
    if not _FONT:
        font = QFont()
        font.setPointSizeF(8.5)
        _FONT.append((font, QFontMetricsF(font)))
    return _FONT[0]


def handle_points(rect: QRectF) -> list[QPointF]:
    """The eight handle centres, in the order TL, T, TR, R, BR, B, BL, L."""
    l, t, r, b = rect.left(), rect.top(), rect.right(), rect.bottom()
    cx, cy = (l + r) / 2, (t + b) / 2
    return [QPointF(l, t), QPointF(cx, t), QPointF(r, t), QPointF(r, cy), QPointF(r, b), QPointF(cx, b),
            QPointF(l, b), QPointF(l, cy)]


def handle_half(rect: QRectF, view_scale: float) -> float:
    """Half a handle's side in image pixels for ``rect`` at ``view_scale`` (screen px per image
    px): ``HANDLE_PX`` on screen, shrunk to a quarter of the box's shorter side (three handles
    then cover at most half of an edge, and reach an eighth of the way in); 0 when that is below
    ``MIN_HANDLE_PX`` (no handles)."""
    scale = max(view_scale, 1e-6)
    side_px = min(HANDLE_PX, min(rect.width(), rect.height()) * scale / 4)
    return side_px / 2 / scale if side_px >= MIN_HANDLE_PX else 0.0


class LabelItem(QGraphicsItem):
    """Class name (and score) on a tag filled in its colour with black or white text
    (:func:`theme.text_color_on`), drawn at a fixed screen size; it sits on its position (a box's
    top-left corner), or hangs below it when ``below`` (a debug view's tag)."""

    def __init__(self, *, below: bool = False):
        super().__init__()
        self.below = below
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.setZValue(4)                          # above every box, so a box edge never cuts a label
        self.text = ""
        self.color = QColor(theme.FOCUS)
        self._rect = QRectF()

    def set_text(self, text: str, color: QColor) -> None:
        self.prepareGeometryChange()
        self.text, self.color = text, QColor(color)
        metrics = _label_font()[1]
        w = metrics.horizontalAdvance(text) + 6
        h = metrics.height() + 2
        self._rect = QRectF(0, 0 if self.below else -h, w, h)   # on top of the box's top-left corner, or below
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter, _option, _widget=None) -> None:
        if not self.text:
            return
        painter.fillRect(self._rect, self.color)
        painter.setPen(theme.text_color_on(self.color))
        painter.setFont(_label_font()[0])
        painter.drawText(self._rect.adjusted(3, 0, -3, 0), Qt.AlignmentFlag.AlignVCenter, self.text)


class BoxItem(QGraphicsItem):
    """``box_id``'s rectangle; ``dashed`` for predictions. Its ``label`` is a separate scene
    item so that labels stack above all boxes; :meth:`add_to` / :meth:`remove_from` handle both."""

    def __init__(self, box_id: int, *, dashed: bool = False):
        super().__init__()
        self.box_id = box_id
        self.dashed = dashed
        self.rect = QRectF()
        self.color = QColor(theme.FOCUS)
        self.selected = False
        self.view_scale = 1.0                  # screen pixels per image pixel; handles depend on it
        self.handles = True                    # False: selected but not editable (a debug view inspects)
        self.label = LabelItem()                   # a separate scene item (the canvas adds it) drawn on top
        self.setZValue(1)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)   # the canvas handles the mouse

    def add_to(self, scene) -> None:
        scene.addItem(self)
        scene.addItem(self.label)

    def remove_from(self, scene) -> None:
        scene.removeItem(self.label)
        scene.removeItem(self)

    def set_geometry(self, x1: float, y1: float, x2: float, y2: float) -> None:
        self.prepareGeometryChange()
        self.rect = QRectF(QPointF(x1, y1), QPointF(x2, y2)).normalized()
        self.label.setPos(self.rect.topLeft())
        self.update()

    def set_style(self, color: QColor, text: str) -> None:
        self.color = QColor(color)
        self.label.set_text(text, self.color)
        self.update()

    def set_selected(self, selected: bool) -> None:
        if selected != self.selected:
            self.selected = selected
            self.setZValue(2 if selected else 1)
            self.update()

    def set_handles(self, on: bool) -> None:
        if on != self.handles:
            self.handles = on
            self.update()

    def set_view_scale(self, scale: float) -> None:
        self.prepareGeometryChange()
        self.view_scale = max(scale, 1e-6)

    def boundingRect(self) -> QRectF:
        m = (HANDLE_PX / 2 + 2) / self.view_scale
        return self.rect.adjusted(-m, -m, m, m)

    def paint(self, painter, _option, _widget=None) -> None:
        pen = QPen(self.color, 3.0 if self.selected else 2.0)
        pen.setCosmetic(True)
        if self.dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        fill = QColor(self.color)
        fill.setAlpha(50 if self.selected else 0)
        painter.setBrush(QBrush(fill) if self.selected else Qt.BrushStyle.NoBrush)
        painter.drawRect(self.rect)
        if self.selected and self.handles:
            self._paint_handles(painter)

    def _paint_handles(self, painter) -> None:
        half = handle_half(self.rect, self.view_scale)
        if half <= 0:
            return
        pen = QPen(QColor(theme.TEXT_ON_LIGHT), 1.0)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.setBrush(QColor(theme.FOCUS))
        for p in handle_points(self.rect):
            painter.drawRect(QRectF(p.x() - half, p.y() - half, 2 * half, 2 * half))
