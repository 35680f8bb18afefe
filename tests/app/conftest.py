"""Qt tests run offscreen and never touch the user's DetScope folder (settings, recovery files)."""
import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def detscope_home(tmp_path, monkeypatch):
    home = tmp_path / "detscope-home"
    monkeypatch.setenv("DETSCOPE_HOME", str(home))
    return home
