"""The Loss view draws every term of the head's loss (FCOS's centerness, GFL's DFL, YOLOX's
objectness), stacked per level and per GT, each named in the legend: the bars sum to the loss."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest

from app import theme
from app.debug.loss_page import LossPage
from detengine.api import inspect


def test_every_loss_term_is_stacked_and_named(qtbot):
    page = LossPage(None)
    qtbot.addWidget(page)
    trace = inspect((256, 256), [[10, 20, 200, 240], [40, 40, 80, 90]], [3, 5], "fcos_r50_fpn_coco",
                    predictions="init")
    b = trace.loss_breakdown
    page._draw_chart(trace, b)
    for col, part in ((0, "per_level"), (1, "per_gt")):
        bars = [i for i in page.chart.getItem(0, col).items if isinstance(i, pg.BarGraphItem)]
        assert [i.opts["name"] for i in bars] == ["loss_cls", "loss_bbox", "loss_centerness"]
        assert sum(float(np.sum(i.opts["height"])) for i in bars) == pytest.approx(
            sum(sum(v) for v in b[part].values()), rel=1e-6)
    drawn = sum(float(np.sum(i.opts["height"])) for i in page.chart.getItem(0, 0).items
                if isinstance(i, pg.BarGraphItem))
    assert drawn == pytest.approx(b["total"], rel=1e-5)
    names = [label.text for _sample, label in page.legend.items]
    assert names[:3] == ["classification", "regression", "centerness"]
    colors = theme.loss_term_colors(["loss_cls", "loss_bbox", "loss_obj", "loss_l1"])
    assert len(set(colors.values())) == 4
