"""Evaluation of the current model (the debug views' model: a checkpoint, or random init) on
the project's val split: COCO's 12 numbers, per-class AP, a precision-recall curve per class,
per-image TP / FP / missed counts in the image list; predictions on the canvas with a score
slider; export as COCO results JSON; accept predictions as ground truth (undoable).
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.annotate.commands import AddBoxes
from app.debug_common import fill_table, make_table
from app.theme import class_color
from app.trace_worker import TraceRunner
from detengine.api import (
    COCO_METRIC_NAMES,
    Box,
    OutputPathError,
    check_output_path,
    project_gt,
    split_indices,
    write_results,
)

__all__ = ["EvalPanel", "OUTCOME_STYLE"]

# what COCOeval made of a shown prediction: (colour, tag); None: not evaluated (beyond COCO's 100 per class)
OUTCOME_STYLE = {"tp": (theme.TP, "TP"), "fp": (theme.FP, "FP"), "ignored": (theme.NEGATIVE, "crowd"),
                 None: (theme.NEGATIVE, "")}


SIDE_BY_SIDE_PX = 420


class EvalPanel(QWidget):
    """Signals ``progress(done, total)`` (from the worker), ``evaluated(result)``, ``message(text)``."""

    progress = Signal(int, int)
    evaluated = Signal(object)
    message = Signal(str)

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.window = window
        self.runner = TraceRunner(self)
        self.runner.done.connect(self._on_done)
        self.runner.failed.connect(lambda _s, _i, t: self._fail(f"evaluation failed: {t.splitlines()[0]}"))
        self.cancel = threading.Event()
        self.result = None                             # detengine.api.EvalResult of the last evaluation
        self._evaluating_doc: int | None = None        # id() of the document that evaluation is of
        self._build()
        self.progress.connect(lambda d, t: (self.bar.setMaximum(t), self.bar.setValue(d)))

    def _build(self) -> None:
        self.evaluate_button = QPushButton("Evaluate on val")
        self.evaluate_button.setToolTip("Evaluate the current model (the Debug dock's) on the validation split")
        self.image_button = QPushButton("This image")
        self.image_button.setToolTip("Predict and score only the image on the canvas")
        self.export_button = QPushButton("Export predictions…")
        self.accept_button = QPushButton("Accept as GT")
        self.accept_button.setToolTip("Add the predictions shown on this image as ground-truth boxes (undoable)")
        self.bar = QProgressBar()
        self.info = QLabel("The current model is the Debug dock's model (a checkpoint from a run, or random init).")
        self.info.setWordWrap(True)
        self.score = QSlider(Qt.Orientation.Horizontal)
        self.score.setRange(0, 100)
        self.score.setValue(30)
        self.score_label = QLabel()
        self.metrics = make_table(["metric", "value"])
        self.per_class = make_table(["class", "AP"])
        self.pr = pg.PlotWidget(title="precision-recall at IoU 0.5")
        self.pr.setLabel("bottom", "recall")
        self.pr.setLabel("left", "precision")
        self.pr.addLegend(offset=(-5, -5))
        top = QGridLayout()                       # two rows of buttons: the dock can be narrow
        for k, w in enumerate((self.evaluate_button, self.image_button, self.export_button, self.accept_button)):
            top.addWidget(w, k // 2, k % 2)
        top.addWidget(self.bar, 2, 0, 1, 2)
        score_row = QHBoxLayout()
        score_row.addWidget(QLabel("min score"))
        score_row.addWidget(self.score, 1)
        score_row.addWidget(self.score_label)
        self.tables = QSplitter(Qt.Orientation.Horizontal)     # one above the other in a narrow dock
        self.tables.addWidget(self.metrics)
        self.tables.addWidget(self.per_class)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.tables)
        split.addWidget(self.pr)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.info)
        layout.addLayout(score_row)
        layout.addWidget(split, 1)
        self.evaluate_button.clicked.connect(lambda: self.evaluate())
        self.image_button.clicked.connect(lambda: self.evaluate([self.window.editor.index]))
        self.export_button.clicked.connect(self.ask_export)
        self.accept_button.clicked.connect(self.accept_predictions)
        self.score.valueChanged.connect(lambda _v: self.show_predictions())
        self._counts_timer = QTimer(self)                  # TP / FP / missed follow the score slider
        self._counts_timer.setSingleShot(True)
        self._counts_timer.setInterval(300)
        self._counts_timer.timeout.connect(self.recount)
        self.score.valueChanged.connect(lambda _v: self._counts_timer.start())
        self.export_button.setEnabled(False)
        self.accept_button.setEnabled(False)
        self._score_text()

    def resizeEvent(self, event) -> None:
        """The metric and per-class tables side by side from :data:`SIDE_BY_SIDE_PX` on, else one
        above the other (each then has the dock's width: names and values both in view)."""
        super().resizeEvent(event)
        wide = self.width() >= SIDE_BY_SIDE_PX
        self.tables.setOrientation(Qt.Orientation.Horizontal if wide else Qt.Orientation.Vertical)

    def _score_text(self) -> None:
        self.score_label.setText(f"{self.score.value() / 100:.2f}")

    # ------------------------------------------------------------------ running

    def evaluate(self, indices: list[int] | None = None) -> None:
        """Predict the val images (or the images ``indices``) with the current model on a worker
        thread, then COCO-evaluate."""
        doc = self.window.doc
        project = doc.project
        if indices is not None:
            val = [i for i in indices if 0 <= i < len(project.images)]
        else:
            try:
                _, val = split_indices(project)
            except ValueError as exc:
                self._fail(str(exc))
                return
        panel = self.window.debug_panel
        cfg, choice = panel.cfg, panel.model_choice()
        checkpoint = panel.checkpoints.get(choice)
        categories = list(project.categories)
        cat_ids = sorted(project.category_ids())
        if not cat_ids:
            self._fail("the project has no classes: nothing to evaluate")
            return
        unreadable = set(self.window.image_list.model.problems)
        val = [i for i in val if i not in unreadable]
        items, gt = project_gt(project, val)
        self.cancel.clear()
        progress = self.progress
        self.evaluate_button.setEnabled(False)
        self.info.setText(f"evaluating {len(items)} val images…")

        self._evaluating_doc = id(doc)
        score_thr = self.score.value() / 100
        cancel = self.cancel

        def job():
            from detengine.api import evaluate_project
            return evaluate_project(items, gt, cfg, categories, checkpoint=checkpoint, score_thr=score_thr,
                                    progress=lambda d, t: progress.emit(d, t), cancel=cancel)

        self.runner.request(job, "eval")

    def _on_done(self, _slot, _id, result, seconds: float) -> None:
        self.evaluate_button.setEnabled(True)
        if self._evaluating_doc != id(self.window.doc):
            return                                     # another project was opened meanwhile
        self.result = result
        m = result.metrics
        fill_table(self.metrics, [[n, round(m.stats[n], 4)] for n in COCO_METRIC_NAMES])
        fill_table(self.per_class, [[m.class_names.get(c, str(c)), round(ap, 4)] for c, ap in m.per_class_ap.items()])
        self.pr.clear()
        recall = np.linspace(0, 1, 101)
        for k, (cat, curve) in enumerate(m.pr_curves.items()):
            curve = np.array(curve)
            valid = curve > -1
            self.pr.plot(recall[valid], curve[valid], pen=pg.mkPen(class_color(cat), width=2),
                         name=m.class_names.get(cat, str(cat)))
        self._show_counts(result.per_image)
        problems = ("; " + "; ".join(result.problems[:3])) if result.problems else ""
        self.info.setText(f"{result.model}: AP {m.stats['AP']:.4f}, AP50 {m.stats['AP50']:.4f} on "
                          f"{m.num_images} val images, {m.num_detections} detections ({seconds:.1f} s){problems}. "
                          "Sort the image list by FP or Missed to find the worst images.")
        self.export_button.setEnabled(True)
        self.accept_button.setEnabled(True)
        self.show_predictions()
        self.evaluated.emit(result)

    def _fail(self, text: str) -> None:
        self.evaluate_button.setEnabled(True)
        self.info.setText(text)
        self.message.emit(text)

    def _show_counts(self, per_image: dict) -> None:
        project = self.window.doc.project
        row_of = {im.id: i for i, im in enumerate(project.images)}
        self.window.image_list.set_eval_counts({row_of[i]: c for i, c in per_image.items() if i in row_of})

    def recount(self) -> None:
        """Per-image TP / FP / missed of the detections above the score slider (COCOeval's matches
        of the evaluation, counted again: no new evaluation)."""
        from detengine.api import per_image_counts
        r = self.result
        if r is None or self._evaluating_doc != id(self.window.doc):
            return
        self._show_counts(per_image_counts(r.metrics.image_matches, self.score.value() / 100))

    # ------------------------------------------------------------------ predictions on the canvas

    def shown_predictions(self) -> list[tuple]:
        """The current image's predictions above the score slider: [(xyxy, cat_id, score)]."""
        if self.result is None or self.window.editor.index < 0 or self._evaluating_doc != id(self.window.doc):
            return []
        image_id = self.window.doc.project.images[self.window.editor.index].id
        p = self.result.predictions.get(image_id)
        if p is None:
            return []
        thr = self.score.value() / 100
        l2c = self.result.label_to_cat
        known = set(self.window.doc.project.category_ids())       # a class deleted since: not shown, not accepted
        return [(tuple(p.boxes[k]), l2c[int(p.labels[k])], float(p.scores[k])) for k in range(len(p.scores))
                if p.scores[k] >= thr and l2c.get(int(p.labels[k])) in known]

    def show_predictions(self) -> None:
        """The shown image's predictions above the slider, coloured by what COCOeval made of them
        (TP / FP; grey: on a crowd box, or beyond COCO's 100 per class), and its GTs that none
        of them found marked "missed": the same matches as the counts and the AP."""
        self._score_text()
        debug_view = self.window.engine_loaded and self.window.debug_panel.active    # its own overlays there
        self.window.canvas.set_predictions([] if debug_view else self.prediction_marks())

    def prediction_marks(self) -> list[tuple]:
        """``[(xyxy, colour, label, score or None)]``: the predictions, then the missed GTs."""
        shown = self.shown_predictions()
        if not shown:
            return []
        project = self.window.doc.project
        names = {c.id: c.name for c in project.categories}
        record = project.images[self.window.editor.index]
        status, missed = self.result.outcome(record.id, self.score.value() / 100)
        status = [s for s, keep in zip(status, self._shown_mask(record.id), strict=True) if keep]
        marks = []
        for (xyxy, c, score), outcome in zip(shown, status, strict=True):
            color, tag = OUTCOME_STYLE.get(outcome, OUTCOME_STYLE[None])
            marks.append((xyxy, QColor(color), f"{tag} {names.get(c, str(c))}".strip(), score))
        boxes = {b.id: b for b in record.boxes}
        for gt_id in missed:
            if gt_id in boxes:
                box = boxes[gt_id]
                marks.append((box.xyxy, QColor(theme.MISSED), f"missed {names.get(box.category_id, '')}".strip(), None))
        return marks

    def _shown_mask(self, image_id: int) -> list[bool]:
        """Which of the image's predictions :meth:`shown_predictions` keeps (score and known class)."""
        p = self.result.predictions[image_id]
        thr, l2c = self.score.value() / 100, self.result.label_to_cat
        known = set(self.window.doc.project.category_ids())
        return [bool(p.scores[k] >= thr and l2c.get(int(p.labels[k])) in known) for k in range(len(p.scores))]

    def accept_predictions(self) -> int:
        """Add the shown predictions of this image as GT boxes (one undo step)."""
        editor = self.window.editor
        project = self.window.doc.project
        w, h = self.window.canvas.image_size
        boxes = []
        for (x1, y1, x2, y2), cat, _score in self.shown_predictions():
            x1, y1, x2, y2 = (round(float(v), 2) for v in (max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)))
            if x2 - x1 >= 1 and y2 - y1 >= 1:
                boxes.append(Box(project.new_box_id(), cat, x1, y1, x2, y2))
        if boxes:
            self.window.doc.push(editor.index, AddBoxes(self.window.doc, editor.index, boxes,
                                                        f"accept {len(boxes)} prediction(s)"))
        self.message.emit(f"accepted {len(boxes)} prediction(s) as ground truth (Ctrl+Z undoes)")
        return len(boxes)

    # ------------------------------------------------------------------ export

    def ask_export(self) -> None:
        project = self.window.doc.project                 # beside the project, not wherever the program started
        folder = project.path.parent if project.path is not None else project.image_root
        path, _ = QFileDialog.getSaveFileName(self, "Export predictions (COCO results JSON)",
                                              str(folder / "predictions.json"), "JSON (*.json)")
        if path:
            self.export_to(path)

    def export_to(self, path) -> int:
        if self.result is None:
            self._fail("evaluate first: there are no predictions to export")
            return 0
        try:                                              # a folder, a read-only place: say so, export nothing
            check_output_path(path, "file", "export")
            write_results(Path(path), self.result.results)
        except (OutputPathError, OSError) as exc:
            text = str(exc) if isinstance(exc, OutputPathError) else f"cannot write {path}: {exc.strerror or exc}"
            self.window.dialogs.error("Export predictions", text)
            self.message.emit(f"export failed: {text}")
            return 0
        self.message.emit(f"exported {len(self.result.results)} detections to {path}")
        return len(self.result.results)

    def shutdown(self) -> None:
        self.cancel.set()
        self.runner.stop()
