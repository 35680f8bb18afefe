"""Training from the window, issue 17 item 6: pause shows 'paused' and holds the ETA, a stopped run
is listed as 'stopped at iteration N' by itself and resumes from the Runs tab with its iteration
count going on, closing asks while a run trains, the log holds one run and no line twice, the
built-in synthetic set as data, the warm-up warning, and the curves (epochs, read-out, legends
outside the data, overlays of every curve, a one-point AP plot).

The two tests with a trainer run TinySSD for a few iterations with one thread
(``OMP_NUM_THREADS=1``): on a loaded 2-core machine torch's two threads make a step ~25x slower.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from detengine.train.events import read_jsonl

RUN_TIMEOUT = 60_000


@pytest.fixture
def panel(sample_window, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sample_window.show_view("train")
    p = sample_window.training_panel
    p.config_combo.setCurrentIndex(p.config_combo.findData("tinyssd_synthetic"))
    p.batch.setValue(4)
    return p


def _row(panel, run) -> int:
    return [panel.runs.item(r, 0).text() for r in range(panel.runs.rowCount())].index(run.name)


def _finish(qtbot, panel) -> tuple[int, str]:
    with qtbot.waitSignal(panel.runFinished, timeout=RUN_TIMEOUT) as done:
        pass
    return done.args


def test_pause_stop_and_resume_a_stopped_run_from_the_runs_tab(qtbot, panel):
    panel.max_iters.setValue(12)
    assert panel.warning.isVisible() and "warm-up (LinearLR, 200 iterations)" in panel.warning.text()
    panel.log.appendPlainText("a line of an earlier run")
    assert panel.start()
    assert "a line of an earlier run" not in panel.log.toPlainText()              # the log is this run's
    qtbot.waitUntil(lambda: panel.curve_points() >= 1, timeout=RUN_TIMEOUT)
    panel.buttons["pause"].click()
    qtbot.waitUntil(lambda: panel.paused, timeout=RUN_TIMEOUT)
    assert "paused after iteration" in panel.status.text() and "ETA on hold" in panel.status.text()
    assert panel.progress.format().startswith("paused")
    panel.buttons["stop"].click()                                                # a stop while paused
    code, message = _finish(qtbot, panel)
    run, done = panel.process.run_dir, panel.curve_points()
    assert code == 0 and f"stopped at iteration {done}" in message and 0 < done < 12
    assert panel.run_status(run) == f"stopped at iteration {done}"              # listed by itself
    lines = panel.log.toPlainText().splitlines()
    assert not [line for line in lines if line.startswith("[")]                  # no console echo of events
    assert lines.count("paused") == 1 and sum("stopped at epoch" in line for line in lines) == 1
    assert (run / "last.pth").exists() and "a line of an earlier run" not in lines

    panel.runs.selectRow(_row(panel, run))
    assert panel.run_buttons["continue"].isEnabled()
    panel.run_buttons["continue"].click()
    assert panel.log.toPlainText().splitlines()[0].startswith(f"resuming {run}")  # cleared for the new session
    assert panel.run_status(run) == "running"
    code, message = _finish(qtbot, panel)
    assert code == 0 and message == "training finished."
    assert panel.run_status(run) == "finished"
    assert panel.live.steps == list(range(12))                                   # the curves went on
    x, _ = panel.curve_view._curve_items[("loss", "loss")][1].getData()
    assert x[0] == 1 and x[-1] == 12
    steps = [e["global_step"] for e in read_jsonl(run / "log.jsonl") if e["type"] == "iter"]
    assert steps == list(range(12))                                              # resumed at `done`, not at 0
    assert sum(e["type"] == "start" for e in read_jsonl(run / "log.jsonl")) == 2


def test_closing_asks_while_training_and_quit_stops_the_run(qtbot, panel):
    dialogs = panel.window.dialogs
    assert panel.confirm_close() and "ask_stop_training" not in dialogs.names()  # nothing runs: no question
    panel.max_iters.setValue(500)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.curve_points() >= 1, timeout=RUN_TIMEOUT)
    window = panel.window
    dialogs.stop_training_answer = False                                         # Ctrl+Q, "keep training"
    window.actions_by_name["quit"].trigger()
    assert window.isVisible() and panel.running()
    assert dialogs.calls[-1] == ("ask_stop_training", panel.process.run_dir.name)
    dialogs.stop_training_answer = True                                          # stop it and quit
    assert panel.confirm_close()
    assert not panel.running()
    run = panel.process.run_dir
    events = read_jsonl(run / "log.jsonl")
    assert (run / "last.pth").exists() and [e["type"] for e in events][-2:] == ["stop", "end"]
    assert panel.status.text().startswith("training stopped at iteration")


def _write_log(run, events) -> None:
    run.mkdir(parents=True)
    (run / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def _iters(first, last, ipe=10):
    return [{"type": "iter", "global_step": s, "iters_per_epoch": ipe, "loss": 1.0, "losses": {}, "lr": 0.1}
            for s in range(first, last)]


def test_runs_list_says_how_each_run_ended_and_follows_the_runs_folder(qtbot, sample_window):
    from app.training.training_panel import runs_root
    from app.training.training_process import ARGS_FILE
    panel = sample_window.training_panel
    root = runs_root()
    start, end = {"type": "start"}, {"type": "end", "global_step": 7}
    logs = {"finished": [start, *_iters(0, 7), end],
            "stopped": [start, *_iters(0, 7), {"type": "stop", "message": "stopped"}, end],
            "nan": [start, *_iters(0, 1), {"type": "error", "kind": "nan_loss", "global_step": 1}],
            "resumed": [start, *_iters(0, 3), {"type": "stop"}, {"type": "end", "global_step": 3}, start,
                        *_iters(3, 7), end],
            "killed": [start, *_iters(0, 4)]}
    for name, events in logs.items():
        _write_log(root / f"x-{name}", events)
    want = {"finished": "finished", "stopped": "stopped at iteration 7", "nan": "failed (NaN at iteration 2)",
            "resumed": "finished", "killed": "unfinished"}
    qtbot.waitUntil(lambda: panel.runs.rowCount() == 5, timeout=5000)            # no Refresh: the folder is watched
    assert {r.name[2:]: panel.run_status(r) for r in panel._runs} == want

    stopped = root / "x-stopped"
    panel.runs.selectRow(_row(panel, stopped))
    assert not panel.run_buttons["continue"].isEnabled()                         # not started by the window
    assert "python -m detengine train" in panel.run_buttons["continue"].toolTip()
    (stopped / ARGS_FILE).write_text(json.dumps({"args": ["tinyssd_synthetic", "--data", "synthetic"]}))
    (stopped / "last.pth").write_bytes(b"")
    panel.refresh_runs()
    assert panel.run_buttons["continue"].isEnabled() and panel.selected_run() == stopped  # the selection kept
    (root / "x-finished" / "last.pth").write_bytes(b"")
    (root / "x-finished" / ARGS_FILE).write_text(json.dumps({"args": []}))
    assert panel.resumable(root / "x-finished") == "it finished"


def test_the_built_in_synthetic_set_and_the_warm_up_warning(sample_window, tmp_path):
    panel = sample_window.training_panel
    panel.config_combo.setCurrentIndex(panel.config_combo.findData("tinyssd_synthetic"))
    assert not panel.warning.isVisible()                                         # 8 epochs of 30 iterations
    panel.data_source.setCurrentIndex(panel.data_source.findData("synthetic"))
    args = panel.train_args(tmp_path, None)
    assert args[1:3] == ["--data", "synthetic"] and not {"--val-data", "--images"} & set(args)
    assert "6000 train / 60 val images of 128 px" in panel.split_label.text() and not panel.resplit.isEnabled()
    panel.max_iters.setValue(199)                                                # the warm-up is 200 iterations
    assert "ends inside the config's warm-up (LinearLR, 200 iterations)" in panel.warning.text()
    panel.max_iters.setValue(200)
    assert panel.warning.text() == ""
    panel.data_source.setCurrentIndex(panel.data_source.findData("project"))
    panel.max_iters.setValue(0)
    panel.epochs.setValue(1)
    panel.batch.setValue(64)                                                     # 240 images: 4 iterations
    assert "1 epoch(s) of 4 iterations" in panel.warning.text()
    assert panel.train_args(tmp_path, tmp_path)[1:3] == ["--data", str(tmp_path / "train.json")]


def _curves(name, n, ipe, evals=True):
    from detengine.api import RunCurves
    curves = RunCurves(name)
    for s in range(n):
        loss = 2 / (1 + s / 20) + 0.1 * math.sin(s)
        curves.add({"type": "iter", "global_step": s, "loss": loss, "losses": {"loss_cls": loss / 2},
                    "lr": 0.01 * s / n})
        if evals and (s + 1) % ipe == 0:
            curves.add({"type": "eval", "metrics": {"AP": 0.02, "AP50": 0.03}})
    return curves


def test_curves_epochs_read_out_legends_overlays_and_one_ap_point(qtbot, sample_window):
    from PySide6.QtCore import QPointF
    panel = sample_window.training_panel
    view = panel.curve_view
    sample_window.show_view("train")
    panel.curves = _curves("now", 60, 60)                                        # one evaluation: one AP point
    panel._ipe["now"] = 60
    view.smoothing.setValue(0)
    panel.redraw_curves()
    qtbot.wait(50)
    (x0, x1), (y0, y1) = view.ap_plot.vb.viewRange()
    assert x0 < 60 <= x1 and x1 - x0 > 30 and y0 <= 0 and 0.03 < y1 < 0.1       # not a degenerate range
    for plot, (_, legend) in view.legends.items():                   # legends above, not over, the data
        assert not legend.sceneBoundingRect().intersects(plot.vb.sceneBoundingRect())

    scene_pos = view.loss_plot.vb.mapViewToScene(QPointF(30, 1.0))
    view.plots.scene().sigMouseMoved.emit(scene_pos)                 # hover: the values at x = 30
    loss = view._curve_items[("loss", "loss")][1].yData[29]
    assert "iteration 30" in view.legend_text(view.loss_plot) and f"loss {loss:.4g}" in view.legend_text(view.loss_plot)
    assert "AP 0.02 @60" in view.legend_text(view.ap_plot) and view.cursors[view.lr_plot].isVisible()

    view.x_axis.setCurrentIndex(view.x_axis.findData("epochs"))
    x, _ = view._curve_items[("AP",)][1].getData()
    assert list(x) == [1.0] and view._curve_items[("loss", "loss")][1].xData[-1] == 1.0

    panel.overlays = {"a": _curves("a", 120, 40), "b": _curves("b", 80, 40)}
    panel._ipe.update(a=40, b=40)
    view.update_overlay_terms(panel.overlays)
    view.overlay_term.setCurrentIndex(view.overlay_term.findData("*"))         # every loss term
    keys = set(view._curve_items)
    for run in ("a", "b"):
        assert {("overlay", run, "loss", "loss"), ("overlay", run, "loss", "loss_cls"), ("overlay", run, "lr"),
                ("overlay", run, "AP"), ("overlay", run, "AP50")} <= keys
    colours = {run: view._curve_items[("overlay", run, "lr")][1].opts["pen"].color().name() for run in "ab"}
    own_lr = view._curve_items[("lr",)][1].opts["pen"].color().name()
    assert len(set(colours.values())) == 2 and own_lr not in colours.values()
    np.testing.assert_allclose(view._curve_items[("overlay", "a", "AP")][1].xData, [1, 2, 3])
    panel.clear_overlays()
    assert not [k for k in view._curve_items if k[0] == "overlay"]


def test_the_console_echo_of_events_is_not_logged_twice(qtbot, sample_window, tmp_path):
    from app.training.training_panel import add_event
    from app.training.training_process import TrainingProcess
    from detengine.api import RunCurves
    process = TrainingProcess(tmp_path, [])
    lines = []
    process.log.connect(lines.append)
    process._read(b"[start] training on cpu\n[warning] x\nepoch 1 eval: AP 0.1\n[checkpoint] /a/last.pth\n"
                  b"epoch 1/1 iter 1/60  loss 2.0\nrun folder: /a\n", False)
    process._read(b"error: the loss diverged\nerror: no such config\nTraceback (most recent call last):\n", True)
    process.last_error = {"message": "the loss diverged"}
    process._say_held_errors()
    assert lines == ["epoch 1/1 iter 1/60  loss 2.0", "Traceback (most recent call last):", "error: no such config"]
    curves = RunCurves("r")
    for e in _iters(0, 10) + _iters(6, 8):                                       # resumed from an older last.pth
        add_event(curves, e)
    assert curves.steps == list(range(8)) and len(curves.lr) == 8


def test_the_starved_gt_curves_follow_the_trainer_s_statistics(qtbot, sample_window):
    """assign/gt_zero_pos_frac (all and by size) from the iter events, in %, under the AP plot."""
    from detengine.api import RunCurves
    panel = sample_window.training_panel
    sample_window.show_view("train")
    run = RunCurves("now")
    for step in range(25):
        stats = {"assign/gt_zero_pos_frac": 0.5 - step / 100, "assign/gt_zero_pos_frac_small": 0.8}
        run.add({"type": "iter", "global_step": step, "loss": 1.0, "losses": {}, "lr": 0.1,
                 **({"assign": stats} if step % 10 == 0 else {})})
    panel.curves = run
    panel.redraw_curves()
    view = panel.curve_view
    x, y = view._curve_items[("starved", "")][1].getData()
    assert list(x) == [1.0, 11.0, 21.0] and list(y) == pytest.approx([50.0, 40.0, 30.0])
    assert ("starved", "_small") in view._curve_items and ("starved", "_large") not in view._curve_items
    assert "all" in view.legend_text(view.starved_plot)
