"""The Debug dock's "Training sample" source: its controls (seed, Re-roll, epoch, the pipeline
stepper) and how a stage of the train pipeline is put on the canvas.

The engine makes the sample (``detengine.api.training_sample``: the trainer's own data path); this
module only shows it. Box ids on the canvas are the sample's own (:func:`canvas_id`), never the
project's, so nothing the editor does to the selected boxes reaches the project while a sample is
shown.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.theme import IGNORED, class_color

__all__ = ["SOURCE_IMAGE", "SOURCE_TRAIN", "SOURCES", "SampleControls", "canvas_id", "rgb_to_qimage", "stage_boxes",
           "MAX_SEED", "TRAIN_HINT"]

SOURCE_IMAGE = "image"
SOURCE_TRAIN = "train"
SOURCES = ((SOURCE_IMAGE, "Image (test pipeline)"), (SOURCE_TRAIN, "Training sample"))
MAX_SEED = 99_999
TRAIN_HINT = "Training sample: the image the trainer sees; box editing is off here (Source: Image to edit)"
_ID_BASE = -10_000_000           # canvas ids of a sample's boxes: never a project box id (those are > 0)
_STAGE_MIN_CHARS = 10


def canvas_id(position: int) -> int:
    """The canvas id of a stage's box at ``position`` (GTs first, then the ignored boxes)."""
    return _ID_BASE - int(position)


def rgb_to_qimage(image: np.ndarray) -> QImage:
    """(H, W, 3) uint8 RGB -> a QImage that owns its pixels."""
    arr = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def stage_boxes(stage, label_to_cat: dict, names: dict, labels: bool = True) -> list[tuple]:
    """``canvas.set_boxes`` rows for a pipeline stage: class colour and name (``names``: category
    id -> name), "mixed in" for a box another image brought, "(crowd)" for the ignored ones."""
    rows = []
    for k, (xyxy, label) in enumerate(zip(stage.boxes.tolist(), stage.labels.tolist())):
        cat = label_to_cat.get(int(label))
        text = names.get(cat, f"class {label}") + (" (mixed in)" if stage.box_rows[k] < 0 else "")
        rows.append((canvas_id(k), tuple(xyxy), class_color(cat if cat is not None else int(label)),
                     text if labels else ""))
    for j, xyxy in enumerate(stage.ignore_boxes.tolist()):
        rows.append((canvas_id(len(stage.boxes) + j), tuple(xyxy), QColor(IGNORED), "ignored (crowd)" if labels else ""))
    return rows


class SampleControls(QWidget):
    """Seed (the trainer's seed: its ``randomness.seed``), Re-roll (the next seed), epoch (1-based,
    as the training log counts; a ``PipelineSwitchHook`` changes the pipeline at its epoch), and
    the stepper through the stages: ◀ / the stage list / ▶. Signals ``sampleChanged()`` (seed or
    epoch) and ``stageChanged(index)``."""

    sampleChanged = Signal()
    stageChanged = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.seed = QSpinBox()
        self.seed.setRange(0, MAX_SEED)
        self.seed.setToolTip("The trainer's seed (the config's randomness.seed): it picks the crop, flip, colour "
                             "and the images a mosaic or mix-up takes, as in training")
        self.reroll = QToolButton()
        self.reroll.setText("Re-roll")
        self.reroll.setToolTip("The next seed: another draw of every random step")
        self.epoch = QSpinBox()
        self.epoch.setRange(1, 999)
        self.epoch.setToolTip("The training epoch (1 = the first): the sample order and the mosaic / mix-up cache "
                              "depend on it, and a PipelineSwitchHook changes the pipeline at its epoch")
        self.prev = QToolButton()
        self.prev.setArrowType(Qt.ArrowType.LeftArrow)
        self.prev.setToolTip("The previous stage of the train pipeline")
        self.next = QToolButton()
        self.next.setArrowType(Qt.ArrowType.RightArrow)
        self.next.setToolTip("The next stage of the train pipeline")
        self.stage = QComboBox()
        self.stage.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.stage.setMinimumContentsLength(_STAGE_MIN_CHARS)
        self.stage.setToolTip("Stages of the train pipeline: the image and boxes as each transform left them; "
                              "the views trace the last one")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        for w in (QLabel("Seed"), self.seed, self.reroll, QLabel("Epoch"), self.epoch):
            top.addWidget(w)
        top.addStretch(1)
        steps = QHBoxLayout()
        steps.setContentsMargins(0, 0, 0, 0)
        steps.addWidget(QLabel("Stage"))
        steps.addWidget(self.prev)
        steps.addWidget(self.stage, 1)
        steps.addWidget(self.next)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(steps)
        layout.addWidget(self.note)
        self.seed.valueChanged.connect(lambda _v: self.sampleChanged.emit())
        self.epoch.valueChanged.connect(lambda _v: self.sampleChanged.emit())
        self.reroll.clicked.connect(self.re_roll)
        self.prev.clicked.connect(lambda: self.step(-1))
        self.next.clicked.connect(lambda: self.step(1))
        self.stage.activated.connect(self._on_activated)
        self.set_stages([])

    def re_roll(self) -> None:
        self.seed.setValue(0 if self.seed.value() >= MAX_SEED else self.seed.value() + 1)

    def epoch_index(self) -> int:
        """The 0-based epoch the engine takes."""
        return self.epoch.value() - 1

    def set_stages(self, names: list[str], current: int | None = None) -> None:
        """List ``names`` (the last one is traced) and select ``current`` (default: the last)."""
        self.stage.blockSignals(True)
        self.stage.clear()
        n = len(names)
        for k, name in enumerate(names):
            self.stage.addItem(f"{k}/{n - 1} {name}" + (" (traced)" if k == n - 1 else ""))
        if n:
            self.stage.setCurrentIndex(n - 1 if current is None else min(max(current, 0), n - 1))
        self.stage.blockSignals(False)
        self._update_buttons()

    def current_stage(self) -> int:
        return self.stage.currentIndex()

    def is_last(self) -> bool:
        return self.stage.count() == 0 or self.stage.currentIndex() == self.stage.count() - 1

    def step(self, delta: int) -> None:
        k = self.stage.currentIndex() + delta
        if 0 <= k < self.stage.count():
            self.stage.setCurrentIndex(k)
            self._update_buttons()
            self.stageChanged.emit(k)

    def select_stage(self, k: int) -> None:
        if 0 <= k < self.stage.count() and k != self.stage.currentIndex():
            self.stage.setCurrentIndex(k)
            self._update_buttons()
            self.stageChanged.emit(k)

    def _on_activated(self, k: int) -> None:
        self._update_buttons()
        self.stageChanged.emit(k)

    def _update_buttons(self) -> None:
        k, n = self.stage.currentIndex(), self.stage.count()
        self.prev.setEnabled(k > 0)
        self.next.setEnabled(0 <= k < n - 1)
