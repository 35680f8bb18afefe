"""Issue 17 item 4 (plots): the loss bars have a legend naming every bar colour, and the
Assignment view's IoU heat map has a fixed 0..1 colour bar (not draggable) that colours every level."""
from __future__ import annotations

import os

import pyqtgraph as pg
import pytest

from app import theme
from app.debug.loss_page import LossPage
from tests.app.debug.test_debug_views import open_view


@pytest.fixture
def win(sample_window):
    return sample_window


def test_loss_bars_have_a_legend_of_their_colours(qtbot, win):
    open_view(qtbot, win, "loss", image=1)
    page: LossPage = win.debug_panel.pages["loss"]
    legend = page.legend
    assert legend is not None and legend.scene() is page.chart.scene()
    entries = {label.text: sample.item.opts["brush"] for sample, label in legend.items}
    assert entries == {"classification": theme.LOSS_CLS, "regression": theme.LOSS_REG,
                       "cls, positives": theme.LOSS_POS, "cls, negatives": theme.NEGATIVE}
    rows = page.chart.ci.layout
    assert rows.rowMinimumHeight(1) == rows.rowMaximumHeight(1) > 20                   # the plots shrink, not it
    if os.environ.get("DETSCOPE_SHOT"):
        qtbot.wait(50)
        page.chart.grab().save(os.environ["DETSCOPE_SHOT"])


def test_iou_heat_map_has_a_fixed_colour_bar(qtbot, win):
    result = open_view(qtbot, win, "assign", image=1)
    page = win.debug_panel.pages["assign"]
    assert page.color_bar is None                                   # no GT selected: no heat map
    page.select_gt(0)                                                # redraws at once (no new trace)
    bar = page.color_bar
    assert isinstance(bar, pg.ColorBarItem) and bar.scene() is page.heat.scene()
    assert bar.levels() == (0.0, 1.0) and not bar.interactive
    images = [item for item in page.heat.scene().items() if isinstance(item, pg.ImageItem) and item is not bar.bar]
    assert len(images) == result.main.trace.priors.num_levels
    assert all(image.getLevels() is not None and tuple(image.getLevels()) == (0.0, 1.0) for image in images)
    assert all(image.lut is not None or image.getColorMap() is not None for image in images)
    if os.environ.get("DETSCOPE_SHOT"):                             # to look at it: DETSCOPE_SHOT=x.png
        qtbot.wait(50)                                              # the layout settles first
        page.heat.grab().save(os.environ["DETSCOPE_SHOT"])           # look at the colour bar
    page.on_escape()
    assert page.color_bar is None
