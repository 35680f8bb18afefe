"""The Assignment view under FCOS: a selected GT shows its regress-range bounds and (with
center_sampling ticked, a check box of the assigner's parameters) its centre regions; a click on a
positive explains it with the distances FCOS compared, not the cell's IoU."""
from __future__ import annotations

import pytest

from app.debug.assign_page import why_text
from tests.app.debug.test_debug_views import open_view, retrace


@pytest.fixture
def win(sample_window):
    return sample_window


def test_fcos_rule_regions_and_why(qtbot, win):
    result = open_view(qtbot, win, "assign", config="fcos_r50_fpn_coco")
    page, overlay = win.debug_panel.pages["assign"], win.debug_panel.overlay
    page.select_gt(4)                                  # the ring: max(l, t, r, b) crosses the 128 bound
    assert overlay.count("rule_regions") == 1 and overlay.count("rule_tags") == 1
    assert "center_sampling" in page.editor_a.widgets
    result = retrace(qtbot, win, lambda: page.editor_a.set_value("center_sampling", True))
    assert result.main.trace.assigner_params["center_sampling"] is True
    page.select_gt(4)
    assert overlay.count("rule_regions") > 1
    page.select_gt(None)
    assert overlay.count("rule_regions") == 0          # all GTs: no region drawn
    trace = result.main.trace
    prior = int((trace.assign_result.gt_inds == 5).nonzero()[0])
    text = why_text(trace, prior, win.debug_panel.class_names())
    assert "FCOS: point" in text and "max(l, t, r, b)" in text and "IoU with GT" not in text
    assert "GT0, GT1, GT2, GT3: " in text               # one rule for several GTs: one line
