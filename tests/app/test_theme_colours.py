"""Honest colours (issue "The window as a daily tool", item 4): the GT, class and run palettes are
told apart, also under simulated deutan / protan vision, and keep clear of the status colours
(none of them is the "problem" red); status colours shown together are told apart; a class's
colour can be changed by the user, is kept by class name and shows at once.

Distances are CIE76 ΔE in CIELAB (D65); colour-vision deficiency is simulated with Machado et
al. (2009) matrices at severity 1.0 on linear RGB. Budgets: 25 between palette entries in normal
vision (10 under simulation: palettes of 8-12 colours cannot do more), 25-30 from the status
colours, 40 from the problem red."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from app import theme

MACHADO = {
    "deutan": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]),
    "protan": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]]),
}
XYZ = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]])
WHITE = np.array([0.95047, 1.0, 1.08883])


def lab(color: str, vision: str | None = None) -> np.ndarray:
    srgb = np.array([int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    if vision is not None:
        linear = np.clip(MACHADO[vision] @ linear, 0, 1)
    xyz = XYZ @ linear / WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def delta_e(a: str, b: str, vision: str | None = None) -> float:
    return float(np.linalg.norm(lab(a, vision) - lab(b, vision)))


def worst_vision_delta_e(a: str, b: str) -> float:
    return min(delta_e(a, b, v) for v in (None, "deutan", "protan"))


def closest_pair(colors: list[str], distance) -> tuple[float, str, str]:
    return min((distance(a, b), a, b) for a, b in itertools.combinations(colors, 2))


ASSIGN_STATUS = ["PROBLEM", "HARD_NEGATIVE", "IGNORED", "NEGATIVE", "FOCUS"]    # drawn with the GT colours
EVAL_STATUS = ["PROBLEM", "TP", "FP", "MISSED", "FOCUS"]                          # drawn with the class colours


@pytest.mark.parametrize("name, statuses", [("GT_COLORS", ASSIGN_STATUS), ("CLASS_PALETTE", EVAL_STATUS)])
def test_palettes_are_told_apart_and_keep_clear_of_the_status_colours(name, statuses):
    palette = getattr(theme, name)
    assert len(set(palette)) == len(palette) >= 8
    assert closest_pair(palette, delta_e)[0] >= 25
    assert closest_pair(palette, worst_vision_delta_e)[0] >= 10
    for color in palette:
        assert delta_e(color, theme.PROBLEM) >= 40, (color, "looks like the problem red")
        for status in statuses:
            assert delta_e(color, getattr(theme, status)) >= 25, (color, status)


def test_run_colours_are_told_apart_and_from_the_main_curve():
    assert closest_pair(theme.RUN_COLORS, delta_e)[0] >= 25
    assert all(delta_e(c, theme.CURVE_COLORS[0]) >= 20 for c in theme.RUN_COLORS)


@pytest.mark.parametrize("group", [["TP", "FP", "MISSED"], ["NEGATIVE", "IGNORED", "HARD_NEGATIVE", "FOCUS", "PROBLEM"],
                                   ["SUPPRESSED", "SUPPRESSOR", "VICTIM", "FOCUS"]])
def test_status_colours_shown_together_are_told_apart_also_by_deutans_and_protans(group):
    colors = [getattr(theme, name) for name in group]
    assert closest_pair(colors, worst_vision_delta_e)[0] >= 20


def test_the_budgets_catch_the_old_palettes():
    """The old GT palette opened with the problem red; the old TP / FP pair was green / red."""
    old_gt0, old_tp = "#ff4d4d", "#2fbf4a"
    assert delta_e(old_gt0, theme.PROBLEM) < 40
    assert worst_vision_delta_e(old_tp, theme.FP) < 20


def test_label_text_contrasts_with_its_background():
    from PySide6.QtGui import QColor
    assert theme.text_color_on(QColor("#ffd21f")).name() == theme.TEXT_ON_LIGHT      # black on yellow
    assert theme.text_color_on(QColor("#332288")).name() == theme.TEXT_ON_DARK       # white on indigo


def test_a_class_colour_picked_by_the_user_shows_at_once_and_is_kept_by_name(qtbot, tmp_path):
    from app.main_window import MainWindow
    from tests.app.projects import FakeDialogs, make_coco_project

    path = make_coco_project(tmp_path / "project")
    win = MainWindow(open_path=str(path), dialogs=FakeDialogs(), restore_layout=False)
    qtbot.addWidget(win)
    cat = win.doc.project.categories[0]
    before = theme.class_color(cat.id).name()
    win.class_panel.select(cat.id)
    win.dialogs.color_answer = "#123456"
    win.class_panel.buttons["color"].click()
    assert win.dialogs.calls[-1] == ("ask_color", cat.name, before)
    assert theme.class_color(cat.id).name() == "#123456" and not win.doc.is_dirty()
    ids = {b.id for b in win.doc.project.images[win.editor.index].boxes if b.category_id == cat.id}
    drawn = [item for box_id, item in win.canvas.items.items() if box_id in ids]
    assert drawn and all(item.color.name() == "#123456" for item in drawn)
    win.close()
    again = MainWindow(open_path=str(path), dialogs=FakeDialogs(), restore_layout=False)   # the next session
    qtbot.addWidget(again)
    assert theme.class_color(cat.id).name() == "#123456"
    again.close()
