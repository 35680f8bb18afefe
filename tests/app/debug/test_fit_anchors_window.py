"""Tools > Fit Anchors to Dataset… (issue "What no tool shows", part 3): the fit runs off the GUI
thread on the training split under the Debug dock's config and shows before / after, the shapes
and a snippet to copy; a config with point priors is refused with the reason (shown as the window
shows it: the engine's own refusal is tested in tests/engine/test_anchor_fit.py)."""
from __future__ import annotations

from app.main_window import MainWindow
from tests.app.projects import FakeDialogs, make_coco_project


def test_fit_anchors_from_the_window(qtbot, tmp_path, monkeypatch):
    from app.debug.fit_anchors_dialog import FitAnchorsDialog
    monkeypatch.setattr(FitAnchorsDialog, "max_iter", 5)          # a short search: the window's path is the point
    win = MainWindow(open_path=str(make_coco_project(tmp_path / "p")), dialogs=FakeDialogs(), restore_layout=False)
    qtbot.addWidget(win)
    win.actions_by_name["fit_anchors"].trigger()
    dialog = win.fit_dialog
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.fit is not None or bool(dialog.error), timeout=60_000)
    assert not dialog.error and dialog.copy.isEnabled()
    assert dialog.table.item(0, 1).text() == dialog.table.item(0, 2).text() == str(dialog.fit.before_coverage.gts)
    assert "anchor_generator=dict(" in dialog.snippet.toPlainText()
    assert len(dialog.plot.listDataItems()) == 3                  # GTs, shapes before, shapes after
    dialog.close()
    win.debug_panel.cfg = {**win.debug_panel.cfg, "model": {"bbox_head": {"type": "RTMDetSepBNHead"}}}
    win.actions_by_name["fit_anchors"].trigger()                  # point priors: the reason, no dialog
    assert win.dialogs.calls[-1][0] == "error" and "point priors" in win.dialogs.calls[-1][2]
    for panel in (win.debug_panel, win.training_panel, win.eval_panel):
        panel.shutdown()
