"""NMS: the current model's detections stage by stage (raw candidates, after the score
threshold, the per-level top-k, NMS and max_per_img) with live sliders; what each kept box
suppressed and what suppressed a dropped box; true / false positives against the GT at IoU 0.5
and the GTs nothing found.

Readable by default: only the ``DEFAULT_TOP_K`` highest-scoring detections are drawn (a weak or
untrained model keeps hundreds) and, when suppressed boxes are shown, only those the drawn boxes
suppressed; a line under the controls says what is hidden, and "show all" draws everything. The
counts and TP / FP / missed always cover every detection. (The Evaluate panel's "min score" is a
display filter of its own predictions, not this score_thr: the two are not linked.)
"""
from __future__ import annotations

import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
)

from app import theme
from app.compact import narrow_spin
from app.debug.anchors_page import draw_gt_tags
from app.debug.debug_page import DebugPage
from app.debug_common import fill_table, make_table, threshold_slider
from app.theme import class_color
from detengine.api import STAGE_TEXT, Stage, match_detections

__all__ = ["NmsPage", "match_detections", "TP_COLOR", "FP_COLOR", "DEFAULT_TOP_K", "shown_text"]

DEFAULT_TOP_K = 20           # detections drawn when the view opens (highest scores first)

TP_COLOR, FP_COLOR, MISSED_COLOR = theme.TP, theme.FP, theme.MISSED
STAGE_NAMES = {"raw": "raw (prior, class) pairs", "score_thr": "after score_thr", "nms_pre": "after per-level top-k",
               "min_bbox_size": "after min_bbox_size", "nms": "after NMS", "max_per_img": "after max_per_img"}


class NmsPage(DebugPage):
    needs_model = True

    def __init__(self, panel):
        super().__init__(panel)
        self.focus: int | None = None          # candidate index clicked
        self.defaults: dict = {}
        self.initial: dict = {}                # the sliders' positions for the config's test_cfg
        self.summary = ""                      # the detections line shown when no box is clicked
        self.drawn = torch.zeros(0, dtype=torch.long)   # candidate indices drawn (what a click can pick)
        self._build()
        self.config_changed(panel.cfg)

    def _build(self) -> None:
        self.score = threshold_slider(self.changed.emit, scale=1000)      # RTMDet's 0.001 must be exact
        self.iou = threshold_slider(self.changed.emit)
        self.max_det = QSpinBox()
        self.max_det.setRange(1, 10000)
        self.show_suppressed = QCheckBox("suppressed boxes (dashed)")
        self.mark_tp = QCheckBox("mark TP / FP vs GT at IoU 0.5")
        self.mark_tp.setChecked(True)
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 100000)
        self.top_k.setValue(DEFAULT_TOP_K)
        self.top_k.setToolTip("Draw only this many detections, the highest scores first")
        self.show_all = QCheckBox("show all")
        self.shown = QLabel()
        self.shown.setWordWrap(True)
        form = QFormLayout()
        form.addRow("score_thr", self.score.row)
        form.addRow("NMS iou_threshold", self.iou.row)
        form.addRow("max_per_img", self.max_det)
        checks = QVBoxLayout()                      # one under the other: the dock fits ~330 px
        checks.addWidget(self.show_suppressed)
        checks.addWidget(self.mark_tp)
        top = QHBoxLayout()
        top.addWidget(QLabel("Draw top"))
        top.addWidget(narrow_spin(self.top_k, "99999"))   # as wide as its numbers: fits a ~280 px dock
        top.addWidget(QLabel("by score"))
        top.addWidget(self.show_all)
        top.addStretch(1)
        self.stages = make_table(["stage", "candidates"])
        self.detail = QPlainTextEdit()
        self.detail.setReadOnly(True)
        self.detail.setPlaceholderText("Click a kept box: what it suppressed. Click a suppressed box: what "
                                       "suppressed it.")
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.stages)
        split.addWidget(self.detail)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(form)
        layout.addLayout(checks)
        layout.addLayout(top)
        layout.addWidget(self.shown)
        layout.addWidget(split, 1)
        self.max_det.valueChanged.connect(lambda _v: self.changed.emit())
        self.show_suppressed.toggled.connect(lambda _c: self.redraw())
        self.mark_tp.toggled.connect(lambda _c: self.redraw())
        self.top_k.valueChanged.connect(lambda _v: self.redraw())
        self.show_all.toggled.connect(self._on_show_all)

    def _on_show_all(self, on: bool) -> None:
        self.top_k.setEnabled(not on)
        self.redraw()

    # ------------------------------------------------------------------ parameters

    def config_changed(self, cfg: dict) -> None:
        """Defaults from the head's own post-processing parameters (d2l's has no max_per_img)."""
        from detengine.api import head_core_for
        self.defaults = {k: v for k, v in head_core_for(cfg["model"]).test_config().items()
                         if k in ("score_thr", "iou_threshold", "max_per_img")}
        for widget in (self.score, self.iou, self.max_det):
            widget.blockSignals(True)
        self.score.setValue(round(self.defaults["score_thr"] * 1000))
        self.iou.setValue(round(self.defaults["iou_threshold"] * 100))
        self.max_det.setEnabled("max_per_img" in self.defaults)
        self.max_det.setValue(int(self.defaults.get("max_per_img", 100)))
        self.initial = {"score_thr": self.score.value(), "iou_threshold": self.iou.value(),
                        "max_per_img": self.max_det.value()}
        for widget, value in ((self.score, self.score.value()), (self.iou, self.iou.value())):
            widget.blockSignals(False)
            widget.valueChanged.emit(value)
        self.max_det.blockSignals(False)

    def set_params(self, score_thr: float | None = None, iou_threshold: float | None = None,
                   max_per_img: int | None = None) -> None:
        if score_thr is not None:
            self.score.setValue(round(score_thr * 1000))
        if iou_threshold is not None:
            self.iou.setValue(round(iou_threshold * 100))
        if max_per_img is not None:
            self.max_det.setValue(max_per_img)

    def postprocess_overrides(self) -> dict:
        """Only what the user moved away from the config's values (an untouched slider sends
        nothing, so 0.009999999 stays exactly that and the view equals ``predict()``)."""
        positions = {"score_thr": self.score.value(), "iou_threshold": self.iou.value(),
                     "max_per_img": self.max_det.value()}
        values = {"score_thr": self.score.value() / 1000, "iou_threshold": self.iou.value() / 100,
                  "max_per_img": self.max_det.value()}
        return {k: values[k] for k, pos in positions.items() if k in self.defaults and pos != self.initial.get(k)}

    def test_cfg_snippet(self) -> dict:
        o = self.postprocess_overrides()
        out = {}
        if "score_thr" in o:
            out["score_thr"] = o["score_thr"]
        if "iou_threshold" in o:
            out["nms"] = {"iou_threshold": o["iou_threshold"]}
        if "max_per_img" in o:
            out["max_per_img"] = o["max_per_img"]
        return out

    # ------------------------------------------------------------------ drawing

    def show_result(self, result, overlay) -> None:  # a DebugResult
        super().show_result(result, overlay)
        it = result.main
        record = it.trace.postprocess
        if record is None:
            fill_table(self.stages, [["no predictions: choose a model above", ""]])
            self.shown.setText("")
            self.drawn = torch.zeros(0, dtype=torch.long)
            return
        rows = [[STAGE_NAMES.get(k, k), int(v)] for k, v in record.counts.items()]
        fill_table(self.stages, rows)
        draw_gt_tags(result, overlay)
        self._draw_detections(it, overlay, record)
        if self.focus is not None and self.focus < len(record.cand_stage):
            self._draw_focus(it, overlay, record, self.focus)

    def _draw_detections(self, it, overlay, record) -> None:
        names = self.panel.class_names()
        label_to_cat = self.panel.label_to_cat()
        trace = it.trace
        tp, _, missed = match_detections(record.boxes, record.scores, record.labels, trace.gt_boxes, trace.gt_labels)
        boxes = it.to_original(record.boxes.numpy())
        n_shown = len(boxes) if self.show_all.isChecked() else min(len(boxes), self.top_k.value())
        for d in range(n_shown):                  # detections come sorted by score
            label = int(record.labels[d])
            if self.mark_tp.isChecked():
                color = TP_COLOR if tp[d] else FP_COLOR
            else:
                color = class_color(label_to_cat[label]) if label in label_to_cat else QColor(theme.FOCUS)
            overlay.rects("kept", boxes[d:d + 1], color, width=2.0)
            name = names[label] if label < len(names) else str(label)
            overlay.text("kept_labels", boxes[d, 0], boxes[d, 3], f"{name} {float(record.scores[d]):.2f}", color)
        sup = record.cand_stage == Stage.SUPPRESSED
        n_sup = int(sup.sum())
        if not self.show_all.isChecked():         # only what the drawn boxes suppressed
            sup &= torch.isin(record.suppressed_by, record.kept[:n_shown])
        self.drawn = record.kept[:n_shown]
        if self.show_suppressed.isChecked():
            overlay.rects("suppressed", it.to_original(record.cand_box[sup].numpy()), theme.SUPPRESSED, width=1.0,
                          alpha=160, dash=True)
            self.drawn = torch.cat([self.drawn, sup.nonzero().view(-1)])
        self.shown.setText(shown_text(len(boxes), n_shown, n_sup, int(sup.sum()) if self.show_suppressed.isChecked()
                                      else None))
        if self.mark_tp.isChecked() and missed:
            gts = it.to_original(trace.gt_boxes[missed].numpy())
            overlay.rects("missed", gts, MISSED_COLOR, width=3.0, z=3.6)
        n_tp = int(tp.sum())
        self.summary = (f"{len(boxes)} detections: {n_tp} TP, {len(boxes) - n_tp} FP at IoU 0.5; "
                        f"missed GTs: {', '.join(f'GT{k}' for k in missed) or 'none'}")
        self.detail.setPlainText(self.summary if self.focus is None else self.detail.toPlainText())

    def on_click(self, x: float, y: float) -> None:
        record = self.result.main.trace.postprocess if self.result else None
        if record is None:
            return
        self.focus = self.candidate_at(x, y)
        self.redraw()

    def candidate_at(self, x: float, y: float) -> int | None:
        """The drawn kept (or, when shown, suppressed) candidate under the click, smallest first."""
        it = self.result.main
        record = it.trace.postprocess
        idx = self.drawn
        if idx.numel() == 0:
            return None
        boxes = torch.as_tensor(it.to_original(record.cand_box[idx].numpy()))
        inside = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
        if not inside.any():
            return None
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        area[~inside] = float("inf")
        kept_first = area + (record.cand_stage[idx] != Stage.KEPT).float() * 1e12
        return int(idx[int(torch.argmin(kept_first))])

    def on_escape(self) -> None:
        """Esc: forget the clicked box."""
        if self.focus is not None:
            self.focus = None
            self.detail.setPlainText(self.summary)
            self.redraw()

    def _draw_focus(self, it, overlay, record, c: int) -> None:
        names = self.panel.class_names()
        stage = int(record.cand_stage[c])
        label = int(record.cand_label[c])
        name = names[label] if label < len(names) else str(label)
        box = it.to_original(record.cand_box[c:c + 1].numpy())
        overlay.rects("focus", box, theme.FOCUS, width=3.5, z=3.9)
        lines = [f"candidate {c}: {name} score {float(record.cand_score[c]):.4f}, prior #{int(record.cand_prior[c])}, "
                 f"{STAGE_TEXT.get(stage, '?')}"]
        if stage == Stage.KEPT:
            victims = (record.suppressed_by == c).nonzero().view(-1)
            lines.append(f"suppressed {len(victims)} box(es):")
            for v in victims.tolist():
                lines.append(f"  candidate {v}: score {float(record.cand_score[v]):.4f}, "
                             f"IoU {float(record.suppressed_iou[v]):.3f}")
            if len(victims):
                overlay.rects("focus", it.to_original(record.cand_box[victims].numpy()), theme.VICTIM, width=1.5, dash=True)
        elif stage == Stage.SUPPRESSED:
            by = int(record.suppressed_by[c])
            lines.append(f"suppressed by candidate {by} (score {float(record.cand_score[by]):.4f}) "
                         f"at IoU {float(record.suppressed_iou[c]):.3f}")
            overlay.rects("focus", it.to_original(record.cand_box[by:by + 1].numpy()), theme.SUPPRESSOR, width=3.0)
        self.detail.setPlainText("\n".join(lines))


def shown_text(n_kept: int, n_shown: int, n_sup: int, n_sup_shown: int | None) -> str:
    """What the image shows of the detections: ``showing 20 of 547 kept (highest scores); 590
    suppressed hidden; tick "show all" for all``. ``n_sup_shown`` None: suppressed boxes are off."""
    kept = f"showing {n_shown} of {n_kept} kept (highest scores)" if n_shown < n_kept else f"showing all {n_kept} kept"
    if n_sup_shown is None:
        sup = f"{n_sup} suppressed hidden (tick 'suppressed boxes')" if n_sup else "none suppressed"
    elif n_sup_shown < n_sup:
        sup = f"{n_sup_shown} of {n_sup} suppressed (those the drawn boxes suppressed)"
    else:
        sup = f"all {n_sup} suppressed"
    hidden = n_shown < n_kept or (n_sup_shown is not None and n_sup_shown < n_sup)
    more = "; tick 'show all' for every box" if hidden else ""
    return f"{kept}; {sup}{more}"
