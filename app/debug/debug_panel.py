"""The debug dock: which config and model to trace with, the current parameters as a config
snippet, and the four views (anchors, assignment, loss, NMS) of the image on the canvas.

Every edit of the image's boxes (saved or not), image switch, config / model change or
parameter change schedules a trace on the worker thread (:class:`TraceRunner`); the newest
result is handed to the views, which draw it over the image (:class:`Overlay`) and in their
own tables and plots. Nothing here computes detector logic: it all comes from the trace.

While the dock is shown the canvas inspects (a click asks the view and never edits a box) until
the user turns on "Edit boxes" (E); the hint under the toggle says which mode is on.

Source "Training sample" (:mod:`app.debug.training_sample`): the views trace the augmented sample
the trainer sees instead: the config's train pipeline run by the trainer's own data path
(``detengine.api.training_sample``) with the seed and epoch chosen, shown on the canvas stage by
stage (the last stage is the one traced); box editing is off there. The config and model chosen
are remembered across sessions (:meth:`DebugPanel.restore_choice`, when the window persists).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.debug.anchors_page import AnchorsPage
from app.debug.assign_page import AssignPage
from app.debug.loss_page import LossPage
from app.debug.nms_page import NmsPage
from app.debug.overlay import Overlay
from app.debug.scan_page import ScanPage
from app.debug.training_sample import (
    SOURCE_IMAGE,
    SOURCE_TRAIN,
    SOURCES,
    TRAIN_HINT,
    SampleControls,
    canvas_id,
    rgb_to_qimage,
    stage_boxes,
)
from app.debug_common import config_snippet, qimage_to_rgb
from app.paths import settings
from app.trace_worker import TraceRunner
from detengine.api import ImageTracer, load_model, resolve_config, shipped_configs

__all__ = ["DebugPanel", "RANDOM_INIT", "NO_MODEL", "SOURCE_IMAGE", "SOURCE_TRAIN"]

NO_MODEL = "none"
RANDOM_INIT = "random"
_DEBOUNCE_MS = 15
_COMBO_MIN_CHARS = 12           # the config / model combos' minimum width, in characters
PAGE_MIN_PX = 240               # what a view asks of the dock's width at least (a wider one scrolls in its tab)
INSPECT_HINT = ("Inspecting: a click on the image asks this view, a drag pans; boxes are not edited. "
                "E: edit boxes")
EDIT_HINT = "Editing boxes: clicks select, move and resize them (the view is not asked). E: back to inspecting"
EDIT_REFUSED = "box editing is off in the Training sample source: switch Source to Image (test pipeline) to edit"
CONFIG_KEY, MODEL_KEY = "debug/config", "debug/model"      # the settings that remember the dock's choice


DEFAULT_CONFIG = "ssd300_coco"


def _load_cfg(config: str) -> dict:
    from detengine.api import load_cfg
    path = Path(config) if config.endswith(".py") else resolve_config(config)
    return load_cfg(str(path))


def _usable_cfg(config: str) -> dict:
    """The config, loaded and its head built (priors, assigner): what every view needs; raises
    with the reason otherwise (a file that does not load, a head DetScope does not build)."""
    from detengine.api import head_core_for
    try:
        cfg = _load_cfg(config)
    except SystemExit as exc:               # resolve_config: an unknown name, with the shipped names
        raise ValueError(str(exc)) from None
    head_core_for(cfg["model"])
    return cfg


def config_problem(config: str) -> str | None:
    """Why ``config`` cannot be traced, or None."""
    try:
        _usable_cfg(config)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def config_label(config: str) -> str:
    """A shipped config's name; a file's name (a run folder's config.py: the folder's)."""
    if not config.endswith(".py"):
        return config
    path = Path(config)
    return f"{path.parent.name} (run)" if path.name == "config.py" else path.name


@dataclass
class DebugResult:
    """One trace of the shown image for the views: ``main`` (an ``ImageTrace``), ``compare`` (the
    same image under the "Compare with" assigner, or None), the project ``box_ids`` of the traced
    GTs in trace order, the ``image`` index, the ``tracer`` (its model), how model labels meet the
    project's categories (``labels``, the engine's ``LabelMap``: its ``problems`` are the class
    mismatches met) and the ``class_names`` per model label. A trace of the training sample
    has its ``sample`` (the engine's ``TrainingSample``); its ``box_ids`` are the sample's canvas
    ids (:func:`~app.debug.training_sample.canvas_id`), not project box ids."""

    main: object
    compare: object | None
    box_ids: list[int]
    image: int
    tracer: object
    labels: object
    class_names: list[str]
    sample: object | None = None

    @property
    def label_to_cat(self) -> dict[int, int]:
        return self.labels.label_to_cat

    @property
    def class_problems(self) -> list[str]:
        return self.labels.problems


class PageArea(QScrollArea):
    """A view in the dock's tabs: no wider than :data:`PAGE_MIN_PX` asks of the dock; a view
    wider than the dock scrolls sideways inside its tab, so the dock's own rows (config, model,
    source, the training sample's controls) stay in view instead of the whole dock scrolling.
    Its height is the view's own minimum (the dock scrolls vertically)."""

    def __init__(self, page: QWidget):
        super().__init__()
        self.setWidget(page)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)

    def minimumSizeHint(self) -> QSize:
        hint = self.widget().minimumSizeHint()
        bar = self.horizontalScrollBar().sizeHint().height()      # room for the bar when the view is wider
        return QSize(min(hint.width(), PAGE_MIN_PX), hint.height() + bar)

    def sizeHint(self) -> QSize:
        return self.widget().sizeHint().expandedTo(self.minimumSizeHint())


class DebugPanel(QWidget):
    """Signals ``traced(result)`` after each new trace (tests wait on it) and ``message(text)``."""

    traced = Signal(object)
    message = Signal(str)

    def __init__(self, canvas, editor, config: str = "ssd300_coco", parent=None):
        super().__init__(parent)
        self.canvas, self.editor = canvas, editor
        self.overlay = Overlay(canvas)
        self.overlay_key = None                 # what the kept layers show (set by the page that drew them)
        self.runner = TraceRunner(self)
        self.active = False                     # drawn only while the dock is visible
        self.result: DebugResult | None = None  # the last trace of the shown image
        self.config = config
        self.cfg = _usable_cfg(config)
        self.notice = ""                        # a standing problem shown above every trace's summary
        self.failure = ""                       # why the last trace of the shown image did not come
        self.checkpoints: dict[str, str] = {}
        self.trust_config = lambda path: False  # may this config file (not shipped, not opened) run? (the window asks)
        self.remember = False                   # keep the config / model chosen in the settings (the window's persist)
        self.train_split = lambda: None         # the training panel's train indices (None: the default split)
        self.source = SOURCE_IMAGE              # trace the test-pipeline image, or the training sample
        self.shown_sample = None                # the TrainingSample on the canvas (the image is not the file's)
        self._wanted_stage: int | None = None   # the stage to show when the next sample comes (set_sample)
        self._tracers: dict = {}                # touched only on the worker thread
        self._sample_sets: dict = {}            # the trainer's data sets, touched only on the worker thread
        self._generation = 0                    # counts the project's box / class changes (the data set follows)
        self._snapshot: tuple | None = None     # (generation, project snapshot) the worker reads
        self._watched_doc = None
        self._pixels: tuple | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(_DEBOUNCE_MS)
        self._timer.timeout.connect(self.retrace)
        self._build()
        self.runner.done.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)
        canvas.clicked.connect(self._on_canvas_click)
        canvas.escaped.connect(self._on_escape)
        canvas.selectionChanged.connect(self._on_box_selection)
        self.pages["scan"].jumpRequested.connect(self._zoom_to_jumped, Qt.ConnectionType.QueuedConnection)
        canvas.zoomChanged.connect(lambda _s: self.current_page().on_zoom() if self.active and self.result else None)
        editor.imageShown.connect(self._on_image_shown)
        self._editor_refresh = editor.refresh_boxes
        editor.refresh_boxes = self._refresh_canvas_boxes     # a shown sample keeps its own boxes

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        self.config_combo = QComboBox()
        for name in shipped_configs():
            if not name.startswith("_"):
                self.config_combo.addItem(name, name)
        self.config_combo.addItem("Open config file…", "")
        self._select_config_item(self.config)
        self.model_combo = QComboBox()
        self.model_combo.addItem("random init (seed 0)", RANDOM_INIT)
        self.model_combo.addItem("no model (untrained head outputs)", NO_MODEL)
        self.model_combo.addItem("Load checkpoint…", "")
        self.model_combo.setToolTip("The loss and NMS views run this model on the image")
        self.source_combo = QComboBox()
        for key, title in SOURCES:
            self.source_combo.addItem(title, key)
        self.source_combo.setToolTip("What the views trace: the image through the config's test pipeline, or the "
                                     "augmented sample the trainer sees (the train pipeline, seeded)")
        self.sample_controls = SampleControls()
        self.sample_controls.setVisible(False)
        self.snippet_button = QPushButton("Copy config snippet")
        self.status = QLabel()
        self.status.setWordWrap(True)
        mode = self._build_mode_row()
        self.pages = {"anchors": AnchorsPage(self), "assign": AssignPage(self), "loss": LossPage(self),
                      "nms": NmsPage(self), "scan": ScanPage(self)}
        self.tabs = QTabWidget()
        self.page_areas = {key: PageArea(page) for key, page in self.pages.items()}
        for key, title in (("anchors", "Anchors"), ("assign", "Assignment"), ("loss", "Loss"), ("nms", "NMS"),
                           ("scan", "Dataset scan")):
            self.tabs.addTab(self.page_areas[key], title)
        top = self._build_header()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.sample_controls)
        layout.addWidget(self.status)
        layout.addLayout(mode)
        layout.addWidget(self.mode_hint)
        layout.addWidget(self.tabs, 1)
        self.config_combo.activated.connect(self._on_config_chosen)
        self.model_combo.activated.connect(self._on_model_chosen)
        self.source_combo.activated.connect(lambda i: self.set_source(self.source_combo.itemData(i)))
        self.sample_controls.sampleChanged.connect(self._on_sample_changed)
        self.sample_controls.stageChanged.connect(self._on_stage_changed)
        self.snippet_button.clicked.connect(self.copy_snippet)
        self.tabs.currentChanged.connect(lambda _i: self._on_page_changed())
        for page in self.pages.values():
            page.changed.connect(self.schedule)

    def _build_header(self) -> QGridLayout:
        """Config / Model / Source one under the other (the dock is ~300 px at 1024 px; the
        snippet button is in the mode row)."""
        for combo in (self.config_combo, self.model_combo, self.source_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(_COMBO_MIN_CHARS)       # long names elide, not widen the dock
        grid = QGridLayout()
        for row, (text, combo) in enumerate((("Config", self.config_combo), ("Model", self.model_combo),
                                             ("Source", self.source_combo))):
            grid.addWidget(QLabel(text), row, 0)
            grid.addWidget(combo, row, 1)
        grid.setColumnStretch(1, 1)
        return grid

    def _build_mode_row(self) -> QHBoxLayout:
        """The "Edit boxes" toggle (E, while the dock is shown) and the snippet button; the hint
        (:attr:`mode_hint`, under them: it wraps in a narrow dock); Esc in the dock."""
        self.edit_action = QAction("Edit boxes", self)
        self.edit_action.setCheckable(True)
        self.edit_action.setShortcut(QKeySequence("E"))
        self.edit_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.edit_action.setToolTip("Off: a click on the image asks the debug view and never edits a box (E)")
        self.edit_action.toggled.connect(self._on_edit_toggled)
        self.addAction(self.edit_action)
        escape = QAction("Leave the selection", self)
        escape.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        escape.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        escape.triggered.connect(self._on_escape)
        self.addAction(escape)
        button = QToolButton()
        button.setDefaultAction(self.edit_action)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.edit_button = button
        self.mode_hint = QLabel(INSPECT_HINT)
        self.mode_hint.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(button)
        row.addWidget(self.snippet_button)
        row.addStretch(1)
        return row

    # ------------------------------------------------------------------ state

    @property
    def edit_mode(self) -> bool:
        return self.edit_action.isChecked()

    def set_edit_mode(self, on: bool) -> None:
        self.edit_action.setChecked(on)

    def _on_edit_toggled(self, on: bool) -> None:
        if on and self.source == SOURCE_TRAIN:              # the sample's boxes are the pipeline's, not the project's
            self.edit_action.setChecked(False)
            self.message.emit(EDIT_REFUSED)
            return
        self._apply_mode()
        self.message.emit(EDIT_HINT if on else INSPECT_HINT)

    def _apply_mode(self) -> None:
        train = self.source == SOURCE_TRAIN
        self.edit_action.setEnabled(not train)
        self.mode_hint.setText(TRAIN_HINT if train else EDIT_HINT if self.edit_mode else INSPECT_HINT)
        self.canvas.set_inspect((self.active and not self.edit_mode) or self.shown_sample is not None)

    def current_page(self):
        return self.tabs.currentWidget().widget()

    def set_active(self, active: bool) -> None:
        """The dock became visible (draw) or hidden (clear the overlay, stop tracing; a shown
        training sample gives the canvas back to the image)."""
        self.active = active
        if not active:
            self._leave_sample()
        self._apply_mode()
        if active:
            self.schedule()
        else:
            self.clear_overlay()

    def show_page(self, key: str) -> None:
        self.tabs.setCurrentWidget(self.page_areas[key])

    def _select_config_item(self, config: str) -> None:
        """Show ``config`` in the combo: a file gets its own item (its name; the path as tooltip)."""
        index = self.config_combo.findData(config)
        if index < 0:
            self.config_combo.insertItem(self.config_combo.count() - 1, config_label(config), config)
            index = self.config_combo.findData(config)
            self.config_combo.setItemData(index, config, Qt.ItemDataRole.ToolTipRole)
        self.config_combo.setCurrentIndex(index)

    def set_config(self, config: str) -> None:
        """Trace with ``config`` (a shipped name or a file); raises, changing nothing, on a config
        that fails to load or whose head DetScope does not build."""
        self.cfg = _usable_cfg(config)
        self.config = config
        self.notice = ""
        self._select_config_item(config)
        for page in self.pages.values():
            page.config_changed(self.cfg)
        self._store(CONFIG_KEY, config)
        self.schedule()

    def model_choice(self) -> str:
        return self.model_combo.currentData() or NO_MODEL

    def has_model(self) -> bool:
        """Whether a model (random init or a checkpoint) is chosen, rather than none."""
        return self.model_choice() != NO_MODEL

    def set_model_choice(self, choice: str) -> None:
        self.model_combo.setCurrentIndex(self.model_combo.findData(choice))
        self._store(MODEL_KEY, choice)
        self.schedule()

    def add_checkpoint(self, path: str) -> None:
        """Make a checkpoint the current model, with the config it was trained with (so the network
        input and normalisation are its own): the one it carries as data, else, once trusted
        (:attr:`trust_config`), the config.py beside it; else the current config stays."""
        config = self.checkpoint_config(path)
        if config is not None and config != self.config:
            self.set_config(config)
        key = f"ckpt:{path}"
        self.checkpoints[key] = path
        if self.model_combo.findData(key) < 0:
            self.model_combo.insertItem(self.model_combo.count() - 1, f"checkpoint {Path(path).name}", key)
        self.set_model_choice(key)

    def checkpoint_config(self, checkpoint: str) -> str | None:
        """The config to trace a checkpoint with, running no code the user has not agreed to."""
        from detengine.api import config_for_checkpoint
        own = config_for_checkpoint(checkpoint)
        if own is not None:
            return str(own)
        beside = Path(checkpoint).with_name("config.py")
        if not beside.is_file():
            return None
        if self.trust_config(beside):
            return str(beside)
        self.message.emit(f"{beside} was not run: the debug views keep {self.config}")
        return None

    # ------------------------------------------------------------------ tracing

    def _on_image_shown(self, _index: int) -> None:
        """A new image: the old trace must never be drawn (or clicked) over it (nor the old
        sample's boxes over the new image)."""
        self._forget_result()
        if self.shown_sample is not None:                  # the editor has shown the new image
            self.shown_sample = None
            self._editor_refresh()
            self._apply_mode()
        self._watch_document()
        self.schedule()

    def _forget_result(self) -> None:
        self.result = None
        self.failure = ""
        for page in self.pages.values():
            if page is not self.pages["scan"]:
                page.result = None
        self.clear_overlay()

    def schedule(self) -> None:
        if self.active:
            self._timer.start()

    def _image_pixels(self, key):
        if self._pixels is None or self._pixels[0] != key:
            self._pixels = (key, qimage_to_rgb(self.canvas.image))
        return self._pixels[1]

    def class_names(self) -> list[str]:
        """Class names in label order: the model's (a checkpoint's classes.txt) when the last
        trace used one, else the project's categories sorted by COCO id."""
        if self.result is not None and self.result.class_names:
            return list(self.result.class_names)
        return list(self.label_map().class_names)

    def label_map(self):
        """The last trace's model labels (a checkpoint's classes), else the project's own."""
        if self.result is not None and self.result.labels is not None:
            return self.result.labels
        from detengine.api import class_map
        return class_map(None, self.editor.project.categories)

    def label_to_cat(self) -> dict[int, int]:
        return self.label_map().label_to_cat

    def gt_inputs(self, labels=None):
        """The shown image's boxes: (N, 4) xyxy, labels, crowd flags, box ids, number of classes.
        Labels follow ``labels`` (a :class:`LabelMap`; by default the project's categories sorted
        by id); boxes of a class the map does not know are left out."""
        from detengine.api import class_map
        labels = labels or class_map(None, self.editor.project.categories)
        boxes = self.editor.project.images[self.editor.index].boxes
        kept, model_labels = labels.encode([b.category_id for b in boxes])
        boxes = [boxes[k] for k in kept]
        return ([b.xyxy for b in boxes], model_labels, [b.iscrowd for b in boxes], [b.id for b in boxes],
                labels.num_classes)

    def retrace(self) -> None:
        if not self.active or self.editor.doc is None or self.editor.index < 0:
            return
        if self.source == SOURCE_TRAIN:
            self._retrace_sample()
            return
        if self.canvas.image is None:
            self.overlay.clear()
            self.failure = "this image cannot be read: nothing to trace"
            self.status.setText(self.failure)
            return
        self.failure = ""
        index = self.editor.index
        project = self.editor.project
        key = (index, str(project.image_path(index)))
        image = self._image_pixels(key)
        record = project.images[index]
        all_boxes = [(b.xyxy, b.category_id, b.iscrowd, b.id) for b in record.boxes]
        categories = list(project.categories)
        spec, checkpoint, cfg, overrides, compare, post = self._trace_inputs(categories)

        def job():
            from detengine.api import model_label_map
            tracer = self._tracer(spec, cfg, checkpoint)
            labels_map = model_label_map(checkpoint, categories)
            kept, labels = labels_map.encode([b[1] for b in all_boxes])
            boxes = [all_boxes[k][0] for k in kept]
            crowd = [all_boxes[k][2] for k in kept]
            main = tracer.trace(key, image, boxes, labels, crowd, model_overrides=overrides, postprocess_overrides=post)
            other = None
            if compare is not None:
                other = tracer.trace(key, image, boxes, labels, crowd, model_overrides=compare,
                                     postprocess_overrides=post)
            class_names = [labels_map.name(i) for i in range(tracer.num_classes)]
            return DebugResult(main, other, [all_boxes[k][3] for k in kept], index, tracer, labels_map, class_names)

        self.runner.request(job)

    def _trace_inputs(self, categories: list) -> tuple:
        """What a trace job takes from the widgets (read on the GUI thread): the tracer's spec
        (config, its mtime, class count, model choice, checkpoint mtime), the checkpoint, the
        config, A's and B's assigner overrides and the NMS overrides."""
        use_model = self.needs_model() and self.model_choice() != NO_MODEL
        checkpoint = self.checkpoints.get(self.model_choice()) if use_model else None
        spec = (self.config, _mtime(self.config), len(categories), self.model_choice() if use_model else NO_MODEL,
                _mtime(checkpoint))
        page = self.pages["assign"]
        return (spec, checkpoint, self.cfg, page.model_overrides(), page.compare_overrides(),
                self.pages["nms"].postprocess_overrides())

    def _retrace_sample(self) -> None:
        """Trace the training sample of the shown image (seed, epoch of the controls): the trainer's
        data set of the project's train split (kept while the project, config and seed stay), the
        sample with its stages, its network input traced as the image's would be."""
        self._watch_document()
        index, project = self.editor.index, self.editor.project
        state = (self._generation, id(project))
        if self._snapshot is None or self._snapshot[0] != state:
            self._snapshot = (state, project.snapshot())     # the worker reads a copy, never the edited project
        snapshot = self._snapshot[1]
        split = self.train_split()
        split = None if split is None else tuple(int(i) for i in split)
        seed, epoch = self.sample_controls.seed.value(), self.sample_controls.epoch_index()
        categories = list(project.categories)
        spec, checkpoint, cfg, overrides, compare, post = self._trace_inputs(categories)
        sets = self._sample_sets

        def job():
            from detengine.api import (
                model_label_map,
                trace_sample,
                train_split_indices,
                training_sample,
                training_set,
            )
            indices = train_split_indices(snapshot, split)
            data_key = (spec[:2], state, split, seed, None if index in set(indices) else index)
            data = sets.get(data_key)
            if data is None:
                data = training_set(cfg, snapshot, index, seed=seed, split=indices)
                sets.clear()                                   # one data set at a time
                sets[data_key] = data
            sample = training_sample(cfg, snapshot, index, seed=seed, epoch=epoch, data=data)
            tracer = self._tracer(spec, cfg, checkpoint)
            labels_map = model_label_map(checkpoint, categories)
            key = ("train", data_key, epoch, index)
            main, kept = trace_sample(tracer, key, sample, labels_map, model_overrides=overrides,
                                      postprocess_overrides=post)
            other = None
            if compare is not None:
                other = trace_sample(tracer, key, sample, labels_map, model_overrides=compare,
                                     postprocess_overrides=post)[0]
            class_names = [labels_map.name(i) for i in range(tracer.num_classes)]
            return DebugResult(main, other, [canvas_id(k) for k in kept], index, tracer, labels_map, class_names,
                               sample)

        self.runner.request(job)

    def needs_model(self) -> bool:
        """The current view uses head outputs: the loss and NMS views, and the assignment views
        and the dataset scan when the assigner itself uses the predictions (RTMDet's dynamic
        soft label, task-aligned, SimOTA), the config's or the one the Assignment view swapped in."""
        page = self.current_page()
        if page.needs_model:
            return True
        if page in (self.pages["assign"], self.pages["anchors"], self.pages["scan"]):
            from detengine.api import head_core_for, merge_dicts
            page_a = self.pages["assign"]
            try:
                return any(head_core_for(merge_dicts(self.cfg["model"], o) if o else self.cfg["model"])
                           .needs_predictions() for o in (page_a.model_overrides(), page_a.compare_overrides()))
            except (ValueError, KeyError, TypeError) as exc:  # the trace reports it in full
                self.message.emit(f"cannot build the head of {Path(self.config).name}: {exc}")
                return False
        return False

    def _tracer(self, spec, cfg, checkpoint) -> ImageTracer:
        """Worker thread: the tracer for (config, classes, model), building the model once."""
        tracer = self._tracers.get(spec)
        if tracer is None:
            config, _config_mtime, num_classes, choice, _ckpt_mtime = spec
            model, name = None, None
            if choice == RANDOM_INIT or choice.startswith("ckpt:"):
                loaded = load_model(cfg, num_classes, checkpoint)
                model, name, num_classes = loaded.model, loaded.name, loaded.num_classes
                cfg = {**cfg, "model": model.model_cfg}
            tracer = ImageTracer(cfg, num_classes=num_classes, model=model, model_name=name)
            if len(self._tracers) > 2:                 # models are big: keep the last few only
                self._tracers.clear()
            self._tracers[spec] = tracer
        return tracer

    def _on_done(self, slot: str, request_id: int, result, seconds: float) -> None:
        if slot != "main" or not isinstance(result, DebugResult):
            return
        if not self.runner.is_latest(slot, request_id) or not self.active:
            return
        if result.image != self.editor.index or (result.sample is not None) != (self.source == SOURCE_TRAIN):
            return
        self.result = result
        if result.sample is not None:
            self._show_sample(result.sample)
            self._sample_status(result, seconds)
            self._redraw()
            self.traced.emit(result)
            return
        trace = result.main.trace
        meta = result.main.input.meta
        sx, sy = meta.get("scale_factor", (1.0, 1.0))
        model = result.main.model_name or ("not used by this view" if not self.needs_model()
                                              else "none (untrained head outputs)")
        if result.class_problems:
            model += "; " + "; ".join(result.class_problems[:3])
        notice = f"{self.notice}\n" if self.notice else ""
        self.status.setText(f"{notice}{self.config}: network input {trace.input_shape[1]}x{trace.input_shape[0]} "
                            f"(image x{sx:.3g}), {len(trace.priors)} priors, {len(trace.gt_boxes)} GT, "
                            f"{trace.num_classes} classes; model: {model}; traced in {seconds * 1000:.0f} ms")
        self._redraw()
        self.traced.emit(result)

    def _on_failed(self, slot: str, request_id: int, text: str) -> None:
        if self.runner.is_latest(slot, request_id):
            self.overlay.clear()
            first = text.splitlines()[0]
            self.failure = f"trace failed: {first}"
            self.status.setText(f"trace failed: {first}")
            self.message.emit(f"trace failed: {first}")

    def _redraw(self) -> None:
        page = self.current_page()
        self.clear_overlay(keep=page.persistent_layers)
        if self.result is not None and self.active:
            page.show_result(self.result, self.overlay)
            if not self.traced_stage_shown():                  # an earlier stage: the tables, no drawing
                self.clear_overlay()

    def traced_stage_shown(self) -> bool:
        """The canvas shows what the views traced (not an earlier stage of the training sample)."""
        return self.source != SOURCE_TRAIN or self.shown_sample is None or self.sample_controls.is_last()

    def clear_overlay(self, keep=()) -> None:
        """Clear the overlay except the ``keep`` layers (a page redraws those only when they change)."""
        self.overlay.clear(*[name for name in list(self.overlay.layers) if name not in keep])
        if not keep:
            self.overlay_key = None

    def _on_page_changed(self) -> None:
        self.clear_overlay()
        if self.result is not None and self.needs_model() and self.result.main.model_name is None \
                and self.model_choice() != NO_MODEL:
            self.overlay.clear()
            self.schedule()                      # the loss / NMS views need the model's outputs
            return
        self._redraw()

    def _on_box_selection(self, ids) -> None:
        """Selecting one GT box on the canvas selects it in the Assignment view (its positives
        and heat map)."""
        if not (self.active and self.result is not None and self.current_page() is self.pages["assign"]):
            return
        if not ids:                              # an empty click (edit mode), Esc, another image
            self.pages["assign"].select_gt(None)
        elif len(ids) == 1:
            box_ids = self.result.box_ids
            crowd = set(self.result.main.ignore_index)
            traced = [b for i, b in enumerate(box_ids) if i not in crowd]
            if ids[0] in traced:
                self.pages["assign"].select_gt(traced.index(ids[0]))

    def _on_canvas_click(self, x: float, y: float) -> None:
        if not self.traced_stage_shown():
            self.message.emit("an earlier stage of the training sample: step to the last stage to ask the view")
            return
        if self.active and self.result is not None and not self.edit_mode:
            self.current_page().on_click(x, y)

    def _on_escape(self) -> None:
        """Esc on the canvas or in the dock: the view leaves its selection (a GT, a clicked box)."""
        leave = getattr(self.current_page(), "on_escape", None)
        if self.active and leave is not None:
            leave()

    def _zoom_to_jumped(self, image: int, box_id: int) -> None:
        """After the window has shown a box the scan jumped to (queued behind it): zoom to it."""
        if image == self.editor.index:
            self.canvas.zoom_to_box(box_id)

    # ------------------------------------------------------------------ the training sample

    def set_source(self, source: str) -> None:
        """Trace the image through the test pipeline (``SOURCE_IMAGE``) or the training sample
        (``SOURCE_TRAIN``: box editing off, the canvas shows the augmented sample)."""
        if source == self.source:
            return
        train = source == SOURCE_TRAIN
        if train:
            self.set_edit_mode(False)
        self.source = source
        self.source_combo.setCurrentIndex(self.source_combo.findData(source))
        self.sample_controls.setVisible(train)
        self._forget_result()
        if not train:
            self._leave_sample()
        self._apply_mode()
        self.status.setText("making the training sample…" if train else "")
        self.message.emit(TRAIN_HINT if train else "the debug views trace the image through the test pipeline")
        self.schedule()

    def set_sample(self, *, seed: int | None = None, epoch: int | None = None, stage: int | None = None) -> None:
        """The training sample's ``seed``, ``epoch`` (1-based) and the ``stage`` to show when it
        comes (an index; negative from the end)."""
        self._wanted_stage = stage
        if seed is not None:
            self.sample_controls.seed.setValue(int(seed))
        if epoch is not None:
            self.sample_controls.epoch.setValue(int(epoch))
        self.schedule()

    def _on_sample_changed(self) -> None:
        """Seed or epoch changed: a new sample (the stage shown stays, if the new one has it)."""
        self.schedule()

    def _on_stage_changed(self, k: int) -> None:
        if self.shown_sample is None:
            return
        self._show_stage(k)
        self._redraw()

    def _show_sample(self, sample) -> None:
        """Put a new training sample on the canvas, at the stage shown before (else the last)."""
        controls = self.sample_controls
        old = self.shown_sample
        stage = None if old is None or controls.is_last() else controls.current_stage()
        if self._wanted_stage is not None:
            stage, self._wanted_stage = self._wanted_stage % len(sample.stages), None
        self.shown_sample = sample
        controls.set_stages([s.name for s in sample.stages], stage)
        self._show_stage(controls.current_stage())
        self._apply_mode()

    def _show_stage(self, k: int) -> None:
        sample = self.shown_sample
        stage = sample.stages[k]
        self.canvas.set_image(rgb_to_qimage(stage.image), stage.size)
        self._refresh_canvas_boxes()
        last = k == len(sample.stages) - 1
        mixed = int((stage.box_rows < 0).sum())
        lines = [f"{stage.name}: {stage.image.shape[1]}x{stage.image.shape[0]}, {len(stage.boxes)} boxes"
                 + (f" ({mixed} mixed in)" if mixed else "")
                 + (" — traced by the views" if last else " — the views trace the last stage")]
        self.sample_controls.note.setText("\n".join(lines + stage.notes))
        self.sample_controls.note.setToolTip(stage.description)         # the transform and its arguments

    def _sample_status(self, result: DebugResult, seconds: float) -> None:
        sample, trace = result.sample, result.main.trace
        model = result.main.model_name or ("not used by this view" if not self.needs_model()
                                              else "none (untrained head outputs)")
        if result.class_problems:
            model += "; " + "; ".join(result.class_problems[:3])
        mixed = sum(1 for i in sample.box_ids if i < 0)
        lines = [self.notice] if self.notice else []
        lines.append(f"training sample {sample.index} of the train split, epoch {sample.epoch + 1}, seed {sample.seed}"
                     + (f", switched pipeline (PipelineSwitchHook) #{sample.pipeline_stage}" if sample.pipeline_stage
                        else "")
                     + f": input {trace.input_shape[1]}x{trace.input_shape[0]}, {len(trace.priors)} priors, "
                     f"{len(trace.gt_boxes)} GT" + (f" ({mixed} mixed in)" if mixed else "")
                     + f", {trace.num_classes} classes; model: {model}; {seconds * 1000:.0f} ms")
        self.status.setText("\n".join(lines + sample.notes))

    def _refresh_canvas_boxes(self) -> None:
        """The editor's ``refresh_boxes``: a shown training sample draws the boxes of its stage
        (the sample's own ids), else the editor draws the image's."""
        sample = self.shown_sample
        if sample is None:
            self._editor_refresh()
            return
        stage = sample.stages[max(self.sample_controls.current_stage(), 0)]
        if not self.editor.show_boxes:
            self.canvas.set_boxes([])
            return
        names = {c.id: c.name for c in self.editor.project.categories}
        self.canvas.set_boxes(stage_boxes(stage, sample.label_to_cat, names, self.editor.show_labels))

    def _leave_sample(self) -> None:
        """Give the canvas back to the image and its boxes."""
        if self.shown_sample is None:
            return
        self.shown_sample = None
        self.sample_controls.set_stages([])
        self.sample_controls.note.setText("")
        editor = self.editor
        if editor.doc is not None and 0 <= editor.index < len(editor.project.images):
            record = editor.project.images[editor.index]
            image, problem = editor.cache.get(editor.project.image_path(editor.index))
            self.canvas.set_image(image, (record.width or 640, record.height or 480), problem)
            self.canvas.set_selection([])
        self._editor_refresh()

    def _watch_document(self) -> None:
        """Count the open document's box and class changes: the training data set is rebuilt after
        one (a mosaic takes other images of the project)."""
        doc = self.editor.doc
        if doc is self._watched_doc:
            return
        if self._watched_doc is not None:
            try:
                self._watched_doc.boxesChanged.disconnect(self._on_project_changed)
                self._watched_doc.categoriesChanged.disconnect(self._on_project_changed)
            except (RuntimeError, TypeError):                # the old document is gone
                pass
        self._watched_doc = doc
        self._generation += 1
        if doc is not None:
            doc.boxesChanged.connect(self._on_project_changed)
            doc.categoriesChanged.connect(self._on_project_changed)

    def _on_project_changed(self, *_args) -> None:
        self._generation += 1
        if self.source == SOURCE_TRAIN:
            self.schedule()

    # ------------------------------------------------------------------ remembered choice

    def _store(self, key: str, value: str) -> None:
        if self.remember:
            settings().setValue(key, value)

    def restore_choice(self) -> str | None:
        """The config and model of the last session (the settings), where still usable: a shipped
        config, a file that loads (run only as :attr:`trust_config` allows), a checkpoint still on
        disk. Otherwise the current choice stays; the reason is returned, shown above the traces
        and sent as a message."""
        stored = settings()
        config, model = stored.value(CONFIG_KEY), stored.value(MODEL_KEY)
        problems = []
        if config and str(config) != self.config:
            config, problem = str(config), None
            if config.endswith(".py") and not Path(config).is_file():
                problem = "the file is gone"
            elif config.endswith(".py") and not self.trust_config(Path(config)):
                problem = "not run without your consent"
            else:
                try:
                    self.set_config(config)
                except Exception as exc:                     # it changed since, or a name no longer shipped
                    problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if problem:
                problems.append(f"the last session's config {config_label(config)} cannot be used ({problem}): "
                                f"the debug views trace with {self.config}")
        if model and str(model) != self.model_choice():
            model = str(model)
            if model.startswith("ckpt:"):
                path = model.removeprefix("ckpt:")
                try:
                    if not Path(path).is_file():
                        raise FileNotFoundError("the file is gone")
                    self.add_checkpoint(path)
                except Exception as exc:
                    problems.append(f"the last session's checkpoint {Path(path).name} cannot be used ({exc}): "
                                    f"the model is {self.model_combo.currentText()}")
            elif self.model_combo.findData(model) >= 0:
                self.set_model_choice(model)
        text = "; ".join(problems)
        if text:
            self.notice = text
            self.status.setText(text)
            self.message.emit(text)
        return text or None

    # ------------------------------------------------------------------ header actions

    def _on_config_chosen(self, index: int) -> None:
        config = self.config_combo.itemData(index)
        if not config:
            path, _ = QFileDialog.getOpenFileName(self, "Open a detector config", "", "Config (*.py)")
            if not path:
                self.config_combo.setCurrentIndex(max(0, self.config_combo.findData(self.config)))
                return
            config = path
        try:
            self.set_config(config)
        except Exception as exc:                 # a user's config file: say what is wrong, keep the old one
            self.message.emit(f"cannot load config {config}: {exc}")
            self.config_combo.setCurrentIndex(max(0, self.config_combo.findData(self.config)))

    def _on_model_chosen(self, index: int) -> None:
        if self.model_combo.itemData(index):
            self._store(MODEL_KEY, self.model_combo.itemData(index))
            self.schedule()
            return
        path, _ = QFileDialog.getOpenFileName(self, "Load a checkpoint", "", "Checkpoint (*.pth *.pt)")
        if path:
            self.add_checkpoint(path)
        else:
            self.model_combo.setCurrentIndex(0)

    def snippet(self) -> str:
        overrides = dict(self.pages["assign"].model_overrides() or {})
        test_cfg = self.pages["nms"].test_cfg_snippet()
        return config_snippet(overrides, test_cfg)

    def copy_snippet(self) -> None:
        QGuiApplication.clipboard().setText(self.snippet())
        self.message.emit("config snippet copied to the clipboard")

    def shutdown(self) -> None:
        self.pages["scan"].shutdown()
        self.runner.stop()


def _mtime(path) -> float:
    try:
        return Path(path).stat().st_mtime if path else 0.0
    except OSError:
        return 0.0
