"""Room for the image (issue "The window as a daily tool", item 1): at 1024x700 and 1280x800 the
canvas keeps at least half the window's width whichever dock tab shows; docks can be made
narrow (their content scrolls); View > Reset Layout and F11 (image only); a layout that starves
the canvas (docks dragged wide, or saved on a bigger screen) is fitted again."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QByteArray, Qt

from app.main_window import CANVAS_SHARE


def settle(qtbot, win, size) -> None:
    win.resize(*size)
    qtbot.waitUntil(lambda: win.width() == size[0], timeout=2000)
    qtbot.wait(30)                                        # the deferred fit after a resize


@pytest.mark.parametrize("size", [(1024, 700), (1280, 800)])
def test_the_canvas_keeps_half_the_width_with_any_dock_tab(qtbot, sample_window, size):
    win = sample_window
    settle(qtbot, win, size)
    for view in ("annotate", "assign", "nms", "train", "evaluate"):
        win.show_view(view)
        qtbot.wait(20)
        assert win.canvas.width() >= 0.5 * win.width(), (view, win.canvas.width(), win.width())
    assert win.minimumSizeHint().width() <= 800           # the window can be made narrower than 925 px


def test_reset_layout_and_image_only(qtbot, sample_window):
    win = sample_window
    settle(qtbot, win, (1024, 700))
    win.docks["debug"].setFloating(True)
    win.docks["images"].hide()
    win.reset_layout()
    qtbot.wait(20)
    assert not win.docks["debug"].isFloating() and win.docks["images"].isVisible()
    assert win.dockWidgetArea(win.docks["debug"]) == Qt.DockWidgetArea.RightDockWidgetArea
    assert win.canvas_share() >= CANVAS_SHARE - 0.03
    win.actions_by_name["image_only"].trigger()            # F11: the image alone
    qtbot.wait(20)
    assert not any(d.isVisible() for d in win.docks.values())
    assert win.canvas.width() >= 0.95 * win.width()
    win.actions_by_name["image_only"].trigger()            # again: the panels come back
    qtbot.wait(20)
    assert win.docks["images"].isVisible() and win.canvas.width() >= 0.5 * win.width()


def test_a_layout_that_starves_the_canvas_is_fitted_again(qtbot, sample_window):
    win = sample_window
    settle(qtbot, win, (1600, 1000))
    win.show_view("assign")
    win.resizeDocks([win.docks["debug"]], [1300], Qt.Orientation.Horizontal)    # dragged wide
    state = win.saveState()
    assert isinstance(state, QByteArray)
    settle(qtbot, win, (1024, 700))                        # the saved layout on a smaller screen
    win.restoreState(state)
    settle(qtbot, win, (1023, 700))
    qtbot.waitUntil(lambda: win.canvas.width() >= 0.5 * win.width(), timeout=2000)


def test_the_train_tab_and_the_image_list_fit_a_1024_window(qtbot, sample_window):
    """The Train tab fits the right dock without scrolling sideways (combos, spin boxes and buttons
    as wide as their text, not their longest item); the image list's File column keeps a readable
    width, also when TP / FP / Missed appear (the list then scrolls sideways instead)."""
    from app.annotate.image_list_panel import FILE_MIN_WIDTH
    win = sample_window
    settle(qtbot, win, (1024, 700))
    win.show_view("train")
    qtbot.wait(30)
    area = win.docks["training"].widget()
    assert area.widget().minimumSizeHint().width() <= area.viewport().width()
    assert area.horizontalScrollBar().maximum() == 0
    panel, header = win.image_list, win.image_list.table.horizontalHeader()
    for view in ("train", "assign", "annotate"):
        win.show_view(view)
        qtbot.wait(20)
        assert header.sectionSize(2) >= 55, (view, [header.sectionSize(c) for c in range(7)])
        assert panel.table.horizontalScrollBar().maximum() == 0, view     # every column in view
    panel.set_eval_counts({0: (1, 2, 3)})
    qtbot.wait(10)
    assert header.sectionSize(2) >= FILE_MIN_WIDTH
    panel.set_eval_counts({})
    qtbot.wait(10)
    assert header.sectionSize(2) >= 55 and panel.table.horizontalScrollBar().maximum() == 0


def test_every_debug_view_fits_the_1024_dock_without_scrolling_sideways(qtbot, sample_window):
    win = sample_window
    settle(qtbot, win, (1024, 700))
    win.show_view("assign")
    qtbot.wait(30)
    panel = win.debug_panel
    for key, area in panel.page_areas.items():
        panel.tabs.setCurrentWidget(area)
        qtbot.wait(10)
        assert area.widget().minimumSizeHint().width() <= area.viewport().width(), key
        assert area.horizontalScrollBar().maximum() == 0, key


def test_the_evaluate_tables_stack_in_a_narrow_dock(qtbot, sample_window):
    """Metric and per-class tables side by side only where both fit; stacked, each is as wide as
    the dock, the values in view."""
    win = sample_window
    for size, orientation in (((1024, 700), Qt.Orientation.Vertical), ((1600, 1000), Qt.Orientation.Horizontal)):
        settle(qtbot, win, size)
        win.show_view("evaluate")
        qtbot.wait(30)
        panel = win.eval_panel
        assert panel.tables.orientation() == orientation, (size, panel.width())
        if orientation == Qt.Orientation.Vertical:
            assert panel.metrics.width() >= panel.width() - 10
