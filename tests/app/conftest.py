"""Qt tests run offscreen and never touch the user's DetScope folder (settings, recovery files)."""
import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def sample_window(qtbot):
    """The main window on the built-in sample project, shown and active; its workers are shut
    down afterwards."""
    from app.main_window import MainWindow

    from .projects import FakeDialogs
    w = MainWindow(dialogs=FakeDialogs(), restore_layout=False)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=2000)
    yield w
    if w.doc is not None:
        w.doc._autosave.stop()
    w.training_panel.shutdown()
    w.eval_panel.shutdown()
    w.debug_panel.shutdown()
