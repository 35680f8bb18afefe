"""The Dataset scan's "during training" mode (issue 20 part 1): a run's per-GT probe lists the
starved GTs, a click plots the GT's positives and losses over the iterations and jumps to it in
the open project; a run without a probe says so; ``--view scan-training --run DIR``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.main import parse_args
from detengine.api import register_run

TIMEOUT = 60_000
ITERS = (0, 10, 20, 30)


@pytest.fixture
def win(sample_window):
    return sample_window


def _probe_run(tmp_path, project, image: int):
    """A run folder whose probe follows ``image`` of the open project: GT0 never has a positive,
    GT1 had none in the first half, the others always have some."""
    record = project.images[image]
    boxes = [b for b in record.boxes if not b.iscrowd]
    names = {c.id: c.name for c in project.categories}
    classes = sorted(names.values())
    run = tmp_path / "tinyssd-probe-run"
    run.mkdir()
    (run / "log.jsonl").write_text(json.dumps({"type": "start", "config": "tinyssd_synthetic.py"}) + "\n")
    (run / "probe.json").write_text(json.dumps({
        "version": 1, "interval": 10, "classes": classes,
        "images": [{"index": 0, "image_id": record.id, "file_name": record.file_name,
                    "path": str(project.image_path(image).resolve()), "height": record.height, "width": record.width,
                    "boxes": [list(b.xyxy) for b in boxes], "labels": [classes.index(names[b.category_id]) for b in boxes],
                    "ignore": [], "input_boxes": [[v / 2 for v in b.xyxy] for b in boxes]}]}))
    lines = []
    for it_n, it in enumerate(ITERS):
        for k in range(len(boxes)):
            pos = 0 if k == 0 or (k == 1 and it_n < 2) else 3 + it_n
            lines.append(json.dumps({"iter": it, "epoch": 0, "image": 0, "gt": k, "pos": pos,
                                     "cls": 0.5 / (1 + it_n) if pos else None, "box": 0.2 if pos else None}))
    (run / "probe.jsonl").write_text("\n".join(lines) + "\n")
    register_run(run)
    return run, boxes


def _show(qtbot, win, run=None):
    win.show_view("scan")
    page = win.debug_panel.pages["scan"]
    view = page.training
    with qtbot.waitSignal(view.loaded, timeout=TIMEOUT):
        if run is None:
            page.set_mode("training")                     # the newest run with a probe comes up
        else:
            page.show_training_run(run)
    return page, view


def test_training_mode_lists_a_starved_gt_plots_it_and_jumps_to_it(qtbot, win, tmp_path):
    project = win.doc.project
    image = next(i for i, im in enumerate(project.images) if len(im.boxes) >= 3)
    run, boxes = _probe_run(tmp_path, project, image)
    page, view = _show(qtbot, win)
    assert page.stack.currentWidget() is view and view.run_dir == run.resolve()
    assert view.table.rowCount() == 2                                        # >= 50 %: GT0 (100 %), GT1 (50 %)
    assert [view.table.item(r, 1).text() for r in range(2)] == ["GT0", "GT1"]
    assert [view.table.item(r, 0).text() for r in range(2)] == ["100", "50"]
    assert "2 starved" in view.summary.text() and f"{len(boxes)} GTs, 4 probes" in view.summary.text()
    assert view.table.item(0, 3).text() == "{:.0f}x{:.0f}".format(boxes[0].width / 2, boxes[0].height / 2)
    # the first (most starved) GT is plotted: positives all 0, no loss to draw, said on the plot
    (curve, zeros) = view.pos_plot.listDataItems()
    assert list(curve.xData) == list(ITERS) and list(curve.yData) == [0, 0, 0, 0] and len(zeros.xData) == 4
    assert view.loss_plot.listDataItems() == [] and "without a positive in 4 of 4 probes" in view.detail.text()
    # a click on GT1: its history, and the canvas shows that box
    view.table.selectRow(1)
    curve = view.pos_plot.listDataItems()[0]
    assert list(curve.yData) == [0, 0, 5, 6]
    cls, box = view.loss_plot.listDataItems()
    assert np.isnan(cls.yData[:2]).all() and list(cls.yData[2:]) == pytest.approx([0.5 / 3, 0.5 / 4])
    assert list(box.yData[2:]) == pytest.approx([0.2, 0.2])
    qtbot.waitUntil(lambda: win.editor.index == image and win.canvas.selected == [boxes[1].id], timeout=TIMEOUT)
    # 0 %: every probe GT, most starved first
    view.share.setValue(0)
    assert view.table.rowCount() == len(boxes)
    assert view.selected_gt().gt == 1                                       # the selection stays on its GT


def test_a_probe_image_outside_the_project_is_said_and_a_run_without_a_probe_too(qtbot, win, tmp_path):
    project = win.doc.project
    run, _boxes = _probe_run(tmp_path, project, 3)
    saved = json.loads((run / "probe.json").read_text())
    saved["images"][0].update(file_name="elsewhere/other.jpg", path="/nowhere/other.jpg")
    (run / "probe.json").write_text(json.dumps(saved))
    page, view = _show(qtbot, win, run)
    shown = win.editor.index
    view.table.selectRow(1)
    assert "Not in the open project (elsewhere/other.jpg)" in view.detail.text() and win.editor.index == shown
    bare = tmp_path / "no-probe"
    bare.mkdir()
    with qtbot.waitSignal(view.loaded, timeout=TIMEOUT):
        view.show_run(bare)
    assert view.table.rowCount() == 0 and "has no per-GT probe" in view.summary.text()
    page.set_mode("project")
    assert page.stack.currentIndex() == 0 and page.minimumSizeHint().width() <= 330


def test_the_training_mode_fits_a_narrow_dock(qtbot, win, tmp_path):
    run, _boxes = _probe_run(tmp_path, win.doc.project, 2)
    page, view = _show(qtbot, win, run)
    assert page.minimumSizeHint().width() <= 330 - 8                          # tests/app/debug/test_debug_narrow
    win.debug_panel.resize(300, 900)
    qtbot.wait(1)
    header = view.table.horizontalHeader()
    assert header.length() <= view.table.viewport().width()                  # no column hidden to the right


def test_view_scan_training_and_run_on_the_command_line():
    args = parse_args(["--run", "some/run"])
    assert args.view == "scan-training" and args.run == "some/run"
    assert parse_args(["--view", "scan-training"]).run is None
    with pytest.raises(SystemExit):
        parse_args(["--view", "anchors", "--run", "some/run"])
