"""The anchors panel (debug dock): level list, prior drawing, cell clicks, config switch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from app.anchors_panel import MAX_RECTS, AnchorsPanel, level_row_text, shipped_configs
from app.prior_view import path_to_rects, rects_to_path

ROOT = Path(__file__).resolve().parents[2]
SSD300_PER_LEVEL = [5776, 2166, 600, 150, 36, 4]


@pytest.fixture
def window(qtbot):
    win = AnchorsPanel("ssd300_coco")
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    qtbot.waitExposed(win)
    return win


def click_input_pixel(qtbot, win: AnchorsPanel, x: float, y: float) -> None:
    """Left-click the canvas viewport where input pixel (x, y) is drawn."""
    pos = win.view.data_to_viewport(x, y)
    qtbot.mouseClick(win.view.viewport(), Qt.MouseButton.LeftButton, pos=pos)


# --------------------------------------------------------------------------- window


def test_window_opens_with_ssd300(window):
    assert window.config_name == "ssd300_coco"
    assert window.config_combo.currentText() == "ssd300_coco"
    assert window.trace.input_shape == (300, 300)
    assert "SSDHead" in window.summary_text.toPlainText()


def test_level_list_rows_and_counts(window):
    rows = [window.level_list.item(i).text() for i in range(window.level_list.count())]
    assert len(rows) == 6
    assert rows[0] == "P0  stride 8  38x38  4/cell  5776 priors"
    for row, n in zip(rows, SSD300_PER_LEVEL):
        assert row.endswith(f"  {n} priors")


def test_all_mode_draws_every_prior_of_level_0(window):
    window.set_mode("all")
    window.set_level(0)
    assert window.view.rect_count == 5776
    assert window.view.center_count == 0
    drawn = window.view.drawn_rects()
    expected = window.trace.priors.boxes[window.trace.priors.level_slice(0)].double().numpy()
    np.testing.assert_allclose(drawn, expected, atol=1e-4)
    assert "5776 rectangles drawn" in window.count_label.text()


def test_centres_mode_draws_one_point_per_cell(window):
    window.set_mode("centers")
    window.set_level(1)
    assert window.view.rect_count == 0
    assert window.view.center_count == 19 * 19


@pytest.mark.parametrize("level", [0, 2])
def test_click_in_cell_mode_draws_that_cells_priors(qtbot, window, level):
    window.set_level(level)
    window.set_mode("cell")
    x, y = 61.0, 205.0
    click_input_pixel(qtbot, window, x, y)
    priors = window.trace.priors
    row, col = window.selected_cell
    assert (row, col) == priors.cell_at(level, *window._click_xy)
    # the click landed (within a screen pixel) where we aimed
    assert abs(window._click_xy[0] - x) < 2 and abs(window._click_xy[1] - y) < 2
    assert window.view.rect_count == priors.num_base_priors[level]
    expected = priors.boxes[priors.cell_indices(level, row, col)].double().numpy()
    np.testing.assert_allclose(window.view.drawn_rects(), expected, atol=1e-4)


def test_cell_follows_click_across_levels(qtbot, window):
    window.set_mode("cell")
    click_input_pixel(qtbot, window, 20.0, 20.0)
    assert window.selected_cell == window.trace.priors.cell_at(0, *window._click_xy)
    window.set_level(5)
    assert window.selected_cell == (0, 0)
    assert window.view.rect_count == 4


def test_gt_positives_are_drawn(window):
    positives = int((window.trace.assign_result.gt_inds > 0).sum())
    assert positives > 0
    assert window.view.positive_count == positives


def test_switch_config_to_retinanet(window):
    window.config_combo.setCurrentIndex(window.config_combo.findData("retinanet_r50_fpn_coco"))
    assert window.config_name == "retinanet_r50_fpn_coco"
    assert window.level_list.count() == 5
    assert window.level_list.item(0).text() == "P0  stride 8  80x80  9/cell  57600 priors"


def test_level_of_detail_draws_centres_above_limit(window):
    window.load_config("retinanet_r50_fpn_coco")
    window.set_mode("all")
    window.set_level(0)
    assert 57600 > MAX_RECTS
    assert window.view.rect_count == 0
    assert window.view.center_count == 80 * 80
    assert "centres only" in window.count_label.text()
    window.set_level(1)
    assert window.view.rect_count == 14400


@pytest.mark.parametrize("name", shipped_configs())
def test_every_shipped_config_loads(window, name):
    window.load_config(name)
    priors = window.trace.priors
    assert window.level_list.count() == priors.num_levels
    assert window.level_list.item(0).text() == level_row_text(priors, 0)
    assert window.view.rect_count + window.view.center_count > 0


def test_shipped_configs_exclude_base():
    names = shipped_configs()
    assert "ssd300_coco" in names and "retinanet_r50_fpn_coco" in names
    assert not any(n.startswith("_") for n in names)


def test_path_round_trip():
    boxes = np.array([[0, 0, 10, 20], [5.5, 6, 8, 9.25]])
    path = rects_to_path(boxes)
    assert path.elementCount() == 10
    np.testing.assert_allclose(path_to_rects(path), boxes)
    assert rects_to_path(np.zeros((0, 4))).elementCount() == 0


def test_demo_gt_labels_fit_single_class_config(window):
    window.load_config("tinyssd_banana")
    assert window.trace.num_classes == 1
    assert torch.equal(window.trace.gt_labels, torch.tensor([0, 0]))
