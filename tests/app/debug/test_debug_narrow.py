"""Issue 17 item 9: the debug tables sort by a header click and each row keeps its GT / prior;
the dock's header is two rows and the views fit a ~330 px dock (the Assignment view stacks its
two parameter sets when narrow)."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from app.debug_common import data_row, fill_table, make_table, select_data_row, selected_data_row, view_row
from tests.app.debug.test_debug_views import open_view

NARROW_PX = 330


@pytest.fixture
def win(sample_window):
    return sample_window


def test_a_sortable_table_sorts_numbers_as_numbers_and_keeps_data_rows(qtbot):
    table = make_table(["GT", "loss"], sortable=True)
    qtbot.addWidget(table)
    fill_table(table, [["GT0", "0.5"], ["GT1", "12"], ["GT2", "3"], ["GT10", "-"]])
    assert [table.item(r, 0).text() for r in range(4)] == ["GT0", "GT1", "GT2", "GT10"]      # data order at first
    table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
    assert [table.item(r, 1).text() for r in range(4)] == ["-", "12", "3", "0.5"]             # text after numbers
    assert [data_row(table, r) for r in range(4)] == [3, 1, 2, 0] and view_row(table, 0) == 3
    select_data_row(table, 2)
    assert table.item(table.currentRow(), 0).text() == "GT2" and selected_data_row(table) == 2
    fill_table(table, [["GT0", "7"], ["GT1", "1"]])                                           # a refill stays sorted
    assert [table.item(r, 1).text() for r in range(2)] == ["7", "1"]
    table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    fill_table(table, [["GT10", "1"], ["GT9", "1"], ["GT2", "1"]])
    assert [table.item(r, 0).text() for r in range(3)] == ["GT2", "GT9", "GT10"]


def test_a_sorted_gt_table_still_selects_the_gt_of_the_row(qtbot, win):
    result = open_view(qtbot, win, "assign", image=5)
    page, overlay = win.debug_panel.pages["assign"], win.debug_panel.overlay
    gt_inds = result.main.trace.assign_result.gt_inds
    assert page.table.rowCount() >= 3
    page.table.sortByColumn(2, Qt.SortOrder.DescendingOrder)                 # by positives
    page.table.selectRow(page.table.rowCount() - 1)                          # the GT with the fewest positives
    k = int(page.table.item(page.table.rowCount() - 1, 0).text().removeprefix("GT"))
    assert page.selected_gt == k and overlay.count("positives") == int((gt_inds == k + 1).sum())
    page.select_gt(0)
    assert page.table.item(page.table.currentRow(), 0).text() == "GT0" and page.selected_gt == 0
    page.on_escape()
    assert page.selected_gt is None and not page.table.selectionModel().selectedRows()


def test_the_dock_header_and_views_fit_a_narrow_dock(qtbot, win):
    panel = win.debug_panel
    assert panel.layout().itemAt(0).minimumSize().width() <= NARROW_PX                 # Config / Model: two rows
    page, area = panel.pages["assign"], panel.page_areas["assign"]                    # the view in its tab's area
    win.show_view("assign")                                                            # shown: it gets its resizes
    area.resize(NARROW_PX - 10, 600)
    assert page.params.direction() == page.params.Direction.TopToBottom and page.editor_b.isHidden()
    page.compare_box.setChecked(True)                                                  # B shows under A
    assert not page.editor_b.isHidden()
    qtbot.wait(1)                                                                      # the layout places B
    assert page.editor_b.mapTo(page, page.editor_b.rect().topLeft()).y() >= page.editor_a.geometry().bottom()
    for name in ("anchors", "assign", "loss", "nms"):                                  # scan_page is not this issue's
        assert panel.pages[name].minimumSizeHint().width() <= NARROW_PX - 8, name
    area.resize(600, 600)
    assert page.params.direction() == page.params.Direction.LeftToRight
    page.compare_box.setChecked(False)
    assert not page.editor_b.isHidden() and not page.editor_b.isEnabled()             # wide: B shown, off


def test_the_thinning_note_says_every_2nd_not_2th():
    from app.debug.anchors_page import _ordinal
    assert [_ordinal(n) for n in (2, 3, 4, 11, 12, 21, 22, 23, 111)] == \
        ["2nd", "3rd", "4th", "11th", "12th", "21st", "22nd", "23rd", "111th"]
