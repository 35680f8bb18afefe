"""Class colours: a fixed, well-separated palette indexed by COCO category id, so a class keeps
its colour across sessions, projects and renames."""
from __future__ import annotations

from PySide6.QtGui import QColor

__all__ = ["class_color", "PALETTE"]

PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
           "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
           "#808000", "#ffd8b1", "#000075", "#a9a9a9"]


def class_color(cat_id: int) -> QColor:
    return QColor(PALETTE[(cat_id - 1) % len(PALETTE)]) if cat_id > 0 else QColor("#ffffff")
