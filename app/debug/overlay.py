"""Debug drawings over the image on the canvas, in ORIGINAL image pixels.

Batched: every call adds ONE ``QGraphicsPathItem`` however many rectangles or points it draws
(``pyqtgraph.arrayToQPath`` builds the path from numpy without a Python loop), so 100,000
anchors are one item. Items are grouped in named layers that the debug pages clear and refill.
Large layers should use opaque colours: a translucent pen makes Qt blend every pixel of every
segment (measured: 151,200 rectangles paint in 80 ms opaque, 340 ms at alpha 170).

Legible on any image: a layer of up to ``HALO_MAX_RECTS`` rectangles is drawn over a thin dark
halo (a second, wider path item under the coloured one), so a box keeps its edge on an image of
its own colour; text is a filled tag in its colour with black or white letters
(:func:`theme.text_color_on`), so "GT0" reads on a GT-coloured image.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from app import theme
from app.annotate.box_item import LabelItem

__all__ = ["Overlay", "rects_to_path", "points_to_path", "path_to_rects", "HALO_MAX_RECTS"]

_VERTS_PER_RECT = 5          # moveTo + 4 lineTo (closed ring)
_Z = 3.0                     # above the image and the GT boxes' fill, below the labels
HALO_MAX_RECTS = 2000        # larger layers (a level's anchors) get no halo: it doubles the paint time
_HALO_PX = 2.0               # the halo is this much wider than the line (1 screen px each side)
_HALO_ALPHA = 170
_HALO_DZ = 0.01              # just under its line, above the layers below


def rects_to_path(boxes: np.ndarray) -> QPainterPath:
    """(N, 4) xyxy -> one path of N closed rectangles."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return QPainterPath()
    x = boxes[:, [0, 2, 2, 0, 0]].ravel()
    y = boxes[:, [1, 1, 3, 3, 1]].ravel()
    connect = np.ones(len(x), dtype=np.int32)
    connect[_VERTS_PER_RECT - 1::_VERTS_PER_RECT] = 0     # a ring's last vertex does not join the next ring
    return pg.arrayToQPath(x, y, connect)


def path_to_rects(path: QPainterPath) -> np.ndarray:
    """The (N, 4) rectangles stored in a path made by :func:`rects_to_path` (what is drawn)."""
    n = path.elementCount() // _VERTS_PER_RECT
    out = np.empty((n, 4), dtype=np.float64)
    for i in range(n):
        a, c = path.elementAt(i * _VERTS_PER_RECT), path.elementAt(i * _VERTS_PER_RECT + 2)
        out[i] = (a.x, a.y, c.x, c.y)
    return out


def points_to_path(points: np.ndarray) -> QPainterPath:
    """(N, 2) points -> N very short segments; drawn with a wide round-capped cosmetic pen they
    are dots of a fixed screen size."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0:
        return QPainterPath()
    x = np.repeat(points[:, 0], 2)
    x[1::2] += 1e-3
    y = np.repeat(points[:, 1], 2)
    connect = np.tile(np.array([1, 0], dtype=np.int32), len(points))
    return pg.arrayToQPath(x, y, connect)


def _pen(color, width: float, alpha: int) -> QPen:
    """A cosmetic pen (``width`` in screen pixels) in ``color`` with ``alpha``."""
    c = QColor(color)
    c.setAlpha(alpha)
    pen = QPen(c, width)
    pen.setCosmetic(True)
    return pen


class FastPathItem(QGraphicsPathItem):
    """A path item whose bounding rect is the path's control-point rect plus a margin.

    ``QGraphicsPathItem`` computes its bounding rect from the STROKED outline of the path when
    the pen is wider than 0 (``QPainterPathStroker``): for 150,000 rectangles that costs ~450 ms
    on first paint. Overlays take no mouse events, so the cheap rect is all that is needed."""

    def __init__(self, path: QPainterPath, margin: float = 0.0):
        super().__init__(path)
        self._rect = path.controlPointRect().adjusted(-margin, -margin, margin, margin) if not path.isEmpty() \
            else QRectF()

    def boundingRect(self) -> QRectF:
        return self._rect

    def shape(self) -> QPainterPath:
        shape = QPainterPath()
        shape.addRect(self._rect)
        return shape


class Overlay:
    """Named layers of batched path items on ``canvas``'s scene."""

    def __init__(self, canvas):
        self.canvas = canvas
        self.layers: dict[str, list] = {}
        self.counts: dict[str, int] = {}           # rectangles / points drawn per layer (tests read it)

    def _add(self, layer: str, item, count: int, z: float) -> None:
        item.setZValue(z)
        self.canvas.scene().addItem(item)
        self.layers.setdefault(layer, []).append(item)
        self.counts[layer] = self.counts.get(layer, 0) + count

    def clear(self, *layers: str) -> None:
        """Remove the named layers (all when none is named)."""
        for name in layers or list(self.layers):
            for item in self.layers.pop(name, []):
                self.canvas.scene().removeItem(item)
            self.counts.pop(name, None)

    def rects(self, layer: str, boxes, color, *, width: float = 1.0, alpha: int = 255, dash: bool = False,
              brush=None, halo: bool | None = None, z: float = _Z) -> QGraphicsPathItem:
        """Rectangles ``boxes`` (N, 4) xyxy; ``brush`` a QColor or a ``Qt.BrushStyle`` pattern
        in ``color`` (hatching for ignored anchors); ``halo`` a dark rim under the lines
        (default: when N <= ``HALO_MAX_RECTS``)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        path = rects_to_path(boxes)
        if halo is None:
            halo = 0 < len(boxes) <= HALO_MAX_RECTS
        if halo:
            self._add_halo(layer, path, width, z)
        item = FastPathItem(path, margin=self._margin(width))
        pen = _pen(color, width, alpha)
        if dash:
            pen.setStyle(Qt.PenStyle.DashLine)
        item.setPen(pen)
        if isinstance(brush, Qt.BrushStyle):
            item.setBrush(QBrush(pen.color(), brush))
        elif brush is not None:
            item.setBrush(QBrush(QColor(brush)))
        self._add(layer, item, len(boxes), z)
        return item

    def _add_halo(self, layer: str, path: QPainterPath, width: float, z: float) -> None:
        """A solid dark line ``_HALO_PX`` wider than the coloured one, just under it (not counted)."""
        item = FastPathItem(path, margin=self._margin(width + _HALO_PX))
        item.setPen(_pen(theme.HALO, width + _HALO_PX, _HALO_ALPHA))
        self._add(layer, item, 0, z - _HALO_DZ)

    def points(self, layer: str, points, color, *, size: float = 3.0, alpha: int = 255,
               z: float = _Z) -> QGraphicsPathItem:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        item = FastPathItem(points_to_path(points), margin=self._margin(size))
        pen = _pen(color, size, alpha)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        item.setPen(pen)
        self._add(layer, item, len(points), z)
        return item

    def _margin(self, width_px: float) -> float:
        """Half a cosmetic pen width, in scene units at the current zoom (with slack for zooming out)."""
        return (width_px / 2 + 1) / max(self.canvas.scale_factor(), 1e-6) * 4

    def text(self, layer: str, x: float, y: float, text: str, color, *, z: float = _Z + 1) -> LabelItem:
        """A tag filled in ``color`` with ``text`` in black or white, its top-left corner at
        (x, y) image pixels, at a fixed screen size."""
        item = LabelItem(below=True)
        item.set_text(text, QColor(color))
        item.setPos(x, y)
        self._add(layer, item, 1, z)
        return item

    def count(self, layer: str) -> int:
        return self.counts.get(layer, 0)
