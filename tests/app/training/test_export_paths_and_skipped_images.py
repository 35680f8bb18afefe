"""The window's Export Predictions to a bad path shows an error dialog (and writes nothing); the
training panel counts the images the trainer skipped as undecodable."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest


@pytest.fixture
def win(sample_window):
    sample_window.show_view("train")
    return sample_window


def test_export_to_a_bad_path_shows_an_error(win, tmp_path):
    evaluator = win.eval_panel
    results = [{"image_id": 1, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}]
    evaluator.result = SimpleNamespace(results=results)
    dialogs = win.dialogs
    plain = tmp_path / "plain.txt"
    plain.write_text("a file")
    for bad, says in ((tmp_path, "is a folder"), (plain / "preds.json", "is a file, not a folder")):
        before = len(dialogs.calls)
        assert evaluator.export_to(bad) == 0
        errors = [c for c in dialogs.calls[before:] if c[0] == "error"]
        assert len(errors) == 1 and errors[0][1] == "Export predictions" and says in errors[0][2]
    assert plain.read_text() == "a file"
    good = tmp_path / "out" / "preds.json"
    assert evaluator.export_to(good) == 1 and json.loads(good.read_text()) == results


def test_skipped_images_are_counted_in_the_status(win):
    from app.training.training_panel import RunCurves
    panel = win.training_panel
    panel.live = RunCurves("live")                                              # as during a run
    panel._on_event({"type": "iter", "epoch": 0, "iter": 0, "global_step": 0, "iters_per_epoch": 2,
                     "max_epochs": 1, "losses": {"loss": 1.0}, "loss": 1.0, "lr": 0.1, "grad_norm": None,
                     "images_per_s": 3.0, "eta_s": 5.0, "last_in_epoch": False})
    for n in (1, 2):
        panel._on_event({"type": "warning", "kind": "unreadable_image", "unreadable": n,
                         "message": f"cannot decode image bad.jpg: skipped; {n} unreadable image(s) skipped so far"})
    assert panel.status.text().endswith("— 2 unreadable image(s) skipped")
    assert panel.status.text().count("unreadable") == 1
    assert "warning: cannot decode image bad.jpg" in panel.log.toPlainText()
    panel._on_finished(0, "done")
    assert panel.status.text() == "done — 2 unreadable image(s) skipped"
