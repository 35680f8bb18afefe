"""Where DetScope keeps its own files: settings, the sample project, autosave/recovery files.

``$DETSCOPE_HOME`` overrides the platform's application-data folder (tests point it at a
temporary folder, so they never touch the user's settings or recovery files).
"""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

__all__ = ["home_dir", "settings", "recovery_dir"]


def home_dir() -> Path:
    if os.environ.get("DETSCOPE_HOME"):
        path = Path(os.environ["DETSCOPE_HOME"])
    else:
        base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)
        path = Path(base or Path.home() / ".local" / "share") / "detscope"
    path.mkdir(parents=True, exist_ok=True)
    return path


def settings() -> QSettings:
    """The user's settings (window layout, last folder, last project) as an INI file in the home."""
    return QSettings(str(home_dir() / "settings.ini"), QSettings.Format.IniFormat)


def recovery_dir() -> Path:
    path = home_dir() / "recovery"
    path.mkdir(parents=True, exist_ok=True)
    return path
