"""Training, evaluation and export from the window: a TinySSD run in a child process, live
curve points, stop within one iteration, the run list, load its checkpoint, evaluate, export,
read the export back with COCO.loadRes; a diverging run reports NaN and the window stays up."""
from __future__ import annotations

import json

import pytest
from pycocotools.coco import COCO

from detengine.data.project import split_indices
from detengine.train.events import read_jsonl

RUN_TIMEOUT = 240_000
COARSE_CLOCK_S = 0.02


@pytest.fixture
def win(sample_window):
    sample_window.show_view("train")
    return sample_window


@pytest.mark.slow
def test_run_stop_list_load_evaluate_export(qtbot, win, tmp_path):
    panel = win.training_panel
    panel.config_combo.setCurrentIndex(panel.config_combo.findData("tinyssd_synthetic"))
    panel.epochs.setValue(1)
    panel.batch.setValue(4)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.curve_points() >= 2, timeout=RUN_TIMEOUT)     # live curve points
    qtbot.waitUntil(lambda: len(panel.curve_view.loss_plot.listDataItems()) >= 3, timeout=5000)  # loss + 2 terms
    control = panel.process.control
    panel.buttons["pause"].click()                                               # pause: no iteration runs
    qtbot.waitUntil(lambda: "paused" in panel.log.toPlainText().splitlines(), timeout=RUN_TIMEOUT)
    paused_at = panel.curve_points()
    qtbot.wait(1500)
    assert panel.curve_points() == paused_at and not panel.buttons["pause"].isEnabled()
    panel.buttons["resume"].click()                                              # resume: it goes on
    qtbot.waitUntil(lambda: panel.curve_points() > paused_at, timeout=RUN_TIMEOUT)
    panel.stop()
    with qtbot.waitSignal(panel.runFinished, timeout=RUN_TIMEOUT) as done:
        pass
    code, message = done.args
    assert code == 0, message
    run_dir = panel.process.run_dir
    events = read_jsonl(run_dir / "log.jsonl")
    iters = [e for e in events if e["type"] == "iter"]
    # No iteration began after the stop was written. An event's time is its end; its start is that
    # less its duration (batch / images_per_s). The file's mtime comes from the kernel's coarse
    # clock, up to one tick (<= 10 ms) behind time.time(): allowed for, with room.
    stop_time = control.stat().st_mtime + COARSE_CLOCK_S
    started_after = [e["global_step"] for e in iters if e["time"] - 4 / e["images_per_s"] > stop_time]
    assert not started_after, (started_after, stop_time)
    assert iters[-1]["global_step"] < 59 and any(e["type"] == "stop" for e in events)

    panel.refresh_runs()
    row = [panel.runs.item(r, 0).text() for r in range(panel.runs.rowCount())].index(run_dir.name)
    assert "last.pth" in panel.runs.item(row, 4).text()
    panel.runs.selectRow(row)
    assert panel.load_checkpoint(panel.selected_run()) == str(run_dir / "last.pth")
    assert win.debug_panel.model_choice() == f"ckpt:{run_dir / 'last.pth'}"

    evaluator = win.eval_panel
    with qtbot.waitSignal(evaluator.evaluated, timeout=RUN_TIMEOUT):
        evaluator.evaluate()
    result = evaluator.result
    _, val = split_indices(win.doc.project)
    assert result.metrics.num_images == len(val) == 60
    assert evaluator.metrics.rowCount() == 12 and evaluator.per_class.rowCount() == 5
    counts = win.image_list.model.eval_counts
    assert set(counts) == set(val)
    assert not win.image_list.table.isColumnHidden(5)
    evaluator.score.setValue(100)                                                # counts follow the score slider
    evaluator.recount()
    assert all(fp == 0 for _, fp, _ in win.image_list.model.eval_counts.values())

    out = tmp_path / "preds.json"
    n = evaluator.export_to(out)
    exported = json.loads(out.read_text())
    assert len(exported) == n == len(result.results)
    gt = win.doc.project.to_coco()
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    if n:
        dt = coco.loadRes(str(out))
        assert len(dt.getAnnIds()) == n
        assert {a["image_id"] for a in exported} <= {win.doc.project.images[i].id for i in val}


def test_accept_predictions_as_gt_is_undoable(qtbot, win):
    win.show_image(250)                                                          # a val image
    evaluator = win.eval_panel
    with qtbot.waitSignal(evaluator.evaluated, timeout=RUN_TIMEOUT):
        evaluator.evaluate([250])                                                # "This image", random init model
    assert evaluator.result.metrics.num_images == 1
    evaluator.score.setValue(0)
    shown = evaluator.shown_predictions()
    marks = evaluator.prediction_marks()                          # the predictions, then the missed GTs
    assert len(win.canvas.prediction_items) == len(marks) and sum(m[3] is not None for m in marks) == len(shown) > 0
    before = len(win.doc.project.images[250].boxes)
    added = evaluator.accept_predictions()
    assert len(win.doc.project.images[250].boxes) == before + added > before
    win.doc.undo_group.undo()
    assert len(win.doc.project.images[250].boxes) == before


def test_a_diverging_run_shows_the_message_and_the_window_stays(qtbot, win, monkeypatch):
    monkeypatch.setenv("DETSCOPE_FAULT_NAN_AT_STEP", "1")                       # injected: step 1's loss is NaN
    panel = win.training_panel
    panel.config_combo.setCurrentIndex(panel.config_combo.findData("tinyssd_synthetic"))
    panel.epochs.setValue(1)
    panel.batch.setValue(4)
    assert panel.start()
    with qtbot.waitSignal(panel.runFinished, timeout=RUN_TIMEOUT) as done:
        pass
    code, message = done.args
    assert code == 3
    assert "NaN or infinite" in message and "iteration 2" in message and "NaN" in panel.error.text()
    assert win.isVisible() and panel.buttons["start"].isEnabled()


def test_run_list_follows_a_growing_log_and_warnings_reach_the_log(win):
    from app.training.training_panel import RunCurves, runs_root
    panel = win.training_panel
    run = runs_root() / "tinyssd_synthetic-20261122-000000"
    run.mkdir(parents=True)
    log = run / "log.jsonl"
    log.write_text(json.dumps({"type": "eval", "epoch": 0, "metrics": {"AP": 0.25}}) + "\n")
    panel.refresh_runs()
    row = next(r for r in range(panel.runs.rowCount()) if panel.runs.item(r, 0).text() == run.name)
    assert (panel.runs.item(row, 2).text(), panel.runs.item(row, 3).text()) == ("unfinished", "0.2500")
    with log.open("a") as f:                                                    # the run goes on: read again
        f.write(json.dumps({"type": "eval", "epoch": 1, "metrics": {"AP": 0.5}}) + "\n")
        f.write(json.dumps({"type": "end", "message": "done"}) + "\n")
    panel.refresh_runs()
    assert (panel.runs.item(row, 2).text(), panel.runs.item(row, 3).text()) == ("finished", "0.5000")
    panel.live = RunCurves("live")                                              # as during a run
    panel._on_event({"type": "warning", "message": "custom_hooks: 'SyncNormHook' is not supported here"})
    assert panel.log.toPlainText().splitlines()[-1] == "warning: custom_hooks: 'SyncNormHook' is not supported here"


def test_mixed_precision_is_offered_with_cuda_only(win, tmp_path):
    panel = win.training_panel
    assert panel.device.currentData() == "cpu" and not panel.amp.isEnabled()    # this machine: no CUDA
    args = panel.train_args(tmp_path, tmp_path)
    assert not {"--amp", "--epochs", "--batch-size"} & set(args)                # the config's epochs and batch
    panel.epochs.setValue(3)
    assert panel.train_args(tmp_path, tmp_path)[-2:] == ["--epochs", "3"]
    panel.device.addItem("cuda:0 (test)", "cuda:0")                             # as on a machine with a GPU
    panel.device.setCurrentIndex(panel.device.count() - 1)
    assert panel.amp.isEnabled()
    panel.amp.setChecked(True)
    args = panel.train_args(tmp_path, tmp_path)
    assert args[args.index("--device") + 1] == "cuda:0" and args[-1] == "--amp"
    panel.device.setCurrentIndex(0)
    assert not panel.amp.isChecked() and "--amp" not in panel.train_args(tmp_path, tmp_path)


def test_start_from_pretrained_scratch_or_a_checkpoint(win, tmp_path):
    panel = win.training_panel
    assert [panel.start_from.itemData(i) for i in range(panel.start_from.count())] == ["scratch", "checkpoint"]
    assert "--no-pretrained" not in panel.train_args(tmp_path, tmp_path)  # TinySSD names no pretrained weights
    panel.config_combo.setCurrentIndex(panel.config_combo.findData("retinanet_r50_fpn_coco"))
    assert panel.start_from.currentText() == "pretrained backbone (torchvision://resnet50)"
    args = panel.train_args(tmp_path, tmp_path)
    assert "--no-pretrained" not in args and "--load-from" not in args  # the config's init_cfg applies
    panel.start_from.setCurrentIndex(panel.start_from.findData("scratch"))
    assert panel.train_args(tmp_path, tmp_path)[-1] == "--no-pretrained"
    panel.set_start_checkpoint(str(tmp_path / "coco_retinanet.pth"))
    assert panel.start_from.currentText() == "checkpoint: coco_retinanet.pth"
    assert panel.train_args(tmp_path, tmp_path)[-2:] == ["--load-from", str(tmp_path / "coco_retinanet.pth")]


def test_a_cli_run_appears_in_the_runs_tab(win, tmp_path):
    """One naming scheme (<config>-<date>-<time>) and one registry: a run the CLI made in its own
    folder is listed by the window, with its config, status and best AP."""
    from detengine.api import make_run_dir
    from detengine.train.runner import train_from_config
    from tests.engine.runs import tiny_tinyssd_cfg
    cfg = dict(tiny_tinyssd_cfg(tmp_path / "data"), _name="tinyssd_banana.py")
    run = make_run_dir(tmp_path / "cli_runs", "tinyssd_banana")  # what `detengine train` names its folder
    assert run.name.startswith("tinyssd_banana-2")
    train_from_config(cfg, epochs=1, work_dir=run, console=False)
    panel = win.training_panel
    panel.refresh_runs()
    rows = {panel.runs.item(r, 0).text(): r for r in range(panel.runs.rowCount())}
    assert run.name in rows
    r = rows[run.name]
    assert [panel.runs.item(r, c).text() for c in (1, 2)] == ["tinyssd_banana", "finished"]
    assert panel.runs.item(r, 3).text() != "-" and "last.pth" in panel.runs.item(r, 4).text()


def test_curves_are_made_once_and_smoothed_incrementally(win):
    """Redraws update the same plot items; the incremental smoothing equals a full re-smoothing."""
    import numpy as np

    from app.training.training_panel import Smoother, smooth
    from detengine.api import RunCurves
    panel = win.training_panel
    panel.curves = panel.live = RunCurves("live")
    values = []
    for step in range(300):
        loss = 1.0 / (1 + step) + 0.1 * np.sin(step)
        values.append(loss)
        panel._on_event({"type": "iter", "global_step": step, "epoch": 0, "iter": step, "iters_per_epoch": 300,
                         "max_epochs": 1, "images_per_s": 10.0, "loss": loss, "losses": {"loss_cls": loss / 2},
                         "lr": 0.01})
        if step in (10, 299):
            panel.redraw_curves()
            if step == 10:
                items = {k: v[1] for k, v in panel.curve_view._curve_items.items()}
    assert {k: v[1] for k, v in panel.curve_view._curve_items.items()} == items  # the same items, updated
    x, y = panel.curve_view._curve_items[("loss", "loss")][1].getData()
    np.testing.assert_allclose(y, smooth(np.array(values), 0.6), rtol=1e-12)
    s = Smoother()
    np.testing.assert_allclose(s(values[:5], 0.3), smooth(np.array(values[:5]), 0.3))
    np.testing.assert_allclose(s(values, 0.3), smooth(np.array(values), 0.3))
    np.testing.assert_allclose(s(values, 0.9), smooth(np.array(values), 0.9))  # a new weight starts over
    panel.curves = None
    panel.redraw_curves()
    assert panel.curve_view._curve_items == {}


def test_the_warm_up_is_found_for_linear_and_quadratic_warm_ups():
    from app.training.training_panel import warmup_iterations
    linear = {"param_scheduler": [dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
                                  dict(type="MultiStepLR", by_epoch=True, begin=0, end=12, milestones=[8, 11])]}
    assert warmup_iterations(linear, 100) == (500, "LinearLR")
    yolox = {"param_scheduler": [dict(type="mmdet.QuadraticWarmupLR", by_epoch=True, begin=0, end=5,
                                      convert_to_iter_based=True),
                                 dict(type="CosineAnnealingLR", by_epoch=True, begin=5, end=285, T_max=280)]}
    assert warmup_iterations(yolox, 40) == (200, "QuadraticWarmupLR")
    assert warmup_iterations({"param_scheduler": []}, 40) is None
