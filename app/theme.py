"""Every colour the window uses, in one place: the palettes (classes, pyramid levels, ground
truths, curves) and the named colours of states (problem, TP / FP / missed, hard negatives, ...).
Views name a colour by what it means here, never by a literal."""
from __future__ import annotations

from PySide6.QtGui import QColor

__all__ = ["CLASS_PALETTE", "LEVEL_COLORS", "GT_COLORS", "CURVE_COLORS", "RUN_COLORS", "class_color", "level_color",
           "gt_color", "palette_class_color", "set_class_colors", "text_color_on", "TEXT_ON_DARK", "WARNING", "HALO",
           "PROBLEM", "UNREADABLE", "TP", "FP", "MISSED", "HARD_NEGATIVE", "NEGATIVE", "IGNORED", "SUPPRESSED",
           "SUPPRESSOR", "VICTIM", "FOCUS", "TEXT_ON_LIGHT", "CANVAS_BACKGROUND", "PLACEHOLDER_FILL",
           "PLACEHOLDER_EDGE", "PLACEHOLDER_TEXT", "CONTOUR_POS", "CONTOUR_NEG", "LOSS_CLS", "LOSS_REG", "LOSS_POS",
           "OVERLAY_CURVE", "LR_CURVE", "AP_CURVE", "AP50_CURVE", "LOSS_EXTRA", "LOSS_TERM_TEXT", "loss_term_colors"]

# Palettes are colour-blind aware (Okabe-Ito / Paul Tol hues, checked under simulated deutan and
# protan vision by tests/app/test_theme_colours.py) and keep clear of the status colours below:
# no red (problem, FP), no TP green, no ignored amber, no hard-negative magenta, no grey or white.
# classes: indexed by COCO category id, so a class keeps its colour across sessions, projects and
# renames; the user can pick another one (View: the class list's colour button, kept by name)
CLASS_PALETTE = ["#88ccee", "#ffa07a", "#e7298a", "#b28dff", "#bbcc33", "#ffaabb", "#0072b2", "#a6761d",
                 "#e8e59a", "#bc80bd", "#882255", "#332288"]
LEVEL_COLORS = ["#4ea1ff", "#3ddbb0", "#b48cff", "#8fd14f", "#ff7eb6", "#5ce1e6", "#c9c9c9", "#9fa8ff"]
GT_COLORS = ["#56b4e9", "#ffa07a", "#00b894", "#b28dff", "#e8e59a", "#4a7fd6", "#cc79a7", "#7ad7d0"]
CURVE_COLORS = ["#ffffff", "#4ea1ff", "#ff9f0a", "#3ddbb0", "#ff7eb6", "#b48cff"]
RUN_COLORS = ["#88ccee", "#ffa07a", "#b28dff", "#bbcc33", "#ffaabb", "#00b894", "#e8e59a", "#4a7fd6"]  # overlaid runs

# states
PROBLEM = "#e03131"          # a GT no prior covers, an error message
UNREADABLE = "#d03030"       # an image that cannot be read (image list)
TP, FP, MISSED = "#38d1a0", "#ff3b3b", "#ffd21f"    # TP a blue-green: told from FP red also by deutans
HARD_NEGATIVE = "#ff2bd6"    # SSD's mined negatives
NEGATIVE = "#8a8f98"         # negatives drawn faint, the negative share of a loss
IGNORED = "#ffb000"
SUPPRESSED = "#b0b8c8"       # boxes NMS removed (dashed)
SUPPRESSOR = "#38c7ff"       # the kept box that removed the clicked one
VICTIM = "#ff9f0a"           # the boxes the clicked kept box removed
FOCUS = "#ffffff"            # the clicked prior / box, the "why" box
TEXT_ON_LIGHT, TEXT_ON_DARK = "#000000", "#ffffff"
HALO = "#000000"             # the thin dark edge under overlay lines (drawn translucent): boxes stay visible
WARNING = "#ffb000"          # a warning line (not an error): the training panel's warm-up note
CANVAS_BACKGROUND = "#1b1e24"
PLACEHOLDER_FILL, PLACEHOLDER_EDGE, PLACEHOLDER_TEXT = "#3a3f4b", "#ff6b6b", "#ffd0d0"  # an unreadable image
CONTOUR_POS, CONTOUR_NEG = "#ff4d4d", "#ffd21f"  # the IoU heat map's positive / negative thresholds
LOSS_CLS, LOSS_REG, LOSS_POS = "#4ea1ff", "#ff9f0a", "#3ddbb0"
LOSS_EXTRA = ("#c77dff", "#e8e8e8")   # a head's further loss terms (centerness / DFL / objectness, YOLOX's L1)
LOSS_TERM_TEXT = {"loss_cls": "classification", "loss_bbox": "regression", "loss_centerness": "centerness",
                  "loss_dfl": "DFL (distribution)", "loss_obj": "objectness", "loss_l1": "L1 (late)"}
OVERLAY_CURVE, LR_CURVE, AP_CURVE, AP50_CURVE = "#808080", "#3ddbb0", "#4ea1ff", "#ff9f0a"


_CLASS_CHOSEN: dict[int, str] = {}     # the user's colours of the open project's classes (by category id)


def loss_term_colors(names) -> dict[str, str]:
    """A colour per loss term of a breakdown: classification and regression as always, further
    terms (in their order) from :data:`LOSS_EXTRA`."""
    fixed = {"loss_cls": LOSS_CLS, "loss_bbox": LOSS_REG}
    extra = iter(LOSS_EXTRA * 2)
    return {n: fixed.get(n) or next(extra) for n in names}


def set_class_colors(chosen: dict[int, str]) -> None:
    """The colours the user picked for the open project's classes (``{cat_id: "#rrggbb"}``);
    the others keep their palette colour."""
    _CLASS_CHOSEN.clear()
    _CLASS_CHOSEN.update(chosen)


def palette_class_color(cat_id: int) -> QColor:
    return QColor(CLASS_PALETTE[(cat_id - 1) % len(CLASS_PALETTE)]) if cat_id > 0 else QColor(FOCUS)


def class_color(cat_id: int) -> QColor:
    chosen = _CLASS_CHOSEN.get(cat_id)
    return QColor(chosen) if chosen else palette_class_color(cat_id)


def text_color_on(background: QColor) -> QColor:
    """Black or white, whichever reads better on ``background`` (WCAG relative luminance)."""
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    lum = 0.2126 * linear(background.redF()) + 0.7152 * linear(background.greenF()) + 0.0722 * linear(background.blueF())
    return QColor(TEXT_ON_LIGHT) if lum > 0.18 else QColor(TEXT_ON_DARK)


def level_color(level: int) -> str:
    return LEVEL_COLORS[level % len(LEVEL_COLORS)]


def gt_color(k: int) -> QColor:
    return QColor(GT_COLORS[k % len(GT_COLORS)])
