"""Issue 17 item 4 (overlays): debug boxes have a dark halo under the coloured line (but not a
level's thousands of anchors), tags are filled in their colour with black or white text chosen
by ``theme.text_color_on``, and the canvas's box labels choose the same way."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QImage, QPainter

from app import theme
from app.annotate.box_item import LabelItem
from app.annotate.canvas import Canvas
from app.debug.overlay import HALO_MAX_RECTS, Overlay


@pytest.fixture
def overlay(qtbot):
    canvas = Canvas()
    qtbot.addWidget(canvas)
    return Overlay(canvas)


def rendered_colors(label: LabelItem) -> set[tuple[int, int, int]]:
    """The opaque colours a label paints (its fill and its text's anti-aliased pixels)."""
    rect = label.boundingRect()
    image = QImage(int(rect.width()), int(rect.height()), QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    painter.translate(-rect.topLeft())
    label.paint(painter, None)
    painter.end()
    colors = set()
    for y in range(image.height()):
        for x in range(image.width()):
            c = image.pixelColor(x, y)
            if c.alpha() == 255:
                colors.add((c.red(), c.green(), c.blue()))
    return colors


def paints_near(colors: set, color: QColor, tol: int = 40) -> bool:
    """Some painted pixel is within ``tol`` (per channel) of ``color`` (text is anti-aliased)."""
    want = (color.red(), color.green(), color.blue())
    return any(max(abs(a - b) for a, b in zip(c, want)) <= tol for c in colors)


def test_a_few_boxes_get_a_dark_halo_under_their_line(overlay):
    line = overlay.rects("gt", [[10, 10, 50, 40], [60, 60, 90, 80]], theme.gt_color(0), width=2.0)
    items = overlay.layers["gt"]
    assert len(items) == 2 and items[-1] is line and overlay.count("gt") == 2       # the halo is not counted
    halo = items[0]
    assert halo.zValue() < line.zValue()
    assert halo.pen().widthF() > line.pen().widthF()
    assert QColor(halo.pen().color().rgb()) == QColor(theme.TEXT_ON_LIGHT)
    assert halo.brush().style() == halo.brush().style().NoBrush                        # a hatched layer's halo is no fill
    assert np.array_equal(halo.path().elementCount(), line.path().elementCount())


def test_a_levels_thousands_of_anchors_get_no_halo(overlay):
    boxes = np.tile([[0.0, 0.0, 4.0, 4.0]], (HALO_MAX_RECTS + 1, 1))
    overlay.rects("priors", boxes, theme.level_color(0))
    assert len(overlay.layers["priors"]) == 1 and overlay.count("priors") == HALO_MAX_RECTS + 1
    overlay.rects("few", boxes[:3], theme.level_color(0), halo=False)
    assert len(overlay.layers["few"]) == 1


@pytest.mark.parametrize("fill", [theme.MISSED, theme.GT_COLORS[4], "#332288", theme.FP])
def test_tags_are_filled_with_readable_text(overlay, fill):
    tag = overlay.text("gt_tags", 20.0, 30.0, "GT0", QColor(fill))
    assert isinstance(tag, LabelItem) and overlay.count("gt_tags") == 1
    assert tag.pos() == QPointF(20.0, 30.0) and tag.boundingRect().top() == 0     # hangs below its point
    colors = rendered_colors(tag)
    background, text = QColor(fill), theme.text_color_on(QColor(fill))
    assert (background.red(), background.green(), background.blue()) in colors
    other = QColor(255 - text.red(), 255 - text.green(), 255 - text.blue())          # the text colour not chosen
    assert paints_near(colors, text) and not paints_near(colors, other)


@pytest.mark.parametrize("fill", [theme.MISSED, "#332288", theme.class_color(3)])
def test_canvas_labels_choose_their_text_colour_by_luminance(qtbot, fill):
    label = LabelItem()
    label.set_text("circle 0.93", QColor(fill))
    assert label.boundingRect().bottom() == 0                                          # sits on its box's corner
    text = theme.text_color_on(QColor(fill))
    assert paints_near(rendered_colors(label), text)
