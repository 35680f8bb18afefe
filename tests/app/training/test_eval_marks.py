"""Predictions on the canvas are coloured by what COCOeval made of them (TP / FP, grey on a crowd
box) and the GTs none of them found are marked "missed" — the same matches as the per-image counts
and the AP; they are not drawn over the debug views; export proposes the project's folder."""
from __future__ import annotations

import numpy as np

from app import theme
from detengine.api import evaluate_predictions, project_gt
from detengine.project_eval import EvalResult, ImagePredictions


def evaluated(win, image: int) -> EvalResult:
    """An evaluation of one image of the sample project with hand-made predictions: its first
    GT found, the same box again (a duplicate: FP), a box where there is nothing (FP)."""
    project = win.doc.project
    record = project.images[image]
    first = record.boxes[0]
    label = {c.id: k for k, c in enumerate(project.categories)}
    boxes = [first.xyxy, first.xyxy, (200.0, 200.0, 250.0, 250.0)]
    preds = {record.id: ImagePredictions(boxes, [0.9, 0.8, 0.7], [label[first.category_id]] * 3)}
    label_to_cat = {k: c.id for k, c in enumerate(project.categories)}
    _, gt = project_gt(project, [image])
    metrics, per_image, results = evaluate_predictions(gt, preds, label_to_cat)
    return EvalResult(metrics, per_image, results, preds, [], "hand-made", label_to_cat, gt)


def test_predictions_are_coloured_tp_fp_and_missed_gts_marked(qtbot, sample_window):
    win = sample_window
    image = next(i for i, im in enumerate(win.doc.project.images) if len(im.boxes) >= 2)
    win.show_image(image)
    panel = win.eval_panel
    panel.result, panel._evaluating_doc = evaluated(win, image), id(win.doc)
    panel.score.setValue(0)
    win.show_view("evaluate")
    panel.show_predictions()
    drawn = [(item.color.name(), item.label.text) for item in win.canvas.prediction_items]
    names = {c.id: c.name for c in win.doc.project.categories}
    boxes = win.doc.project.images[image].boxes
    first = names[boxes[0].category_id]
    assert drawn[:3] == [(theme.TP, f"TP {first} 0.90"), (theme.FP, f"FP {first} 0.80"), (theme.FP, f"FP {first} 0.70")]
    missed = [text for color, text in drawn[3:] if color == theme.MISSED]
    assert len(missed) == len(boxes) - 1 and all(t.startswith("missed") for t in missed)
    tp, fp, miss = panel.result.per_image[win.doc.project.images[image].id]
    assert (tp, fp, miss) == (1, 2, len(boxes) - 1)                    # the counts beside them agree
    panel.score.setValue(85)                                            # above the duplicate: one FP less
    assert [item.color.name() for item in win.canvas.prediction_items].count(theme.FP) == 0
    win.show_view("assign")                                             # not over the debug views
    qtbot.waitUntil(lambda: not win.canvas.prediction_items, timeout=2000)
    win.show_view("evaluate")
    qtbot.waitUntil(lambda: len(win.canvas.prediction_items) >= 1, timeout=2000)
    assert np.isfinite(panel.result.metrics.stats["AP"])
