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


def test_the_worst_images_come_first_and_unevaluated_rows_sort_last_either_way(qtbot, sample_window):
    win = sample_window
    panel, table = win.image_list, win.image_list.table
    val = [5, 17, 40, 299]
    counts = {5: (2, 1, 0), 17: (0, 4, 1), 40: (1, 0, 2), 299: (3, 2, 0)}     # (TP, FP, missed) of val images
    panel.set_eval_counts(counts)
    for order, first in ((Qt.SortOrder.DescendingOrder, [17, 299, 5, 40]), (Qt.SortOrder.AscendingOrder, [40, 5, 299, 17])):
        table.sortByColumn(5, order)                                  # FP
        shown = [panel.proxy.mapToSource(panel.proxy.index(r, 0)).row() for r in range(panel.proxy.rowCount())]
        assert shown[:4] == first and set(shown[4:]) == set(range(300)) - set(val)    # empty cells last
    table.sortByColumn(5, Qt.SortOrder.DescendingOrder)
    win.show_image(17)                                                # N steps down the worst list
    win.actions_by_name["next"].trigger()
    assert win.editor.index == 299
    assert panel.scope_combo.isEnabled() and len(panel.val_rows) == 60     # the Train panel's split, told
    panel.set_val_rows(val)                                           # the validation split only
    panel.scope_combo.setCurrentIndex(panel.scope_combo.findData("val"))
    assert panel.visible_count() == 4
    panel.select_image(0)                                             # a hidden image: the filters are cleared
    assert panel.visible_count() == 300
