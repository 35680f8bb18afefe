"""The image list is not sorted at open ("#" ascending is the project's own order: no comparisons,
which cost ~40% of opening 20,000 images), and sorting by a column still orders it."""
from __future__ import annotations

from PySide6.QtCore import Qt

from app.annotate.image_list_panel import _Filter
from app.main_window import MainWindow
from tests.app.projects import FakeDialogs, make_coco_project


def shown_rows(win) -> list[int]:
    proxy = win.image_list.proxy
    return [proxy.mapToSource(proxy.index(r, 0)).row() for r in range(proxy.rowCount())]


def test_opening_sorts_nothing_and_the_columns_still_sort(qtbot, tmp_path, monkeypatch):
    calls = []
    real = _Filter.lessThan

    def counting(self, left, right):
        calls.append(left.column())
        return real(self, left, right)
    monkeypatch.setattr(_Filter, "lessThan", counting)
    win = MainWindow(open_path=str(make_coco_project(tmp_path / "p")), dialogs=FakeDialogs(), restore_layout=False)
    qtbot.addWidget(win)
    win.doc._autosave.stop()
    assert calls == []                                        # not sorted at open
    assert shown_rows(win) == [0, 1, 2]
    header = win.image_list.table.horizontalHeader()
    assert (header.sortIndicatorSection(), header.sortIndicatorOrder()) == (1, Qt.SortOrder.AscendingOrder)
    table = win.image_list.table
    table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
    assert shown_rows(win) == [2, 1, 0] and calls
    table.sortByColumn(2, Qt.SortOrder.AscendingOrder)      # file names img1, img2, img3
    assert shown_rows(win) == [0, 1, 2]
    table.sortByColumn(2, Qt.SortOrder.DescendingOrder)
    assert shown_rows(win) == [2, 1, 0]
    counts = [len(im.boxes) for im in win.doc.project.images]
    for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
        table.sortByColumn(3, order)
        shown = [counts[r] for r in shown_rows(win)]
        assert shown == sorted(counts, reverse=order == Qt.SortOrder.DescendingOrder)
    table.sortByColumn(1, Qt.SortOrder.AscendingOrder)      # back to the project's order, no comparisons
    calls.clear()
    win.image_list.filter_edit.setText("img")
    assert shown_rows(win) == [0, 1, 2] and calls == []
