"""The Debug dock's "Training sample" source (issue 20 part 2): the views trace the augmented
sample the trainer sees; the canvas steps through the train pipeline's stages; Re-roll draws
another sample; box editing is refused there. The dock's own rows fit the 1024x700 dock, and its
config / model are remembered across sessions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from app.debug.debug_panel import (
    CONFIG_KEY,
    EDIT_REFUSED,
    INSPECT_HINT,
    MODEL_KEY,
    NO_MODEL,
    SOURCE_IMAGE,
    SOURCE_TRAIN,
)
from app.debug.training_sample import TRAIN_HINT, canvas_id
from app.debug_common import qimage_to_rgb
from tests.app.debug.test_debug_views import TIMEOUT, open_view

L = Qt.MouseButton.LeftButton
NO_MOD = Qt.KeyboardModifier.NoModifier
IMAGE = 3


@pytest.fixture
def win(sample_window):
    return sample_window


def sample_result(qtbot, win, action):
    """Run ``action`` and wait for the training sample's trace of the shown image."""
    panel = win.debug_panel
    with qtbot.waitSignal(panel.traced, timeout=TIMEOUT,
                          check_params_cb=lambda r: r.sample is not None and r.image == win.editor.index):
        action()
    return panel.result


def train_source(qtbot, win, view: str = "assign"):
    open_view(qtbot, win, view, image=IMAGE)
    panel = win.debug_panel
    index = panel.source_combo.findData(SOURCE_TRAIN)
    return sample_result(qtbot, win, lambda: (panel.source_combo.setCurrentIndex(index),
                                              panel.source_combo.activated.emit(index)))


def canvas_pixels(win) -> np.ndarray:
    return qimage_to_rgb(win.canvas.image)


def test_the_source_switch_traces_the_training_sample_and_back(qtbot, win):
    panel, canvas = win.debug_panel, win.canvas
    record = win.doc.project.images[IMAGE]
    result = train_source(qtbot, win)
    sample = result.sample
    assert panel.source == SOURCE_TRAIN and panel.sample_controls.isVisibleTo(panel)
    final = sample.final
    assert canvas.image_size == final.size and np.array_equal(canvas_pixels(win), final.image)
    trace = result.main.trace
    assert tuple(trace.input_shape) == tuple(sample.batch["images"].shape[-2:])
    assert torch.equal(trace.gt_boxes, sample.batch["gt_boxes"][0])             # traced where the pipeline put them
    assert sorted(canvas.items) == sorted(canvas_id(k) for k in range(len(final.boxes) + len(final.ignore_boxes)))
    for k, xyxy in enumerate(final.boxes.tolist()):
        np.testing.assert_allclose(canvas.box_rects()[canvas_id(k)], xyxy, atol=1e-3)
    assert "training sample" in panel.status.text() and panel.mode_hint.text() == TRAIN_HINT
    assert panel.overlay.count("positives") == int(trace.assign_result.num_pos)  # drawn over the sample
    assert panel.pages["assign"].table.rowCount() == len(trace.gt_boxes)

    index = panel.source_combo.findData(SOURCE_IMAGE)
    with qtbot.waitSignal(panel.traced, timeout=TIMEOUT, check_params_cb=lambda r: r.sample is None):
        panel.source_combo.setCurrentIndex(index)
        panel.source_combo.activated.emit(index)
        assert panel.shown_sample is None and canvas.image_size == (record.width, record.height)
    assert panel.result.sample is None and sorted(canvas.items) == sorted(b.id for b in record.boxes)
    assert not panel.sample_controls.isVisibleTo(panel) and panel.mode_hint.text() == INSPECT_HINT


def test_stepping_the_stages_shows_each_transforms_image_and_boxes(qtbot, win):
    panel, canvas = win.debug_panel, win.canvas
    result = train_source(qtbot, win)
    sample, controls = result.sample, panel.sample_controls
    names = [s.name for s in sample.stages]
    assert names[0] == "original" and names[1:] == ["Expand", "MinIoURandomCrop", "Resize", "RandomFlip",
                                                    "PhotoMetricDistortion"]
    assert controls.stage.count() == len(names) and controls.is_last() and not controls.next.isEnabled()
    assert controls.stage.currentText().endswith("(traced)")
    positives = panel.overlay.count("positives")
    controls.select_stage(0)                                                     # the image as loaded
    record = win.doc.project.images[IMAGE]
    assert canvas.image_size == (record.width, record.height)
    assert np.array_equal(canvas_pixels(win), sample.stages[0].image)
    own = [b for b in record.boxes if not b.iscrowd]
    np.testing.assert_allclose(sorted(canvas.box_rects().values()), sorted(b.xyxy for b in own), atol=1e-3)
    assert all(i < 0 for i in canvas.items)                                      # the sample's ids, never the project's
    assert panel.overlay.count("positives") == 0 and "the views trace the last stage" in controls.note.text()
    for k in range(1, len(names)):
        QTest.mouseClick(controls.next, L)
        assert controls.current_stage() == k
        stage = sample.stages[k]
        assert canvas.image_size == stage.size and np.array_equal(canvas_pixels(win), stage.image)
        assert len(canvas.items) == len(stage.boxes) + len(stage.ignore_boxes)
    assert controls.is_last() and panel.overlay.count("positives") == positives   # the trace drawn again
    QTest.mouseClick(controls.prev, L)
    assert controls.current_stage() == len(names) - 2 and panel.overlay.count("positives") == 0


def test_re_roll_draws_another_sample_and_the_stage_shown_stays(qtbot, win):
    panel = win.debug_panel
    first = train_source(qtbot, win).sample
    controls = panel.sample_controls
    controls.select_stage(2)
    second = sample_result(qtbot, win, lambda: QTest.mouseClick(controls.reroll, L)).sample
    assert controls.seed.value() == 1 and second.seed == 1 and first.seed == 0
    assert controls.current_stage() == 2                                         # compare re-rolls stage by stage
    differs = [not (a.image.shape == b.image.shape and np.array_equal(a.image, b.image))
               for a, b in zip(first.stages[1:], second.stages[1:])]
    assert any(differs)
    third = sample_result(qtbot, win, lambda: controls.seed.setValue(0)).sample
    assert np.array_equal(third.final.image, first.final.image)                   # a seed is a sample


def test_editing_is_refused_in_the_training_sample_source(qtbot, win):
    panel, canvas = win.debug_panel, win.canvas
    train_source(qtbot, win)
    before = [b.xyxy for b in win.doc.project.images[IMAGE].boxes]
    messages = []
    panel.message.connect(messages.append)
    panel.set_edit_mode(True)
    assert not panel.edit_mode and EDIT_REFUSED in messages and canvas.inspect
    assert not panel.edit_action.isEnabled()                                     # E does nothing here
    QTest.keyClick(canvas, Qt.Key.Key_E)
    assert not panel.edit_mode and canvas.inspect
    k = next(iter(canvas.items))
    x1, y1, x2, y2 = canvas.box_rects()[k]
    start = canvas.image_to_viewport((x1 + x2) / 2, (y1 + y2) / 2)
    QTest.mousePress(canvas.viewport(), L, NO_MOD, start)
    QTest.mouseMove(canvas.viewport(), start + QPoint(20, 0))
    QTest.mouseMove(canvas.viewport(), start + QPoint(40, 0))
    QTest.mouseRelease(canvas.viewport(), L, NO_MOD, start + QPoint(40, 0))
    canvas.set_selection([k])
    win.editor.delete_selected()                                                 # a sample box is no project box
    QTest.keyClick(canvas, Qt.Key.Key_Right)
    assert [b.xyxy for b in win.doc.project.images[IMAGE].boxes] == before
    assert not win.doc.is_image_dirty(IMAGE)


def test_undo_paste_and_draw_from_the_menus_are_refused_while_the_sample_shows(qtbot, win):
    """An edit made before switching to the sample is not undone out of sight by Ctrl+Z; paste
    and draw wait too; all work again back in the Image source."""
    open_view(qtbot, win, "assign", image=IMAGE)
    boxes = win.doc.project.images[IMAGE].boxes
    win.canvas.set_selection([boxes[0].id])
    win.editor.copy_selected()
    win.editor.delete_selected()                                   # an edit to undo later
    edited = [b.xyxy for b in win.doc.project.images[IMAGE].boxes]
    panel = win.debug_panel
    index = panel.source_combo.findData(SOURCE_TRAIN)
    sample_result(qtbot, win, lambda: (panel.source_combo.setCurrentIndex(index),
                                       panel.source_combo.activated.emit(index)))
    for name in ("undo", "paste", "draw"):
        win.actions_by_name[name].trigger()
        assert [b.xyxy for b in win.doc.project.images[IMAGE].boxes] == edited, name
        assert win.statusBar().currentMessage() == EDIT_REFUSED
    assert not win.canvas.draw_mode
    panel.set_source(SOURCE_IMAGE)
    qtbot.waitUntil(lambda: panel.shown_sample is None, timeout=TIMEOUT)
    win.actions_by_name["undo"].trigger()
    assert len(win.doc.project.images[IMAGE].boxes) == len(edited) + 1


def test_the_views_assignment_is_the_trainers_for_that_sample(qtbot, win, tmp_path):
    """The trainer's data set (the window's train split as train.json, build_data, the Trainer's
    order) gives the same sample for this index, epoch and seed, and the detector's loss path
    assigns it exactly as the Assignment view shows."""
    from detengine.api import write_split
    from detengine.models.builder import build_detector
    from detengine.train.data import EpochOrder, build_data
    panel = win.debug_panel
    result = train_source(qtbot, win)
    result = sample_result(qtbot, win, lambda: panel.set_sample(seed=4, epoch=3))
    sample = result.sample
    assert (sample.seed, sample.epoch) == (4, 2)
    train, _val = win.training_panel.split
    cfg = dict(panel.cfg)
    cfg["model"] = dict(cfg["model"], bbox_head=dict(cfg["model"]["bbox_head"], num_classes=len(win.doc.project.categories)))
    bundle = build_data(cfg, str(write_split(win.doc.project, train, tmp_path / "train.json")),
                        images=str(win.doc.project.image_root), seed=4)
    bundle.train.set_order(EpochOrder(4, len(bundle.train)))
    bundle.train.set_epoch(2)
    batch = bundle.collate([bundle.train[sample.index]])
    assert torch.equal(batch["images"], sample.batch["images"])
    torch.manual_seed(0)
    with torch.no_grad():
        _losses, theirs = build_detector(cfg["model"]).eval().loss(batch, trace_index=0)
    ours = result.main.trace
    assert len(ours.gt_boxes) == len(theirs.gt_boxes) > 0
    assert torch.equal(ours.gt_labels, theirs.gt_labels)
    assert torch.equal(ours.assign_result.gt_inds, theirs.assign_result.gt_inds)
    assert torch.equal(ours.targets.labels, theirs.targets.labels)


def test_the_debug_tab_fits_the_1024_dock(qtbot, win):
    """At 1024x700 (the canvas keeps half the width) the Debug tab's minimum width fits its dock:
    the dock's own rows (Config / Model / Source, the training sample's controls, the mode row)
    fit it whole, and a view wider than the dock scrolls sideways inside its tab (no clipped
    control, the rows above stay in view)."""
    win.resize(1024, 700)
    qtbot.waitUntil(lambda: win.width() == 1024, timeout=2000)
    panel = win.debug_panel
    win.show_view("assign")
    panel.set_source(SOURCE_TRAIN)
    qtbot.wait(30)
    assert win.canvas.width() >= 0.5 * win.width()
    room = win.docks["debug"].widget().viewport().width()
    assert panel.minimumSizeHint().width() <= room and panel.width() <= room     # no sideways scroll of the dock
    layout = panel.layout()
    for i in range(layout.count()):
        item = layout.itemAt(i)
        assert item.geometry().right() <= panel.width(), item.widget() or item.layout()
    for key, area in panel.page_areas.items():
        panel.tabs.setCurrentWidget(area)
        qtbot.wait(5)
        page = area.widget()
        assert area.width() <= panel.width()
        if page.minimumSizeHint().width() > area.viewport().width():             # wider than the dock: it scrolls
            assert area.horizontalScrollBar().maximum() >= page.width() - area.viewport().width() > 0, key
        else:
            assert page.width() == area.viewport().width(), key


def test_the_config_and_model_are_remembered_across_sessions(qtbot, tmp_path):
    from app.main_window import MainWindow
    from app.paths import settings
    from tests.app.projects import FakeDialogs

    def session():
        w = MainWindow(dialogs=FakeDialogs(), restore_layout=True)
        qtbot.addWidget(w)
        return w

    def close(w):
        w.doc._autosave.stop()
        for panel in (w.training_panel, w.eval_panel, w.debug_panel):
            panel.shutdown()

    w = session()
    assert w.debug_panel.remember and w.debug_panel.config == "ssd300_coco"
    w.debug_panel.set_config("tinyssd_synthetic")
    w.debug_panel.set_model_choice(NO_MODEL)
    close(w)
    assert settings().value(CONFIG_KEY) == "tinyssd_synthetic" and settings().value(MODEL_KEY) == NO_MODEL
    w = session()
    assert w.debug_panel.config == "tinyssd_synthetic" and w.debug_panel.model_choice() == NO_MODEL
    assert w.debug_panel.config_combo.currentData() == "tinyssd_synthetic" and not w.debug_panel.notice
    close(w)

    settings().setValue(CONFIG_KEY, str(tmp_path / "gone.py"))                # no longer valid: the default, said
    settings().setValue(MODEL_KEY, f"ckpt:{tmp_path / 'gone.pth'}")
    w = session()
    panel = w.debug_panel
    assert panel.config == "ssd300_coco" and panel.model_choice() != f"ckpt:{tmp_path / 'gone.pth'}"
    assert "gone.py cannot be used (the file is gone)" in panel.notice and "gone.pth" in panel.notice
    assert panel.notice in panel.status.text()
    close(w)


def test_the_command_line_shows_the_training_sample():
    from app.main import parse_args
    args = parse_args(["--view", "assign", "--source", "train", "--seed", "3", "--stage", "-2"])
    assert (args.source, args.seed, args.stage) == ("train", 3, -2)
    assert parse_args([]).source == "image"
    with pytest.raises(SystemExit):
        parse_args(["--seed", "3"])                         # a seed is the training sample's


def test_another_image_or_another_dock_tab_and_the_canvas_follows(qtbot, win):
    panel, canvas = win.debug_panel, win.canvas
    train_source(qtbot, win)
    result = sample_result(qtbot, win, lambda: win.show_image(5))                # a new image: its own sample
    assert result.image == 5 and canvas.image_size == result.sample.final.size
    assert all(i < 0 for i in canvas.items)
    win.docks["classes"].raise_()                                                # the dock hidden: the image is back
    qtbot.waitUntil(lambda: not panel.active, timeout=2000)
    record = win.doc.project.images[5]
    assert panel.shown_sample is None and canvas.image_size == (record.width, record.height)
    assert sorted(canvas.items) == sorted(b.id for b in record.boxes) and not canvas.inspect
    result = sample_result(qtbot, win, lambda: win.show_view("assign"))          # shown again: the sample again
    assert panel.shown_sample is result.sample and canvas.inspect
