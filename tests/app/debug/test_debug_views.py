"""The debug views on the sample project: what is drawn equals the trace; edits retrace; the loss
chart's total is the detector's loss; the NMS view keeps what mmcv's batched_nms keeps."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from app.debug.anchors_page import MIN_SCREEN_STRIDE_PX
from app.debug_common import selected_data_row
from detengine.api import Stage
from tests.engine.test_nms_mmcv import mmcv_batched_nms

TIMEOUT = 120_000


@pytest.fixture
def win(sample_window):
    return sample_window


def open_view(qtbot, win, view: str, image: int = 7, config: str | None = None):
    panel = win.debug_panel
    if config is not None:
        panel.set_config(config)
    with qtbot.waitSignal(panel.traced, timeout=TIMEOUT):
        win.show_image(image)
        win.show_view(view)
        panel.schedule()
    return wait_current(qtbot, win)


def wait_current(qtbot, win) -> dict:
    """Wait until the panel's result is for the shown image (and has the model when needed)."""
    panel = win.debug_panel
    page = panel.current_page()

    def ready():
        r = panel.result
        return (r is not None and r.image == win.editor.index
                and (not page.needs_model or r.main.model_name is not None))
    qtbot.waitUntil(ready, timeout=TIMEOUT)
    return panel.result


@torch.no_grad()
def detector_losses(win, result) -> dict:
    """The detector's own ``loss`` on the traced image, its boxes and the tracer's model."""
    it = result.main
    boxes, labels, _, _, _ = win.debug_panel.gt_inputs()
    batch = dict(images=it.input.batch, gt_boxes=[it.input.to_input(np.asarray(boxes))],
                 gt_labels=[torch.as_tensor(labels)], gt_boxes_ignore=[torch.zeros(0, 4)], metas=[it.input.meta])
    return result.tracer.model.loss(batch)[0]


def retrace(qtbot, win, action) -> dict:
    panel = win.debug_panel
    with qtbot.waitSignal(panel.traced, timeout=TIMEOUT):
        action()
    return panel.result


# --------------------------------------------------------------------------- anchors


def test_anchors_view_draws_the_level_on_the_image(qtbot, win):
    result = open_view(qtbot, win, "anchors")
    it = result.main
    trace = it.trace
    page = win.debug_panel.pages["anchors"]
    overlay = win.debug_panel.overlay
    assert page.level_list.count() == trace.priors.num_levels == 6
    assert page.level_list.item(0).text() == "P0  stride 8  38x38  4/cell  5776 priors"
    assert overlay.count("priors") == 5776
    assert overlay.count("gt") == len(trace.gt_boxes) == len(win.doc.project.images[7].boxes)
    cov = trace.coverage
    assert page.coverage.rowCount() == len(trace.gt_boxes)
    for k in range(len(trace.gt_boxes)):
        assert float(page.coverage.item(k, 3).text()) == pytest.approx(float(cov.best_iou[k]), abs=5e-4)
        weak = float(cov.best_iou[k]) < 0.5 or int(cov.num_pos[k]) == 0
        assert (page.coverage.item(k, 0).foreground().color().name() == "#e03131") == weak
    page.set_mode("centers")
    assert overlay.count("priors") == 38 * 38
    page.set_level(2)
    assert overlay.count("priors") == 10 * 10


def test_the_window_and_the_cli_flag_the_same_weak_gts(qtbot, win, tmp_path):
    """The coverage table's red rows are the GTs ``detengine inspect`` lists as weak (one rule:
    GTCoverage.weak), on an image with a GT too small for any prior to reach IoU 0.5."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    open_view(qtbot, win, "anchors")
    win.editor.set_current_class(win.doc.project.images[7].boxes[0].category_id)
    result = retrace(qtbot, win, lambda: win.editor.add_drawn_box(3.0, 3.0, 9.0, 8.0))  # a 6 x 5 px object
    trace = result.main.trace
    page = win.debug_panel.pages["anchors"]
    red = [k for k in range(page.coverage.rowCount())
           if page.coverage.item(k, 0).foreground().color().name() == "#e03131"]
    h, w = trace.input_shape
    gts = [",".join(f"{v:.4f}" for v in box) + f",{int(label)}"
           for box, label in zip(trace.gt_boxes.tolist(), trace.gt_labels.tolist(), strict=True)]
    out = tmp_path / "trace.json"
    cmd = [sys.executable, "-m", "detengine", "inspect", "--config", "ssd300_coco", "--image-size", str(w), str(h),
           "--json", str(out)]
    for gt in gts:
        cmd += ["--gt", gt]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[3], timeout=120)
    assert proc.returncode == 0, proc.stderr
    cli_weak = [r["gt"] for r in json.loads(out.read_text())["gt_coverage"] if r["weak"]]
    assert red == cli_weak == trace.coverage.weak.nonzero().view(-1).tolist()
    assert red and len(red) < len(gts)  # the case has both kinds
    assert f"weak GTs (no positive, or no prior at IoU >= 0.5; the window's red rows): {red}" in proc.stdout


def test_cell_mode_draws_the_clicked_cells_priors(qtbot, win):
    open_view(qtbot, win, "anchors")
    page = win.debug_panel.pages["anchors"]
    page.set_level(1)
    page.set_mode("cell")
    QTest.mouseClick(win.canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     win.canvas.image_to_viewport(128.0, 128.0))
    assert win.debug_panel.overlay.count("priors") == 6            # SSD300 P1: 6 priors per cell
    assert page.cell == win.debug_panel.result.main.trace.priors.cell_at(1, 150.0, 150.0)


def test_zoomed_out_levels_are_thinned_and_say_so(qtbot, win):
    result = open_view(qtbot, win, "anchors", config="retinanet_r50_fpn_coco")
    page = win.debug_panel.pages["anchors"]
    trace = result.main.trace
    win.canvas.zoom_by(0.25)
    page.set_level(0)
    step = page._thinning(result.main, 0)
    assert step > 1 and "zoom in to see all" in page.info.text()
    assert win.debug_panel.overlay.count("priors") < trace.priors.num_per_level[0]
    win.canvas.zoom_by(40.0)
    assert page._thinning(result.main, 0) == 1
    assert win.debug_panel.overlay.count("priors") == trace.priors.num_per_level[0]
    assert MIN_SCREEN_STRIDE_PX > 0


# --------------------------------------------------------------------------- assignment


def test_positive_items_equal_the_trace_and_follow_edits(qtbot, win):
    result = open_view(qtbot, win, "assign")
    overlay = win.debug_panel.overlay
    trace = result.main.trace
    assert overlay.count("positives") == int((trace.assign_result.gt_inds > 0).sum())
    before = trace.assign_result.gt_inds.clone()
    box = win.doc.project.images[7].boxes[0]
    win.canvas.set_selection([box.id])
    result = retrace(qtbot, win, lambda: win.editor.nudge(-25, 0))              # move a GT box (unsaved)
    trace = result.main.trace
    assert not torch.equal(before, trace.assign_result.gt_inds)
    k = result.box_ids.index(box.id)                    # the selected box is the selected GT: its positives
    assert overlay.count("positives") == int((trace.assign_result.gt_inds == k + 1).sum())
    win.debug_panel.pages["assign"].select_gt(None)
    assert overlay.count("positives") == int((trace.assign_result.gt_inds > 0).sum())


def test_thresholds_and_a_second_assigner_side_by_side(qtbot, win):
    result = open_view(qtbot, win, "assign")
    page = win.debug_panel.pages["assign"]
    n_default = result.main.trace.assign_result.num_pos
    result = retrace(qtbot, win, lambda: page.editor_a.set_value("pos_iou_thr", 0.3))
    assert result.main.trace.assigner_params["pos_iou_thr"] == pytest.approx(0.3)
    assert result.main.trace.assign_result.num_pos > n_default
    assert "pos_iou_thr=0.3" in win.debug_panel.snippet()

    def compare_atss():
        page.compare_box.setChecked(True)
        page.editor_b.type_combo.setCurrentIndex(page.editor_b.type_combo.findData("ATSSAssigner"))
    result = retrace(qtbot, win, compare_atss)
    result = wait_current(qtbot, win)
    assert result.compare is not None and result.compare.trace.assigner_name == "ATSSAssigner"
    for k in range(page.table.rowCount()):
        assert int(page.table.item(k, 4).text()) == int(result.compare.trace.coverage.num_pos[k])
    b_pos = int((result.compare.trace.assign_result.gt_inds > 0).sum())          # B's positives drawn too
    assert win.debug_panel.overlay.count("positives_b") == b_pos > 0 and "B's positives dashed" in page.counts.text()


def test_a_swapped_in_prediction_weighted_assigner_uses_the_model(qtbot, win):
    """Task-aligned in the place of SSD300's MaxIoU: the Assignment view runs the model and the
    assigner weighs its predictions (the trace equals the engine's for the model's outputs)."""
    result = open_view(qtbot, win, "assign")
    page = win.debug_panel.pages["assign"]
    assert result.main.model_name is None                   # MaxIoU needs no model
    assert not win.debug_panel.needs_model()
    page.editor_a.type_combo.setCurrentIndex(page.editor_a.type_combo.findData("TaskAlignedAssigner"))
    assert win.debug_panel.needs_model()
    result = retrace(qtbot, win, lambda: None)
    qtbot.waitUntil(lambda: win.debug_panel.result.main.model_name is not None, timeout=TIMEOUT)
    trace = win.debug_panel.result.main.trace
    assert trace.assigner_name == "TaskAlignedAssigner" and trace.predictions_source == "given"
    assert trace.assign_result.num_pos > 0


def test_gt_heat_map_and_why(qtbot, win):
    result = open_view(qtbot, win, "assign")
    page = win.debug_panel.pages["assign"]
    trace = result.main.trace
    page.select_gt(0)
    assert page.selected_gt == 0
    assert win.debug_panel.overlay.count("positives") == int((trace.assign_result.gt_inds == 1).sum())
    images = [item for item in page.heat.ci.items if hasattr(item, "addedItems")]
    assert len(images) == trace.priors.num_levels
    x1, y1, x2, y2 = win.doc.project.images[7].boxes[0].xyxy
    QTest.mouseClick(win.canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier,
                     win.canvas.image_to_viewport((x1 + x2) / 2, (y1 + y2) / 2))
    prior = page.why_prior
    assert prior is not None
    text = page.why.toPlainText()
    assert f"prior #{prior}:" in text and "rule:" in text and "IoU with GT0" in text


# --------------------------------------------------------------------------- loss


def test_loss_chart_total_equals_the_detectors_loss(qtbot, win):
    result = open_view(qtbot, win, "loss")
    it = result.main
    page = win.debug_panel.pages["loss"]
    losses = detector_losses(win, result)
    total = float(sum(losses.values()))
    import pyqtgraph as pg
    bars = [item for item in page.chart.getItem(0, 0).items if isinstance(item, pg.BarGraphItem)]
    drawn = sum(float(np.sum(item.opts["height"])) for item in bars)  # the per-level bars, cls + reg
    assert drawn == pytest.approx(total, abs=1e-5, rel=1e-6)
    assert page.breakdown["total"] == pytest.approx(total, abs=1e-5, rel=1e-6)
    for name, value in losses.items():
        assert page.breakdown["terms"][name] == pytest.approx(float(value), abs=1e-5, rel=1e-6)
    hard = it.trace.hard_negative_mask
    assert win.debug_panel.overlay.count("hard_negatives") == int(hard.sum()) > 0
    assert page.table.rowCount() == int((it.trace.assign_result.gt_inds > 0).sum())


def test_hard_negatives_are_listed_with_their_loss_and_a_click_explains_one(qtbot, win):
    """Loss view, "hard negatives": the mined priors hardest first with their CE and loss share; a
    row, or a click on a mined box on the image, selects one, draws it and says why it was mined
    and why it is a negative. A click in this view never moves a box."""
    result = open_view(qtbot, win, "loss")
    page = win.debug_panel.pages["loss"]
    trace = result.main.trace
    page.list_choice.setCurrentIndex(page.list_choice.findData("hard"))
    hard = trace.hard_negative_mask
    assert page.hard_table.rowCount() == int(hard.sum()) > 0
    assert page.list_choice.itemText(1) == f"hard negatives ({int(hard.sum())})"
    rows = page.hard_rows
    assert rows == trace.hard_negatives() and rows[0]["ce"] >= rows[-1]["ce"]
    last = rows[-1]
    cx, cy = trace.priors.boxes[last["prior"]].view(2, 2).mean(0).tolist()
    x, y = result.main.to_original(np.array([[cx, cy, cx, cy]]), clip=False)[0][:2]
    before = list(win.doc.project.images[win.editor.index].boxes)
    page.on_click(float(x), float(y))
    selected = rows[selected_data_row(page.hard_table)]
    box = trace.priors.boxes[selected["prior"]]
    assert box[0] <= cx <= box[2] and box[1] <= cy <= box[3] and selected["ce"] >= last["ce"]
    text = page.hard_why.toPlainText()
    assert f"hard negative {selected['rank']} of {len(rows)}" in text and f"prior #{selected['prior']}:" in text
    assert win.debug_panel.overlay.count("selected") == 1
    assert list(win.doc.project.images[win.editor.index].boxes) == before


# --------------------------------------------------------------------------- NMS


def test_nms_view_keeps_what_mmcv_batched_nms_keeps(qtbot, win):
    open_view(qtbot, win, "nms")
    page = win.debug_panel.pages["nms"]
    result = retrace(qtbot, win, lambda: page.set_params(score_thr=0.3, iou_threshold=0.3, max_per_img=40))
    record = result.main.trace.postprocess
    alive = ~torch.isin(record.cand_stage, torch.tensor([Stage.BELOW_SCORE_THR, Stage.OUTSIDE_NMS_PRE,
                                                         Stage.TOO_SMALL], dtype=record.cand_stage.dtype))
    idx = alive.nonzero().view(-1)
    keep = mmcv_batched_nms(record.cand_box[idx], record.cand_score[idx], record.cand_label[idx], 0.3)[:40]
    assert sorted(idx[keep].tolist()) == sorted(record.kept.tolist())
    page.show_all.setChecked(True)                                   # the view opens with the top 20 only
    assert win.debug_panel.overlay.count("kept") == len(record.kept)
    assert int(page.stages.item(page.stages.rowCount() - 1, 1).text()) == len(record.kept)


def test_d2l_post_processing_has_no_max_per_img(qtbot, win):
    open_view(qtbot, win, "nms", config="tinyssd_synthetic")
    page = win.debug_panel.pages["nms"]
    assert not page.max_det.isEnabled()
    result = retrace(qtbot, win, lambda: page.set_params(score_thr=0.5))
    assert page.postprocess_overrides() == {"score_thr": 0.5}
    record = result.main.trace.postprocess
    assert (record.scores > 0.5).all()


# --------------------------------------------------------------------------- dataset scan


def test_dataset_scan_lists_weak_gts_and_jumps_to_them(qtbot, win):
    open_view(qtbot, win, "scan")
    page = win.debug_panel.pages["scan"]
    with qtbot.waitSignal(page.runner.done, timeout=TIMEOUT):
        page.run_scan()
    scan = page.scan
    project = win.doc.project
    assert scan.images == len(project.images) and len(scan.rows) == project.num_boxes
    assert page.table.rowCount() == int((scan.rows[:, 1] < 1).sum())    # MaxIoU forces >= 1 positive: none
    assert len(scan.shapes) == 6 and len(page.scatter.xData) == len(scan.rows)
    page.k.setValue(3)
    weak = page.weak_rows()
    assert page.table.rowCount() == len(weak) == int((scan.rows[:, 1] < 3).sum()) > 0
    assert list(scan.rows[weak, 1]) == sorted(scan.rows[weak, 1])             # fewest positives first
    image, box_id = (int(v) for v in scan.where[weak[0]])
    page._jump_row(0)
    assert win.editor.index == image and win.canvas.selected == [box_id]
    result = wait_current(qtbot, win)                                          # the scan agrees with the trace
    k = result.box_ids.index(box_id)
    assert int(result.main.trace.coverage.num_pos[k]) == int(scan.rows[weak[0], 1])


def test_detengine_scan_prints_the_gts_the_window_lists(qtbot, win):
    """``detengine scan`` on the project's file lists the same GTs, in the same order, with the same
    positives as the window's Dataset scan (one engine function behind both)."""
    import subprocess
    import sys
    from pathlib import Path
    open_view(qtbot, win, "scan")
    page = win.debug_panel.pages["scan"]
    with qtbot.waitSignal(page.runner.done, timeout=TIMEOUT):
        page.run_scan()
    page.k.setValue(3)
    window = [(int(page.table.item(r, 0).text()), int(page.table.item(r, 2).text()), int(page.table.item(r, 5).text()))
              for r in range(page.table.rowCount())]
    assert window
    proc = subprocess.run([sys.executable, "-m", "detengine", "scan", str(win.doc.project.path), "--config",
                           "ssd300_coco", "--fewer-than", "3"], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{len(page.scan.rows)} GTs in {page.scan.images} images; {len(window)} with fewer")
    cli = [(int(line.split()[0]), int(line.split()[2]), int(line.split()[-1])) for line in lines[2:]]
    assert cli == window


def test_dataset_scan_of_point_priors_counts_positives_not_iou(qtbot, win):
    from app.debug.debug_panel import NO_MODEL
    open_view(qtbot, win, "scan", config="rtmdet_tiny_coco")
    win.debug_panel.set_model_choice(NO_MODEL)                                 # no model: an untrained head's outputs
    page = win.debug_panel.pages["scan"]
    page.k.setValue(3)
    with qtbot.waitSignal(page.runner.done, timeout=TIMEOUT):
        page.run_scan()
    scan = page.scan
    assert scan.is_point and scan.uses_predictions and len(scan.shapes) == 3
    assert page.scatter.name() == "GT (colour: positives)"
    assert "no IoU" in page.summary.text() and "freshly initialised head" in page.summary.text()  # no model chosen
    assert page.table.rowCount() == int((scan.rows[:, 1] < 3).sum()) > 0
    assert all(page.table.item(r, 4).text() == "-" for r in range(page.table.rowCount()))


def test_dsl_scan_with_a_model_agrees_with_the_assignment_view(qtbot, win):
    """RTMDet's assigner weighs the predictions: with a model chosen the scan runs it on every
    image, and a scanned GT has the positives the Assignment view shows for it."""
    from app.debug.debug_panel import RANDOM_INIT
    panel = win.debug_panel
    open_view(qtbot, win, "assign", image=3, config="rtmdet_tiny_coco")
    panel.set_model_choice(RANDOM_INIT)
    wait_current(qtbot, win)
    page = panel.pages["scan"]
    win.show_view("scan")
    page.progress.connect(lambda done, _total: page.cancel_event.set() if done >= 1 else None)  # a few images
    with qtbot.waitSignal(page.runner.done, timeout=TIMEOUT):
        page.run_scan()
    scan = page.scan
    assert scan.model == "random init (seed 0)" and "scanned with random init (seed 0)" in page.summary.text()
    assert 0 < len(scan.rows) and len(set(scan.where[:, 0].tolist())) < 20        # cancelled early
    image, box_id = (int(v) for v in scan.where[0])
    win.show_image(image)
    win.show_view("assign")
    result = wait_current(qtbot, win)
    k = result.box_ids.index(box_id)
    assert int(result.main.trace.coverage.num_pos[k]) == int(scan.rows[0, 1])
    assert result.main.model_name == "random init (seed 0)"


def test_selecting_a_box_on_the_canvas_selects_its_gt(qtbot, win):
    result = open_view(qtbot, win, "assign")
    page = win.debug_panel.pages["assign"]
    box = win.doc.project.images[7].boxes[2]
    win.canvas.set_selection([box.id])
    k = result.box_ids.index(box.id)
    assert page.selected_gt == k
    assert win.debug_panel.overlay.count("positives") == int((result.main.trace.assign_result.gt_inds == k + 1).sum())


# --------------------------------------------------------------------------- review findings (regressions)


@pytest.mark.parametrize("config", ["ssd300_coco", "retinanet_r50_fpn_coco", "rtmdet_tiny_coco", "tinyssd_synthetic"])
def test_untouched_views_send_no_overrides(win, config):
    """An untouched assigner editor or NMS slider must trace exactly the config's own parameters."""
    panel = win.debug_panel
    panel.set_config(config)
    assert panel.pages["assign"].model_overrides() is None
    assert panel.pages["nms"].postprocess_overrides() == {}
    panel.pages["assign"].compare_box.setChecked(True)
    editor_b = panel.pages["assign"].editor_b
    editor_b.type_combo.setCurrentIndex(editor_b.type_combo.findData("ATSSAssigner"))
    assert panel.pages["assign"].compare_overrides()["train_cfg"]["assigner"] == {"_delete_": True,
                                                                                 "type": "ATSSAssigner"}


def test_rtmdet_loss_view_equals_the_detector(qtbot, win):
    result = open_view(qtbot, win, "loss", config="rtmdet_tiny_coco")
    it = result.main
    losses = detector_losses(win, result)
    for name, value in losses.items():
        assert it.trace.loss_breakdown["terms"][name] == pytest.approx(float(value), abs=1e-5, rel=1e-5)


def test_a_checkpoints_classes_are_matched_by_name(qtbot, win, tmp_path):
    """A model trained on classes [circle, square, triangle, ring, bar]; the project then loses
    'square' and gains 'star': labels must follow the names, not the positions."""
    from detengine.cli import resolve_config
    from detengine.models.builder import build_detector
    from detengine.train.checkpoint import save_checkpoint
    from detengine.train.runner import load_cfg
    cfg = load_cfg(str(resolve_config("tinyssd_synthetic")))
    model_cfg = dict(cfg["model"], bbox_head=dict(cfg["model"]["bbox_head"], num_classes=5))
    torch.manual_seed(1)
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "best.pth", {"model": build_detector(model_cfg).state_dict(), "model_cfg": model_cfg})
    (run / "classes.txt").write_text("circle\nsquare\ntriangle\nring\nbar\n")
    (run / "config.py").write_text((resolve_config("tinyssd_synthetic")).read_text().replace(
        "'./tinyssd_banana.py'", repr(str(resolve_config("tinyssd_banana")))))
    win.dialogs.delete_answer = (True, None)
    win.delete_class(2)                                               # square
    win.dialogs.class_names = ["star"]
    win.add_class()                                                   # id 6
    win.use_checkpoint(str(run / "config.py"), str(run / "best.pth"))
    result = open_view(qtbot, win, "nms")
    assert result.label_to_cat == {0: 1, 2: 3, 3: 4, 4: 5}           # square's label 1 has no category now
    assert any("star" in p for p in result.class_problems)
    names = win.debug_panel.class_names()
    assert names[:5] == ["circle", "square (not in the project)", "triangle", "ring", "bar"]
    record = result.main.trace.postprocess
    assert set(record.labels.tolist()) <= set(range(5))


def test_switching_images_drops_the_old_trace(qtbot, win):
    open_view(qtbot, win, "anchors")
    win.debug_panel.runner.request(lambda: time.sleep(0.5) or None, "block")     # keep the worker busy a moment
    win.show_image(8)
    assert win.debug_panel.result is None and win.debug_panel.overlay.count("priors") == 0
    wait_current(qtbot, win)


def test_a_config_the_window_cannot_use_leaves_it_up_saying_why(qtbot, tmp_path):
    """Started with a two-stage config: the window opens on the default config, says why in a
    dialog and above every trace, and the config combo never shows another file's name."""
    from app.main_window import MainWindow

    from ..projects import FakeDialogs
    bad = tmp_path / "faster_rcnn.py"
    bad.write_text("model = dict(type='FasterRCNN', backbone=dict(type='ResNet', depth=50))\n")
    w = MainWindow(dialogs=FakeDialogs(), restore_layout=False, config=str(bad), view="anchors")
    qtbot.addWidget(w)
    try:
        w.show()
        qtbot.waitUntil(lambda: "notice" in w.dialogs.names(), timeout=5000)     # not modal: the window works
        title, text = next(c[1:] for c in w.dialogs.calls if c[0] == "notice")
        assert str(bad) in text and "FasterRCNN" in text and "ssd300_coco" in text
        assert w.debug_panel.config == "ssd300_coco" and w.debug_panel.config_combo.currentText() == "ssd300_coco"
        with qtbot.waitSignal(w.debug_panel.traced, timeout=TIMEOUT):
            w.debug_panel.schedule()
        assert w.debug_panel.status.text().startswith(f"Cannot use config {bad}")
        with pytest.raises(Exception, match="FasterRCNN"):         # choosing it later changes nothing
            w.debug_panel.set_config(str(bad))
        assert w.debug_panel.config == "ssd300_coco"
    finally:
        w.debug_panel.shutdown()
        w.training_panel.shutdown()
        w.eval_panel.shutdown()
        if w.doc is not None:
            w.doc._autosave.stop()


def test_a_config_file_is_named_by_its_file(qtbot, win, tmp_path):
    from detengine.api import find_config
    mine = tmp_path / "my_retina.py"
    mine.write_text(f"_base_ = {str(find_config('retinanet_r50_fpn_coco'))!r}\n")
    win.debug_panel.set_config(str(mine))
    assert win.debug_panel.config_combo.currentText() == "my_retina.py"
    result = open_view(qtbot, win, "anchors")
    assert result is not None and win.debug_panel.status.text().startswith(f"{mine}: network input")


def test_a_config_beside_a_checkpoint_runs_only_when_trusted_asked_once(qtbot, win, tmp_path):
    """An older checkpoint (no config inside) with a config.py beside it: the window asks before
    running it, once per file content; 'no' keeps the current config and runs nothing."""
    from detengine.cli import resolve_config
    from detengine.models.builder import build_detector
    from detengine.train.checkpoint import save_checkpoint
    from detengine.train.runner import load_cfg
    cfg = load_cfg(str(resolve_config("tinyssd_synthetic")))
    model_cfg = dict(cfg["model"], bbox_head=dict(cfg["model"]["bbox_head"], num_classes=5))
    run = tmp_path / "downloaded"
    run.mkdir()
    save_checkpoint(run / "best.pth", {"model": build_detector(model_cfg).state_dict(), "model_cfg": model_cfg})
    marker = tmp_path / "ran.txt"
    text = resolve_config("tinyssd_synthetic").read_text().replace(
        "'./tinyssd_banana.py'", repr(str(resolve_config("tinyssd_banana"))))
    (run / "config.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n" + text)
    panel = win.debug_panel
    before = panel.config
    win.dialogs.run_config_answer = False
    win.use_checkpoint(str(run / "config.py"), str(run / "best.pth"))
    assert not marker.exists() and panel.config == before
    assert [c for c in win.dialogs.calls if c[0] == "ask_run_config"] == [("ask_run_config", str(run / "config.py"))]
    win.dialogs.run_config_answer = True
    win.use_checkpoint(str(run / "config.py"), str(run / "best.pth"))
    assert not marker.exists() and len([c for c in win.dialogs.calls if c[0] == "ask_run_config"]) == 1  # remembered
    (run / "config.py").write_text((run / "config.py").read_text() + "\n# changed\n")           # new content: asked again
    win.use_checkpoint(str(run / "config.py"), str(run / "best.pth"))
    assert marker.exists() and panel.config == str(run / "config.py")
