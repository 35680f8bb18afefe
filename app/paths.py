"""Where DetScope keeps its own files: settings, the sample project, autosave/recovery files.

``$DETSCOPE_HOME`` overrides the platform's application-data folder (tests point it at a
temporary folder, so they never touch the user's settings or recovery files).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

__all__ = ["home_dir", "settings", "recovery_dir"]


def home_dir() -> Path:
    """The engine's :func:`detscope_home` (one folder for the window and the CLI's run registry)."""
    from detengine.api import detscope_home
    return detscope_home()


def settings() -> QSettings:
    """The user's settings (window layout, last folder, last project) as an INI file in the home."""
    return QSettings(str(home_dir() / "settings.ini"), QSettings.Format.IniFormat)


def recovery_dir() -> Path:
    path = home_dir() / "recovery"
    path.mkdir(parents=True, exist_ok=True)
    return path
