"""The debug views' modes (issue 17 items 2, 3, 7): a selected GT can be left again and every
counted overlay is drawn or said hidden; a click in a debug view inspects and never edits until
"Edit boxes" (E) is on; jumps zoom to the box; handles shrink on small boxes; the NMS view opens
with its top-k detections and says what it hides."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, QRectF, Qt
from PySide6.QtTest import QTest

from app.annotate.box_item import HANDLE_PX, handle_half
from app.debug.debug_panel import EDIT_HINT, INSPECT_HINT
from app.debug.nms_page import DEFAULT_TOP_K
from detengine.api import Stage
from tests.app.debug.test_debug_views import open_view, retrace

L = Qt.MouseButton.LeftButton
NO_MOD = Qt.KeyboardModifier.NoModifier


@pytest.fixture
def win(sample_window):
    return sample_window


def project_box(win, box_id: int) -> tuple:
    return next(b.xyxy for b in win.doc.project.images[win.editor.index].boxes if b.id == box_id)


def press_drag_release(win, x: float, y: float, dx_px: int) -> None:
    """Press at image pixel (x, y), move ``dx_px`` screen pixels right in two steps, release."""
    viewport, start = win.canvas.viewport(), win.canvas.image_to_viewport(x, y)
    QTest.mousePress(viewport, L, NO_MOD, start)
    QTest.mouseMove(viewport, start + QPoint(dx_px // 2, 0))
    QTest.mouseMove(viewport, start + QPoint(dx_px, 0))
    QTest.mouseRelease(viewport, L, NO_MOD, start + QPoint(dx_px, 0))


def empty_point(it, k: int) -> tuple[float, float]:
    """An image point outside every GT box and every positive prior of GT ``k``."""
    trace = it.trace
    boxes = np.concatenate([it.to_original(trace.gt_boxes.numpy()),
                            it.to_original(trace.priors.boxes[trace.assign_result.gt_inds == k + 1].numpy(), clip=False)])
    for x in range(4, 256, 8):
        for y in range(4, 256, 8):
            if not ((boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])).any():
                return float(x), float(y)
    raise AssertionError("no empty spot on the image")


def test_a_selected_gt_is_left_by_esc_an_empty_click_or_its_row_and_ignored_stay_drawn(qtbot, win):
    open_view(qtbot, win, "assign")
    panel, page = win.debug_panel, win.debug_panel.pages["assign"]
    result = retrace(qtbot, win, lambda: page.editor_a.set_value("neg_iou_thr", 0.3))    # makes ignored priors
    ar = result.main.trace.assign_result
    assert ar.num_ignored > 0
    page.select_gt(0)
    assert panel.overlay.count("positives") == int((ar.gt_inds == 1).sum())
    assert panel.overlay.count("ignored") == ar.num_ignored                 # counted, so drawn
    assert "showing GT0's" in page.counts.text() and "negative (hidden" in page.counts.text()

    QTest.keyClick(win.canvas, Qt.Key.Key_Escape)                           # Esc on the canvas
    assert page.selected_gt is None and panel.overlay.count("positives") == ar.num_pos

    page.select_gt(0)
    x, y = empty_point(result.main, 0)
    QTest.mouseClick(win.canvas.viewport(), L, NO_MOD, win.canvas.image_to_viewport(x, y))
    assert page.selected_gt is None and page.why_prior is not None           # all GTs again, and "Why?"

    x1, y1, x2, y2 = result.main.to_original(result.main.trace.gt_boxes[2:3].numpy())[0]
    QTest.mouseClick(win.canvas.viewport(), L, NO_MOD, win.canvas.image_to_viewport((x1 + x2) / 2, (y1 + y2) / 2))
    assert page.selected_gt == page.gt_at(result.main, (x1 + x2) / 2, (y1 + y2) / 2) is not None
    row = page.selected_gt
    QTest.mouseClick(page.table.viewport(), L, NO_MOD, page.table.visualItemRect(page.table.item(row, 0)).center())
    assert page.selected_gt is None and not page.table.selectionModel().selectedRows()   # its row again

    page.select_gt(1)
    QTest.keyClick(page.table, Qt.Key.Key_Escape)                           # Esc in the dock
    assert page.selected_gt is None and page.counts.text().startswith(f"{result.main.trace.assigner_name}: ")


def test_a_click_or_small_drag_in_a_debug_view_moves_no_box_until_edit_mode(qtbot, win):
    open_view(qtbot, win, "assign")
    panel, canvas = win.debug_panel, win.canvas
    box = win.doc.project.images[7].boxes[0]
    before = box.xyxy
    cx, cy = (before[0] + before[2]) / 2, (before[1] + before[3]) / 2
    assert canvas.inspect and panel.mode_hint.text() == INSPECT_HINT
    for dx in (2, 5, 25):                                 # a click, a wobbly click, a drag (pans)
        press_drag_release(win, cx, cy, dx)
        assert project_box(win, box.id) == before and canvas.selected == []
    assert panel.pages["assign"].why_prior is not None
    canvas.set_selection([box.id])
    QTest.keyClick(canvas, Qt.Key.Key_Right)                                # no nudge either
    assert project_box(win, box.id) == before

    QTest.keyClick(canvas, Qt.Key.Key_E)                                    # edit mode
    assert panel.edit_mode and not canvas.inspect and panel.mode_hint.text() == EDIT_HINT
    cx, cy = (before[0] + before[2]) / 2, (before[1] + before[3]) / 2
    press_drag_release(win, cx, cy, 25)
    assert project_box(win, box.id)[0] > before[0]                          # now it moves
    QTest.keyClick(canvas, Qt.Key.Key_E)
    assert canvas.inspect


def test_jumps_zoom_to_the_box_with_a_margin(qtbot, win):
    open_view(qtbot, win, "assign")
    panel, canvas = win.debug_panel, win.canvas
    fitted = canvas.scale_factor()
    box = win.doc.project.images[3].boxes[0]
    panel.pages["scan"].jumpRequested.emit(3, box.id)
    qtbot.waitUntil(lambda: canvas.scale_factor() > fitted * 1.2, timeout=2000)
    assert win.editor.index == 3 and canvas.selected == [box.id]
    view = QRectF(canvas.viewport().rect())
    x1, y1, x2, y2 = box.xyxy
    tl, br = canvas.image_to_viewport(x1, y1), canvas.image_to_viewport(x2, y2)
    shown = QRectF(tl.toPointF(), br.toPointF())
    assert view.adjusted(10, 10, -10, -10).contains(shown)                 # inside, with a margin
    assert max(shown.width() / view.width(), shown.height() / view.height()) > 0.3
    result = retrace(qtbot, win, panel.schedule)
    panel.pages["assign"].zoom_to_gt(0)                                     # a double-clicked row
    x1, y1, x2, y2 = result.main.to_original(result.main.trace.gt_boxes[:1].numpy())[0]
    centre = canvas.image_to_viewport((x1 + x2) / 2, (y1 + y2) / 2)
    assert (centre - canvas.viewport().rect().center()).manhattanLength() <= 4


@pytest.mark.parametrize("side, scale", [(4.0, 1.0), (12.0, 1.0), (20.0, 2.0), (100.0, 1.0), (3.0, 0.3)])
def test_handles_never_cover_a_small_box(side, scale):
    half = handle_half(QRectF(10, 10, side, side), scale)
    assert 2 * half <= side / 4 + 1e-9                     # each handle at most a quarter of the side
    assert half * scale <= HANDLE_PX / 2
    if side * scale >= 4 * HANDLE_PX:
        assert half * scale == HANDLE_PX / 2               # a large box keeps full-size handles


def test_nms_opens_with_the_top_detections_and_says_what_is_hidden(qtbot, win):
    result = open_view(qtbot, win, "nms")
    panel, page = win.debug_panel, win.debug_panel.pages["nms"]
    record = result.main.trace.postprocess
    n, n_sup = len(record.kept), int((record.cand_stage == Stage.SUPPRESSED).sum())
    assert n > DEFAULT_TOP_K and n_sup > 0
    assert panel.overlay.count("kept") == panel.overlay.count("kept_labels") == DEFAULT_TOP_K
    assert f"showing {DEFAULT_TOP_K} of {n} kept" in page.shown.text()
    assert f"{n_sup} suppressed hidden" in page.shown.text()
    page.show_suppressed.setChecked(True)
    by_top = int(torch.isin(record.suppressed_by[record.cand_stage == Stage.SUPPRESSED],
                            record.kept[:DEFAULT_TOP_K]).sum())
    assert panel.overlay.count("suppressed") == by_top and f"{by_top} of {n_sup} suppressed" in page.shown.text()
    page.show_all.setChecked(True)
    assert panel.overlay.count("kept") == n and panel.overlay.count("suppressed") == n_sup
    assert f"showing all {n} kept" in page.shown.text() and "show all" not in page.shown.text()
