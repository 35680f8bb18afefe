"""Every colour the window uses, in one place: the palettes (classes, pyramid levels, ground
truths, curves) and the named colours of states (problem, TP / FP / missed, hard negatives, ...).
Views name a colour by what it means here, never by a literal."""
from __future__ import annotations

from PySide6.QtGui import QColor

__all__ = ["CLASS_PALETTE", "LEVEL_COLORS", "GT_COLORS", "CURVE_COLORS", "class_color", "level_color", "gt_color",
           "PROBLEM", "UNREADABLE", "TP", "FP", "MISSED", "HARD_NEGATIVE", "NEGATIVE", "IGNORED", "SUPPRESSED",
           "SUPPRESSOR", "VICTIM", "FOCUS", "TEXT_ON_LIGHT", "CANVAS_BACKGROUND", "PLACEHOLDER_FILL",
           "PLACEHOLDER_EDGE", "PLACEHOLDER_TEXT", "CONTOUR_POS", "CONTOUR_NEG", "LOSS_CLS", "LOSS_REG", "LOSS_POS",
           "OVERLAY_CURVE", "LR_CURVE", "AP_CURVE", "AP50_CURVE"]

# classes: a fixed, well-separated palette indexed by COCO category id, so a class keeps its
# colour across sessions, projects and renames
CLASS_PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
                 "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
                 "#808000", "#ffd8b1", "#000075", "#a9a9a9"]
LEVEL_COLORS = ["#4ea1ff", "#3ddbb0", "#b48cff", "#8fd14f", "#ff7eb6", "#5ce1e6", "#c9c9c9", "#9fa8ff"]
GT_COLORS = ["#ff4d4d", "#ffd21f", "#3dff8a", "#38c7ff", "#ff8cf0", "#ff9f0a", "#b4ff38", "#c69cff",
             "#ffffff", "#ff6f91"]
CURVE_COLORS = ["#ffffff", "#4ea1ff", "#ff9f0a", "#3ddbb0", "#ff7eb6", "#b48cff"]

# states
PROBLEM = "#e03131"          # a GT no prior covers, an error message
UNREADABLE = "#d03030"       # an image that cannot be read (image list)
TP, FP, MISSED = "#2fbf4a", "#ff3b3b", "#ffd21f"
HARD_NEGATIVE = "#ff2bd6"    # SSD's mined negatives
NEGATIVE = "#8a8f98"         # negatives drawn faint, the negative share of a loss
IGNORED = "#ffb000"
SUPPRESSED = "#b0b8c8"       # boxes NMS removed (dashed)
SUPPRESSOR = "#38c7ff"       # the kept box that removed the clicked one
VICTIM = "#ff9f0a"           # the boxes the clicked kept box removed
FOCUS = "#ffffff"            # the clicked prior / box, the "why" box
TEXT_ON_LIGHT = "#000000"
CANVAS_BACKGROUND = "#1b1e24"
PLACEHOLDER_FILL, PLACEHOLDER_EDGE, PLACEHOLDER_TEXT = "#3a3f4b", "#ff6b6b", "#ffd0d0"  # an unreadable image
CONTOUR_POS, CONTOUR_NEG = "#ff4d4d", "#ffd21f"  # the IoU heat map's positive / negative thresholds
LOSS_CLS, LOSS_REG, LOSS_POS = "#4ea1ff", "#ff9f0a", "#3ddbb0"
OVERLAY_CURVE, LR_CURVE, AP_CURVE, AP50_CURVE = "#808080", "#3ddbb0", "#4ea1ff", "#ff9f0a"


def class_color(cat_id: int) -> QColor:
    return QColor(CLASS_PALETTE[(cat_id - 1) % len(CLASS_PALETTE)]) if cat_id > 0 else QColor(FOCUS)


def level_color(level: int) -> str:
    return LEVEL_COLORS[level % len(LEVEL_COLORS)]


def gt_color(k: int) -> QColor:
    return QColor(GT_COLORS[k % len(GT_COLORS)])
