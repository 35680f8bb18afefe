"""DetScope's main window: the image list (left), the canvas (centre), the class list and the
debug / training docks (right), menus, shortcuts, status bar; opening, saving and recovery.

The window wires widgets together and asks the user questions (through :class:`Dialogs`);
box editing lives in :class:`Editor`, unsaved state and autosave in :class:`Document`.

Start-up: this module imports Qt only. The engine (PyTorch, torchvision) comes in with the
project (``detengine.data``) and the debug / training / evaluation panels. ``python main.py``
builds the window with ``defer_engine=True``: the light widgets first, shown at once, then, after
the first paint, one step per event-loop turn with the status bar saying what is loading.
"""
from __future__ import annotations

import importlib
import json
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox, QDockWidget, QFrame, QLabel, QMainWindow, QMenu, QScrollArea, QTabWidget

from app import theme
from app.annotate import document
from app.annotate.canvas import Canvas
from app.annotate.class_panel import ClassPanel
from app.annotate.dataset_panel import DatasetPanel
from app.annotate.document import Document, holder_text, load_recovery, pending_recovery
from app.annotate.editor import Editor
from app.annotate.image_list_panel import ImageListPanel
from app.annotate.image_loader import image_size
from app.dialogs import Dialogs
from app.paths import home_dir, settings

if TYPE_CHECKING:
    from detengine.api import AnnotationProject

__all__ = ["MainWindow", "VIEWS"]

VIEWS = ("annotate", "anchors", "assign", "loss", "nms", "scan", "train", "evaluate", "dataset")
RIGHT_DOCKS = ("classes", "debug", "training", "dataset")      # tabbed together, in this order
CANVAS_SHARE = 0.52         # the canvas keeps at least this share of the window's width (docks shrink, scroll)
DOCK_MIN_WIDTH = 160        # a dock can be made this narrow: its content scrolls


class MainWindow(QMainWindow):
    """Signals, for a ``defer_engine`` start: ``firstPainted()`` (the window is on screen),
    ``engineLoaded()`` (panels built, project open), ``loadFailed(text)`` (a loading step raised),
    ``ready()`` (loaded, and the visible debug view, if any, has drawn its first trace)."""

    firstPainted = Signal()
    engineLoaded = Signal()
    loadFailed = Signal(str)
    ready = Signal()

    def __init__(self, *, open_path: str | None = None, image_index: int | None = None, view: str = "annotate",
                 config: str = "ssd300_coco", dialogs=None, restore_layout: bool = True, defer_engine: bool = False):
        super().__init__()
        self.dialogs = dialogs or Dialogs(self)
        self.persist = restore_layout           # a --screenshot run neither reads nor writes the user's layout
        self.doc: Document | None = None
        self.engine_loaded = False              # the debug, training and evaluation panels exist
        self._closed = False
        self._pending_steps: list | None = None     # the engine-loading steps not started yet
        self._unpainted_timer: QTimer | None = None  # starts loading if no paint event comes
        self.box_menu = None                         # the open class popup of a box
        self.config_problem = ""                     # why the asked-for config is not the one traced
        self.canvas = Canvas()
        self.setCentralWidget(self.canvas)
        self.editor = Editor(self.canvas, self)
        self.editor.ask_class_name = lambda: self.dialogs.ask_class_name(self._class_names())
        self.editor.ask_box_class = lambda names, current: self.dialogs.ask_box_class(names, current)
        self._build_docks()
        if not defer_engine:
            self._build_panels(config)
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        self._connect()
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self._layout_restored = restore_layout and self._restore_layout()
        self._docks_fitted = False
        if defer_engine:
            self._defer_engine_steps(config, open_path, image_index, view)
            return
        self._open_start(open_path, image_index)
        self.show_view(view)

    # ------------------------------------------------------------------ construction

    def _build_docks(self) -> None:
        """The docks, with the light panels; the debug and training docks hold a placeholder
        until :meth:`_build_panels`."""
        self.image_list = ImageListPanel()
        self.class_panel = ClassPanel()
        self.dataset_panel = DatasetPanel()
        self.docks = {}
        for key, title, widget, area in (
                ("images", "Images", self.image_list, Qt.DockWidgetArea.LeftDockWidgetArea),
                ("classes", "Classes", self.class_panel, Qt.DockWidgetArea.RightDockWidgetArea),
                ("debug", "Debug", _placeholder(), Qt.DockWidgetArea.RightDockWidgetArea),
                ("training", "Training", _placeholder(), Qt.DockWidgetArea.RightDockWidgetArea),
                ("dataset", "Dataset", self.dataset_panel, Qt.DockWidgetArea.RightDockWidgetArea)):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock_{key}")
            self.addDockWidget(area, dock)
            self.docks[key] = dock
            self._set_dock_content(key, widget)
        self._tabify_right()
        self.docks["dataset"].visibilityChanged.connect(self.dataset_panel.set_active)
        self._hidden_docks: list[str] = []       # the docks "Image Only" hid, shown again by the next toggle

    def _set_dock_content(self, key: str, widget) -> None:
        """``widget`` into dock ``key``, inside a scroll area (the image list scrolls by itself):
        a dock can be made narrow without forcing the window wider or starving the canvas."""
        old = self.docks[key].widget()
        if key == "images":
            widget.setMinimumWidth(DOCK_MIN_WIDTH)
            self.docks[key].setWidget(widget)
        else:
            for combo in widget.findChildren(QComboBox):     # long entries elide instead of widening the dock
                combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
                combo.setMinimumContentsLength(10)
            area = QScrollArea()
            area.setWidgetResizable(True)
            area.setFrameShape(QFrame.Shape.NoFrame)
            area.setWidget(widget)
            area.setMinimumWidth(DOCK_MIN_WIDTH)
            self.docks[key].setWidget(area)
        if old is not None:
            old.deleteLater()

    def dock_content(self, key: str):
        """The panel a dock shows (inside its scroll area)."""
        widget = self.docks[key].widget()
        return widget.widget() if isinstance(widget, QScrollArea) else widget

    def dock_widths(self, right: str = "classes") -> tuple[int, int]:
        """(image list, right dock) widths that leave the canvas :data:`CANVAS_SHARE` of the
        window: the image list ~17 % (150-290 px), the right dock the rest up to 560 px."""
        width = max(self.width(), 640)
        images = max(150, min(290, int(width * 0.17)))
        wanted = {"classes": 300, "dataset": 420}.get(right, 560)
        room = int(width * (1 - CANVAS_SHARE)) - images - 16     # two dock separators and frames
        return images, max(DOCK_MIN_WIDTH, min(wanted, room))

    def fit_docks(self, right: str | None = None) -> None:
        """Give the docks their :meth:`dock_widths` (the right one: ``right``'s, else the one shown)."""
        if right is None:
            right = next((k for k in ("debug", "training", "dataset", "classes") if self._dock_shown(k)), "classes")
        images, side = self.dock_widths(right)
        docks = [d for d in (self.docks["images"], self.docks[right]) if d.isVisible()]
        sizes = [images if d is self.docks["images"] else side for d in docks]
        if docks:
            self.resizeDocks(docks, sizes, Qt.Orientation.Horizontal)

    def _dock_shown(self, key: str) -> bool:
        dock = self.docks[key]
        return dock.isVisible() and not dock.visibleRegion().isEmpty()

    def reset_layout(self) -> None:
        """View > Reset Layout: every dock back in its place, docked and shown, the right ones
        tabbed, sizes that leave the canvas its share."""
        self._hidden_docks = []
        for key in ("images", *RIGHT_DOCKS):
            dock = self.docks[key]
            dock.setFloating(False)
            area = Qt.DockWidgetArea.LeftDockWidgetArea if key == "images" else Qt.DockWidgetArea.RightDockWidgetArea
            self.addDockWidget(area, dock)
            dock.show()
        self._tabify_right()
        self.fit_docks("classes")

    def _tabify_right(self) -> None:
        for a, b in zip(RIGHT_DOCKS, RIGHT_DOCKS[1:]):
            self.tabifyDockWidget(self.docks[a], self.docks[b])
        self.docks["classes"].raise_()

    def toggle_image_only(self) -> None:
        """F11: hide every dock (the image alone, as in an image viewer); again: show them back."""
        if self._hidden_docks:
            for key in self._hidden_docks:
                self.docks[key].show()
            self._hidden_docks = []
            self.fit_docks()
            return
        self._hidden_docks = [k for k, d in self.docks.items() if d.isVisible()]
        for key in self._hidden_docks:
            self.docks[key].hide()
        self.show_message("image only: F11 shows the panels again", 4000)

    def canvas_share(self) -> float:
        return self.canvas.width() / max(1, self.width())

    def _keep_canvas_room(self) -> None:
        """After the window's size changed: a layout saved on a bigger screen (or docks dragged
        wide, then the window made smaller) must not starve the canvas: with less than half the
        width, the docks are fitted again. Dragging a dock wider is left alone."""
        if self.isVisible() and self.canvas_share() < 0.5:
            self.fit_docks()

    def _build_panels(self, config: str) -> None:
        """The debug, training and evaluation panels (these import the engine: PyTorch, torchvision)."""
        from app.debug.debug_panel import DEFAULT_CONFIG, DebugPanel, config_problem
        from app.training.eval_panel import EvalPanel
        from app.training.training_panel import TrainingPanel
        problem = config_problem(config) if config != DEFAULT_CONFIG else None
        if problem:                  # the window stays up, says why and traces with the default
            self.config_problem = f"Cannot use config {config}: {problem}\nThe debug views trace with {DEFAULT_CONFIG}."
            config = DEFAULT_CONFIG
        self.debug_panel = DebugPanel(self.canvas, self.editor, config)
        self.debug_panel.trust_config = self.trust_config
        self.debug_panel.remember = self.persist                 # the dock's config / model kept across sessions
        self.debug_panel.train_split = lambda: (self.training_panel.split or (None,))[0]
        self.training_panel = TrainingPanel(self)
        self.eval_panel = EvalPanel(self)
        self.training_tabs = QTabWidget()
        self.training_tabs.addTab(self.training_panel, "Train")
        self.training_tabs.addTab(self.eval_panel, "Evaluate")
        for key, widget in (("debug", self.debug_panel), ("training", self.training_tabs)):
            self._set_dock_content(key, widget)
        self._connect_panels()
        if self.persist and not problem and config == DEFAULT_CONFIG:     # no other config asked for
            self.debug_panel.restore_choice()
        if problem:
            self.debug_panel.notice = self.config_problem
            self.debug_panel.status.setText(self.debug_panel.notice)
            QTimer.singleShot(0, lambda: self.dialogs.notice("Cannot use the config", self.config_problem))
        self.engine_loaded = True
        if self.doc is not None:
            self._attach_panels()

    def _action(self, text: str, slot, shortcuts=(), tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setShortcuts([QKeySequence(s) for s in shortcuts])
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        a = self.actions_by_name = {}
        a["open_json"] = self._action("Open Annotations (COCO JSON, YOLO data.yaml)…", self.ask_open_json, ["Ctrl+O"])
        a["open_folder"] = self._action("Open Folder (VOC, YOLO, labelme or images)…", self.ask_open_folder,
                                        ["Ctrl+Shift+O"])
        a["fit_anchors"] = self._action("Fit Anchors to Dataset…", self.fit_anchors_dialog,
                                        tip="Search anchor settings that cover the training split's boxes best "
                                            "(the Debug dock's config), before / after under the real assigner")
        a["export_annotations"] = self._action("Export Annotations As (COCO / YOLO / VOC / labelme)…",
                                               self.export_annotations)
        a["open_sample"] = self._action("Open Sample Project", self.open_sample)
        a["save"] = self._action("Save", lambda: self.save(background=True), ["Ctrl+S"])
        a["save_as"] = self._action("Save As…", self.save_as, ["Ctrl+Shift+S"])
        a["export"] = self._action("Export Predictions (COCO results)…", lambda: self.eval_panel.ask_export())
        a["quit"] = self._action("Quit", self.close, ["Ctrl+Q"])
        edit = self._unless_sample_shown
        a["undo"] = self._action("Undo", edit(lambda: self.doc and self.doc.undo_group.undo()), ["Ctrl+Z"])
        a["redo"] = self._action("Redo", edit(lambda: self.doc and self.doc.undo_group.redo()),
                                 ["Ctrl+Y", "Ctrl+Shift+Z"])
        a["draw"] = self._action("Draw Box", edit(self.canvas.start_draw_mode), ["W"])
        a["delete"] = self._action("Delete Boxes", edit(self.editor.delete_selected), ["Delete", "Backspace"])
        a["copy"] = self._action("Copy Boxes", self.editor.copy_selected, ["Ctrl+C"])
        a["paste"] = self._action("Paste Boxes", edit(self.editor.paste), ["Ctrl+V"])
        a["duplicate"] = self._action("Duplicate Boxes", edit(self.editor.duplicate_selected), ["Ctrl+D"])
        a["next"] = self._action("Next Image", lambda: self.step_image(1), ["N", "D"])
        a["prev"] = self._action("Previous Image", lambda: self.step_image(-1), ["P", "A"])
        a["fit"] = self._action("Fit to Window", self.canvas.fit, ["F", "Ctrl+0"])
        a["actual"] = self._action("Actual Size (1:1)", self.canvas.actual_size, ["Ctrl+1"])
        a["zoom_in"] = self._action("Zoom In", lambda: self.canvas.zoom_by(1.25), ["Ctrl++", "Ctrl+="])
        a["zoom_out"] = self._action("Zoom Out", lambda: self.canvas.zoom_by(0.8), ["Ctrl+-"])
        a["shortcuts"] = self._action("Keyboard Shortcuts", self.dialogs.show_shortcuts, ["F1"])
        a["image_only"] = self._action("Image Only (hide panels)", self.toggle_image_only, ["F11"])
        a["select_all"] = self._action("Select All Boxes", self.editor.select_all, ["Ctrl+A"])
        a["show_boxes"] = self._toggle("Show Boxes", lambda on: self.editor.set_visibility(boxes=on), ["Ctrl+H"],
                                       "view/show_boxes", True)
        a["show_labels"] = self._toggle("Show Class Names", lambda on: self.editor.set_visibility(labels=on),
                                        ["Ctrl+L"], "view/show_labels", True)
        a["ask_each_box"] = self._toggle("Ask Class for Each New Box", self._set_ask_each_box, [],
                                         "annotate/ask_each_box", False,
                                         "On: every box you draw asks its class (type to filter, a new name adds "
                                         "a class), as labelme does. Off: it takes the current class.")
        a["reset_layout"] = self._action("Reset Layout", self.reset_layout)
        for k in range(1, 10):
            a[f"class_{k}"] = self._action(f"Class {k}", lambda _=False, k=k: self.pick_class_by_key(k), [str(k)])
        a["undo"].setEnabled(False)
        a["redo"].setEnabled(False)

    def _unless_sample_shown(self, fn):
        """``fn`` for an edit action, refused (said in the status bar) while the canvas shows the
        Debug dock's training sample: its boxes are the pipeline's, and an undo or paste would
        change the project's image out of sight."""
        def guarded(*_args):
            if self.debug_panel.shown_sample is not None:
                from app.debug.debug_panel import EDIT_REFUSED
                self.show_message(EDIT_REFUSED, 6000)
                return None
            return fn()
        return guarded

    def _toggle(self, text: str, slot, keys: list[str], setting: str, default: bool, tip: str = "") -> QAction:
        """A checkable action whose state is kept in the settings (under ``setting``)."""
        action = self._action(text, lambda: None, keys, tip)
        action.setCheckable(True)
        stored = settings().value(setting, default) if self.persist else default
        on = stored in (True, "true", "1", 1) if not isinstance(stored, bool) else stored
        action.setChecked(on)
        slot(on)

        def changed(state: bool) -> None:
            if self.persist:
                settings().setValue(setting, state)
            slot(state)
        action.toggled.connect(changed)
        return action

    def _set_ask_each_box(self, on: bool) -> None:
        self.editor.ask_each_box = on

    def _build_toolbar(self) -> None:
        """Modes, open, previous / next, save, fit, what is shown: the annotator's daily buttons."""
        from PySide6.QtWidgets import QStyle, QToolBar
        bar = QToolBar("Tools", self)
        bar.setObjectName("toolbar_tools")
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        style = self.style()
        icons = {"open_json": QStyle.StandardPixmap.SP_DialogOpenButton, "save": QStyle.StandardPixmap.SP_DialogSaveButton,
                 "prev": QStyle.StandardPixmap.SP_ArrowBack, "next": QStyle.StandardPixmap.SP_ArrowForward}
        for name in ("open_json", "save", None, "prev", "next", None, "draw", "fit", None, "show_boxes", "show_labels",
                     "ask_each_box"):
            if name is None:
                bar.addSeparator()
                continue
            action = self.actions_by_name[name]
            if name in icons:
                action.setIcon(style.standardIcon(icons[name]))
            bar.addAction(action)
        short = {"open_json": "Open", "prev": "Prev", "next": "Next", "draw": "Draw", "fit": "Fit",
                 "show_boxes": "Boxes", "show_labels": "Names", "ask_each_box": "Ask class"}
        for name, text in short.items():
            action = self.actions_by_name[name]
            action.setIconText(text)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        self.toolbar = bar

    def _build_menus(self) -> None:
        a, bar = self.actions_by_name, self.menuBar()
        menus = {"&File": ["open_json", "open_folder", "open_sample", None, "save", "save_as", "export_annotations",
                           "export", None, "quit"],
                 "&Edit": ["undo", "redo", None, "draw", "select_all", "delete", "copy", "paste", "duplicate", None,
                           "ask_each_box"],
                 "&View": ["next", "prev", None, "fit", "actual", "zoom_in", "zoom_out", None, "show_boxes",
                           "show_labels", None, "image_only", "reset_layout"],
                 "&Tools": ["fit_anchors"],
                 "&Help": ["shortcuts"]}
        for title, names in menus.items():
            menu = bar.addMenu(title)
            for name in names:
                menu.addSeparator() if name is None else menu.addAction(a[name])
            if title == "&View":
                menu.addSeparator()
                for dock in self.docks.values():
                    menu.addAction(dock.toggleViewAction())

    def _build_status_bar(self) -> None:
        self.image_label = QLabel()
        self.cursor_label = QLabel()
        self.zoom_label = QLabel()
        self.autosave_warning = QLabel()          # stays until an autosave succeeds
        self.autosave_warning.setStyleSheet(f"color: {theme.PROBLEM}")
        for label in (self.autosave_warning, self.image_label, self.cursor_label, self.zoom_label):
            self.statusBar().addPermanentWidget(label)

    def _connect(self) -> None:
        """The light widgets' signals (the panels': :meth:`_connect_panels`)."""
        self.image_list.imageSelected.connect(self._on_image_selected)
        self.class_panel.classActivated.connect(self.editor.apply_class)
        self.class_panel.currentClassPicked.connect(
            lambda cid: self.editor.set_current_class(cid) if cid != self.editor.current_class else None)
        self.class_panel.addRequested.connect(self.add_class)
        self.class_panel.renameRequested.connect(self.rename_class)
        self.class_panel.mergeRequested.connect(self.merge_class)
        self.class_panel.deleteRequested.connect(self.delete_class)
        self.class_panel.colorRequested.connect(self.recolor_class)
        self.editor.currentClassChanged.connect(lambda cid: self.class_panel.select(cid if cid >= 0 else None))
        self.editor.message.connect(self.show_message)
        self.editor.imageProblem.connect(self._on_image_problem)
        self.editor.imageShown.connect(self._update_image_label)
        self.canvas.message.connect(self.show_message)
        self.canvas.cursorMoved.connect(self._on_cursor)
        self.canvas.zoomChanged.connect(lambda s: self.zoom_label.setText(f"zoom {s * 100:.0f}%"))
        self.canvas.boxMenuRequested.connect(self._box_menu)

    def _connect_panels(self) -> None:
        self.docks["debug"].visibilityChanged.connect(self.debug_panel.set_active)
        self.docks["debug"].visibilityChanged.connect(lambda _v: self.eval_panel.show_predictions())
        self.debug_panel.message.connect(self.show_message)
        self.debug_panel.pages["scan"].jumpRequested.connect(self.jump_to_box)
        self.training_panel.checkpointChosen.connect(self.use_checkpoint)
        self.training_panel.message.connect(self.show_message)
        self.training_panel.splitChanged.connect(self.image_list.set_val_rows)
        self.eval_panel.message.connect(self.show_message)
        self.editor.imageShown.connect(lambda _i: self.eval_panel.show_predictions())

    # ------------------------------------------------------------------ deferred start

    def _defer_engine_steps(self, config: str, open_path: str | None, image_index: int | None, view: str) -> None:
        """Show the light window now; after its first paint (or 3 s, if it is never painted),
        load the engine one step per event-loop turn, each named in the status bar."""
        steps = [("Loading PyTorch…", lambda: importlib.import_module("torch")),
                 ("Opening the project…", lambda: self._open_start(open_path, image_index)),
                 ("Loading the detector engine…", _import_panel_modules),
                 (f"Building {config}…", lambda: self._build_panels_late(config, view))]
        self._set_actions_enabled(False)
        self.show_view(view)
        self.statusBar().showMessage(steps[0][0])
        self._pending_steps: list | None = steps             # None once started
        self._unpainted_timer = QTimer(self, singleShot=True, interval=3000)
        self._unpainted_timer.timeout.connect(self._start_loading)
        self._unpainted_timer.start()
        self.firstPainted.connect(lambda: QTimer.singleShot(0, self._start_loading))
        self.installEventFilter(self)

    def _build_panels_late(self, config: str, view: str) -> None:
        """The panels, into the shown window: the view's page, drawn now if its dock is visible."""
        self._build_panels(config)
        self.show_view(view)
        self.debug_panel.set_active(self.docks["debug"].isVisible())

    def _start_loading(self) -> None:
        self._unpainted_timer.stop()
        steps, self._pending_steps = self._pending_steps, None
        if steps is not None:
            self._run_steps(steps)

    def eventFilter(self, watched, event) -> bool:
        if watched is self and event.type() == QEvent.Type.Paint:
            self.removeEventFilter(self)
            QTimer.singleShot(0, self.firstPainted.emit)        # once the paint is on screen
        return super().eventFilter(watched, event)

    def _run_steps(self, steps: list) -> None:
        """Run the first step, then the rest at the next event-loop turn."""
        if self._closed:
            return
        text, step = steps[0]
        self.statusBar().showMessage(text)
        self.statusBar().repaint()                              # on screen before the step blocks
        try:
            step()
        except Exception as exc:                                # a broken config file, a broken install
            failure = f"{type(exc).__name__}: {exc}"
            self.statusBar().showMessage(f"{text.rstrip('…')} failed: {failure.splitlines()[0]}")
            self.loadFailed.emit(failure)
            return
        if len(steps) > 1:
            QTimer.singleShot(0, lambda: self._run_steps(steps[1:]))
        else:
            self._finish_loading()

    def _finish_loading(self) -> None:
        self._set_actions_enabled(True)
        self.engineLoaded.emit()
        if self.view_drawn():
            self._on_ready()
            return
        panel = self.debug_panel
        uses_model = panel.needs_model() and panel.model_choice() != "none"
        self.statusBar().showMessage(f"Building the {panel.config} model…" if uses_model else "Tracing the image…")
        panel.traced.connect(self._on_first_trace)

    def _on_first_trace(self, _result) -> None:
        if self.view_drawn():
            self.debug_panel.traced.disconnect(self._on_first_trace)
            self._on_ready()

    def _on_ready(self) -> None:
        self.statusBar().clearMessage()
        if self.doc is not None:
            self.show_message(self._project_summary(), 6000)
        self.ready.emit()

    def _set_actions_enabled(self, enabled: bool) -> None:
        """Menus and shortcuts wait for the panels (Quit and the shortcut list excepted)."""
        for name, action in self.actions_by_name.items():
            if name not in ("quit", "shortcuts", "undo", "redo", "image_only", "reset_layout"):
                action.setEnabled(enabled)
        group = self.doc.undo_group if enabled and self.doc is not None else None
        self.actions_by_name["undo"].setEnabled(group is not None and group.canUndo())
        self.actions_by_name["redo"].setEnabled(group is not None and group.canRedo())

    # ------------------------------------------------------------------ layout memory

    def _restore_layout(self) -> bool:
        """The last session's geometry and docks; True when there was a saved dock layout."""
        s = settings()
        geometry, state = s.value("window/geometry"), s.value("window/state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        return isinstance(state, QByteArray) and self.restoreState(state)

    def _save_layout(self) -> None:
        s = settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        if self.doc is not None and self.doc.project.path is not None:
            s.setValue("project/last", str(self.doc.project.path))
        elif self.doc is not None:
            s.setValue("project/last", str(self.doc.project.image_root))
        s.sync()

    def _last_folder(self) -> str:
        return str(settings().value("project/last_folder", str(Path.home())))

    def _remember_folder(self, path) -> None:
        path = Path(path)
        settings().setValue("project/last_folder", str(path if path.is_dir() else path.parent))

    # ------------------------------------------------------------------ opening

    def _open_start(self, open_path: str | None, image_index: int | None) -> None:
        self._open_initial(open_path)
        if image_index is not None and self.doc is not None:
            self.show_image(image_index)

    def _open_initial(self, open_path: str | None) -> None:
        if open_path is not None:
            self.open_project(open_path)
            return
        last = settings().value("project/last")
        if last and Path(str(last)).exists() and self.open_project(str(last), quiet=True):
            return
        self.open_sample()

    def open_sample(self) -> bool:
        from detengine.api import DatasetError, sample_project
        try:
            path = sample_project(home_dir())
        except (OSError, DatasetError) as exc:
            self.dialogs.error("Cannot make the sample project", str(exc))
            return False
        return self.open_project(str(path))

    def ask_open_json(self) -> None:
        path = self.dialogs.ask_open_json(self._last_folder())
        if path:
            self.open_project(path)

    def ask_open_folder(self) -> None:
        path = self.dialogs.ask_open_folder(self._last_folder())
        if path:
            self.open_project(path)

    def open_project(self, path: str, *, image_root: str | None = None, quiet: bool = False) -> bool:
        """Open a COCO JSON, a VOC folder or an image folder; asks to save unsaved edits first.
        Returns False (and keeps the current project) when it cannot or the user cancels."""
        from detengine.api import AnnotationProject, DatasetError
        if not self.maybe_save("The current project"):
            return False
        try:
            project = AnnotationProject.open(path, image_root=image_root, size_of=image_size)
        except DatasetError as exc:
            if not quiet:
                self.dialogs.error("Cannot open", str(exc))
            return False
        if not project.images:
            if not quiet:
                lines = "\n".join(str(p) for p in project.problems[:5])
                self.dialogs.error("Cannot open", f"{path}: no images in it (is it a COCO detection file?)"
                                   + (f"\n{lines}" if lines else ""))
            return False
        if not project.image_root_found:
            self._ask_image_root(project)
        self._remember_folder(path)
        recovered = self._offer_recovery(project)
        if recovered is not None:
            project, dirty_images, recovery_file = recovered
            self.set_project(project, recovered_images=dirty_images)
            self.doc.adopt_recovery(recovery_file)   # this window's now: not offered again while it lives
            self.doc.remember_disk()                 # the question said what saving over the file does
        else:
            self.set_project(project)
        if project.problems:
            lines = [str(p) for p in project.problems]
            self.dialogs.show_problems(f"Problems in {Path(path).name}", lines)
        return True

    def _ask_image_root(self, project: AnnotationProject) -> None:
        folder = self.dialogs.ask_open_folder(str(project.path.parent),
                                              f"Where are the images of {project.path.name}?")
        if folder:
            project.image_root = Path(folder).absolute()
        self.show_message(f"images are read from {project.image_root}")

    def _offer_recovery(self, project: AnnotationProject):
        from detengine.api import DatasetError
        found = pending_recovery(project)
        if found is None:
            return None
        path, saved_at = found
        what = str(project.path or project.image_root)
        answer = self.dialogs.ask_recover(what, saved_at, found.note())
        if answer is None:                       # nobody to ask (offscreen): keep the file for later
            return None
        if answer:
            try:
                return (*load_recovery(path), path)
            except (OSError, ValueError, KeyError, DatasetError) as exc:
                self.dialogs.error("Cannot recover", f"{path}: {exc}")
                return None
        path.unlink(missing_ok=True)
        return None

    def set_project(self, project: AnnotationProject, recovered_images=None) -> None:
        """Show ``project``; ``recovered_images`` (a list, maybe empty) marks it as recovered
        from an autosave: unsaved as a whole, those images marked."""
        old = self.doc
        self.doc = Document(project, self)
        self.doc.categoriesChanged.connect(self._apply_class_colors)    # first: before any view redraws
        self._apply_class_colors()
        if old is not None:
            old.release()
            old.deleteLater()
        others = self.doc.claim(_holds(self, self.doc))
        self.doc.changedOnDisk.connect(self._on_changed_on_disk)
        self.doc.dirtyChanged.connect(self._update_title)
        self.doc.undo_group.canUndoChanged.connect(self.actions_by_name["undo"].setEnabled)
        self.doc.undo_group.canRedoChanged.connect(self.actions_by_name["redo"].setEnabled)
        self.doc.undo_group.undoTextChanged.connect(lambda t: self.actions_by_name["undo"].setText(f"Undo {t}".strip()))
        self.doc.undo_group.redoTextChanged.connect(lambda t: self.actions_by_name["redo"].setText(f"Redo {t}".strip()))
        self.doc.autosaved.connect(lambda p: self.show_message(f"autosaved unsaved edits to {p}", 4000))
        self.doc.autosaveFailed.connect(lambda text: self.show_message(text, 15000))
        self.doc.autosaveProblemChanged.connect(self.autosave_warning.setText)
        self.doc.saveFinished.connect(self._on_save_finished)
        self.autosave_warning.setText(self.doc.autosave_problem)
        if self.persist:                         # a crash must find this project at the next start
            settings().setValue("project/last", str(project.path or project.image_root))
        self.editor.set_document(self.doc)
        self.image_list.set_document(self.doc)
        self.class_panel.set_document(self.doc)
        self.dataset_panel.set_document(self.doc)
        if self.engine_loaded:
            self._attach_panels()
        self.canvas.set_predictions([])
        self.image_list.set_eval_counts({})
        if recovered_images is not None:
            self.doc.mark_project_dirty(recovered_images)
        self._update_title()
        if project.images:
            self.show_image(0)
        self.show_message(self._project_summary(), 6000)
        if others:
            what = project.path or project.image_root
            who = "; ".join(holder_text(h) for h in others)
            text = (f"{who} has {what} open too. Edits of both windows go to the same file: a save "
                    "asks before overwriting what the other window saved.")
            self.show_message(text, 15000)
            self.dialogs.notice("Open in another window", text)

    def _attach_panels(self) -> None:
        """Connect the open document to the debug, training and evaluation panels."""
        self.doc.boxesChanged.connect(lambda i: self.debug_panel.schedule() if i == self.editor.index else None)
        self.doc.categoriesChanged.connect(self.debug_panel.schedule)
        self.training_panel.set_document(self.doc)
        self.eval_panel.result = None
        self.doc.categoriesChanged.connect(self.eval_panel.show_predictions)

    def _project_summary(self) -> str:
        project = self.doc.project
        return (f"opened {project.path or project.image_root}: {len(project.images)} images, "
                f"{project.num_boxes} boxes, {len(project.categories)} classes")

    # ------------------------------------------------------------------ images

    def show_image(self, index: int) -> None:
        self.image_list.select_image(min(max(index, 0), len(self.doc.project.images) - 1))

    def use_checkpoint(self, config: str, checkpoint: str) -> None:
        """A run's checkpoint becomes the debug views' (and the evaluation's) current model. The
        config beside it is run only as :meth:`trust_config` allows (the checkpoint's own config,
        carried as data, needs no code)."""
        try:
            if Path(config).resolve() != Path(checkpoint).with_name("config.py").resolve():
                self.debug_panel.set_config(config)            # the user's own choice
            self.debug_panel.add_checkpoint(checkpoint)
        except Exception as exc:
            self.dialogs.error("Cannot load the run's config", f"{config}: {exc}")

    def trust_config(self, path) -> bool:
        """Whether a config file that is neither shipped nor opened by the user may run: asked once
        per file content (its SHA-256), the answer remembered in the settings."""
        import hashlib
        key = f"trusted_configs/{hashlib.sha256(Path(path).read_bytes()).hexdigest()}"
        answer = settings().value(key)
        if answer in ("yes", "no"):
            return answer == "yes"
        answer = self.dialogs.ask_run_config(str(path))
        if answer is None:                                     # nobody to ask (offscreen): not run
            return False
        settings().setValue(key, "yes" if answer else "no")
        return bool(answer)

    def jump_to_box(self, image: int, box_id: int) -> None:
        """Show ``image`` with box ``box_id`` selected (from the dataset scan)."""
        self.show_image(image)
        self.canvas.set_selection([box_id])

    def _on_image_selected(self, index: int) -> None:
        if index != self.editor.index:
            self.editor.show_image(index)

    def step_image(self, step: int) -> None:
        j = self.image_list.neighbour(self.editor.index, step)
        if j is not None:
            self.image_list.select_image(j)

    def _on_image_problem(self, index: int, text: str) -> None:
        self.image_list.model.set_problem(index, text)
        if text:
            self.show_message(text, 8000)

    def _update_image_label(self, index: int) -> None:
        record = self.doc.project.images[index]
        size = f"{record.width}x{record.height}" if record.width else "size unknown"
        self.image_label.setText(f"{index + 1}/{len(self.doc.project.images)}  {record.file_name}  {size}")

    def _on_cursor(self, x: float, y: float) -> None:
        w, h = self.canvas.image_size
        if not (0 <= x < w and 0 <= y < h):
            self.cursor_label.setText("")
            return
        text = f"x {int(x)}  y {int(y)}"
        if self.canvas.image is not None:
            c = self.canvas.image.pixelColor(int(x), int(y))
            text += f"  RGB {c.red()} {c.green()} {c.blue()}"
        self.cursor_label.setText(text)

    # ------------------------------------------------------------------ classes

    def _class_names(self) -> list[str]:
        return [c.name for c in self.doc.project.categories]

    def _others(self, cat_id: int) -> list[tuple[int, str]]:
        return [(c.id, c.name) for c in self.doc.project.categories if c.id != cat_id]

    def pick_class_by_key(self, k: int) -> None:
        cat_id = self.class_panel.id_at(k - 1)
        if cat_id is not None:
            self.editor.apply_class(cat_id)

    def add_class(self) -> None:
        name = self.dialogs.ask_class_name(self._class_names())
        if name:
            try:
                self.editor.set_current_class(self.doc.add_category(name).id)
            except ValueError as exc:
                self.dialogs.error("Cannot add class", str(exc))

    def rename_class(self, cat_id: int) -> None:
        old = self.doc.project.category(cat_id).name
        name = self.dialogs.ask_class_name(self._class_names(), f"Rename {old!r}", old)
        if name and name != old:
            try:
                self.doc.rename_category(cat_id, name)
            except ValueError as exc:
                self.dialogs.error("Cannot rename class", str(exc))

    def recolor_class(self, cat_id: int) -> None:
        """The user picks a class's colour; kept in the settings by class name (so it holds in
        every project with that class) and shown at once everywhere the class is drawn."""
        name = self.doc.project.category(cat_id).name
        color = self.dialogs.ask_color(name, theme.class_color(cat_id).name())
        if not color:
            return
        chosen = _chosen_class_colors()
        chosen[name] = color
        settings().setValue("classes/colors", json.dumps(chosen))
        self.doc.categoriesChanged.emit()        # every view redraws its classes (nothing to save)

    def _apply_class_colors(self) -> None:
        """The colours the user chose (by class name) onto the open project's category ids."""
        chosen = _chosen_class_colors()
        theme.set_class_colors({c.id: chosen[c.name] for c in self.doc.project.categories if c.name in chosen})

    def merge_class(self, cat_id: int) -> None:
        others = self._others(cat_id)
        if not others:
            self.dialogs.error("Cannot merge", "there is no other class to merge into")
            return
        target = self.dialogs.ask_merge_target(self.doc.project.category(cat_id).name, others)
        if target is not None:
            changed = self.doc.merge_categories(cat_id, target)
            self.show_message(f"merged: {len(changed)} image(s) changed")

    def delete_class(self, cat_id: int) -> None:
        name = self.doc.project.category(cat_id).name
        count = self.doc.project.category_counts().get(cat_id, 0)
        ok, reassign = self.dialogs.ask_delete_class(name, count, self._others(cat_id))
        if ok:
            changed = self.doc.delete_category(cat_id, reassign)
            self.show_message(f"deleted class {name!r}: {len(changed)} image(s) changed")

    def _box_menu(self, box_id: int, global_pos) -> None:
        if self.box_menu is not None:
            self.box_menu.deleteLater()
        menu = QMenu(self)
        current = {b.category_id for b in self.editor.selected_boxes()}
        for i, c in enumerate(self.doc.project.categories):
            action = menu.addAction(f"{c.name}" + (f"\t{i + 1}" if i < 9 else ""))
            action.setCheckable(True)
            action.setChecked(c.id in current)
            action.triggered.connect(lambda _=False, cid=c.id: self.editor.apply_class(cid))
        menu.addSeparator()
        menu.addAction(self.actions_by_name["duplicate"])
        menu.addAction(self.actions_by_name["delete"])
        self.box_menu = menu                      # kept for tests
        menu.popup(global_pos)

    # ------------------------------------------------------------------ saving and closing

    def save(self, background: bool = False) -> bool:
        """Save to the project's file (Save As when it has none). ``background`` (Ctrl+S): a big
        project is written in a worker thread while the window stays usable; True then means
        the save started (its end is said in the status bar, a failure in a dialog)."""
        if self.doc.project.path is None:
            return self.save_as()
        return self._save_to(None, background=background)

    def save_as(self) -> bool:
        project = self.doc.project
        folder = project.path.parent if project.path else project.image_root
        name = project.path.name if project.path else f"{project.image_root.name or 'annotations'}.json"
        path = self.dialogs.ask_save_path(str(folder / name))
        return bool(path) and self._save_to(path)

    def _save_to(self, path, background: bool = False) -> bool:
        from detengine.api import DatasetError, ReadOnlyFileError
        project = self.doc.project
        same_file = path is None or (project.path is not None and Path(path).absolute() == project.path)
        if same_file and self.doc.disk_state() == "changed":
            answer = self.dialogs.ask_file_changed(str(project.path))
            if answer == "reload":
                self.reload_project()
                return False
            if answer == "save_as":
                return self.save_as()
            if answer != "overwrite":
                self.show_message(f"not saved: {project.path} changed on disk; your edits are still open", 10000)
                return False
        if background and len(project.images) + project.num_boxes >= document.ASYNC_AUTOSAVE_MIN_RECORDS:
            running = self.doc.save_job is not None
            self.doc.start_save(path)
            self.show_message("a save is running: saving again when it ends" if running else
                              f"saving {len(project.images)} images, {project.num_boxes} boxes in the background "
                              f"(you can keep working)…", 0)
            return True
        try:
            target = self.doc.save(path)
        except ReadOnlyFileError as exc:          # left as it is: offer another file
            self.dialogs.error("Cannot save", f"{exc}\nNothing was overwritten; choose where to save a copy.")
            return self.save_as()
        except (OSError, DatasetError) as exc:
            self.dialogs.error("Cannot save", f"{exc}\nNothing was overwritten; your edits are still open.")
            return False
        self._saved(target, len(project.images), project.num_boxes)
        return True

    def _saved(self, target, images: int, boxes: int, note: str = "") -> None:
        settings().setValue("project/last", str(target))
        self._update_title()
        self.show_message(f"saved {images} images, {boxes} boxes to {target}{note}", 6000)

    def _on_save_finished(self, job) -> None:
        """A background save ended: say where it went, or why not (as a save on this thread does)."""
        from detengine.api import ReadOnlyFileError
        if job.error is None:
            later = " (edits made while saving are not in it yet)" if self.doc.is_dirty() else ""
            self._saved(job.target, job.images, job.boxes, later)
        elif isinstance(job.error, ReadOnlyFileError):
            self.show_message("not saved", 6000)
            self.dialogs.error("Cannot save", f"{job.error}\nNothing was overwritten; choose where to save a copy.")
            self.save_as()
        else:
            self.show_message("not saved", 6000)
            self.dialogs.error("Cannot save", f"{job.error}\nNothing was overwritten; your edits are still open.")

    def fit_anchors_dialog(self):
        """Tools > Fit Anchors to Dataset…: the training split under the Debug dock's config."""
        from app.annotate.image_loader import image_size as size_of
        from app.debug.fit_anchors_dialog import FitAnchorsDialog
        from detengine.api import anchor_settings, scan_items, split_indices
        panel = self.debug_panel
        try:
            anchor_settings(panel.cfg["model"])
            train = set(split_indices(self.doc.project)[0])
        except ValueError as exc:
            self.dialogs.error("Cannot fit anchors", str(exc))
            return None
        items = [it for it in scan_items(self.doc.project, size_of=size_of) if it.index in train]
        dialog = FitAnchorsDialog(items, panel.cfg, list(self.doc.project.categories), panel.config, self)
        self.fit_dialog = dialog                  # kept for tests
        dialog.start()
        dialog.show()
        return dialog

    def export_annotations(self) -> bool:
        """File > Export Annotations As…: the project as COCO, YOLO, VOC or labelme, into a new
        folder (COCO: a file); what a format cannot hold is said, never dropped silently."""
        from detengine.api import DatasetError, OutputPathError, export_project
        project = self.doc.project
        folder = project.path.parent if project.path is not None else project.image_root.parent
        answer = self.dialogs.ask_export_annotations(str(folder))
        if not answer:
            return False
        fmt, path, images = answer
        try:
            result = export_project(project, path, fmt, images=images, size_of=image_size)
        except (OSError, ValueError, DatasetError, OutputPathError) as exc:
            self.dialogs.error("Cannot export", f"{exc}\nNothing was written; the project is unchanged.")
            return False
        self.show_message(result.summary().splitlines()[0], 10000)
        if result.notes:
            self.dialogs.notice("Exported, with notes", result.summary())
        return True

    def reload_project(self) -> bool:
        """Read the project file again, dropping this window's unsaved edits; the shown image
        stays. False (and nothing changes) when the file cannot be read."""
        from detengine.api import AnnotationProject, DatasetError
        self.doc.wait_for_save()
        old = self.doc.project
        index = self.editor.index
        try:
            project = AnnotationProject.open(old.path, image_root=old.image_root, size_of=image_size)
        except (OSError, DatasetError) as exc:
            self.dialogs.notice("Cannot reload", f"{old.path}: {exc}\nYour edits are still open.")
            return False
        self.doc.discard()
        self.set_project(project)
        if 0 <= index < len(project.images):
            self.show_image(index)
        self.show_message(f"reloaded {project.path} from disk", 8000)
        return True

    def _on_changed_on_disk(self, state: str) -> None:
        """The project file changed under the window (another window or program): say so; with
        nothing unsaved, read it again."""
        path = self.doc.project.path
        if state == "missing":
            text = f"{path} was deleted or moved by another program. Save writes it again."
        elif not self.doc.is_dirty():
            if not self.reload_project():
                return
            text = f"{path} was changed by another window or program: reloaded (there were no unsaved edits)."
        else:
            text = (f"{path} was changed by another window or program. Your unsaved edits are kept; "
                    "Save asks whether to reload, overwrite or save them to another file.")
        self.show_message(text, 30000)
        self.dialogs.notice("The file changed on disk", text)

    def maybe_save(self, what: str) -> bool:
        """True when it is fine to drop the current project (saved, or the user said discard).
        A background save still writing is waited for first (it may leave nothing unsaved)."""
        if self.doc is not None and self.doc.save_job is not None:
            self.show_message("waiting for the save to finish…", 0)
            self.doc.wait_for_save()
        if self.doc is None or not self.doc.is_dirty():
            return True
        answer = self.dialogs.ask_save_changes(what)
        if answer == "save":
            return self.save()
        if answer == "discard":
            self.doc.discard()
            return True
        return False

    def closeEvent(self, event) -> None:
        if self.engine_loaded and not self.training_panel.confirm_close():    # asked first: "keep training"
            event.ignore()                                                       # must not drop the edits
            return
        if not self.maybe_save("The project"):
            event.ignore()
            return
        if self.persist:
            self._save_layout()
        self._closed = True
        if self.doc is not None:
            self.doc.release()
        self.editor.cache.shutdown()
        if self.engine_loaded:
            self.debug_panel.shutdown()
            self.training_panel.shutdown()
            self.eval_panel.shutdown()
        event.accept()

    # ------------------------------------------------------------------ drag and drop

    def dragEnterEvent(self, event) -> None:
        if _dropped_path(event.mimeData()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        path = _dropped_path(event.mimeData())
        if path is not None:
            event.acceptProposedAction()
            QTimer.singleShot(0, lambda: self.open_project(path))    # no modal dialogs inside the drop

    # ------------------------------------------------------------------ misc

    def show_view(self, view: str) -> None:
        """``annotate``: the class list beside the canvas; a debug view: the debug dock, wider.
        Before the panels exist only the dock is raised."""
        if view == "dataset":
            self._raise_dock("dataset")
        elif view in ("train", "evaluate"):
            if self.engine_loaded:
                self.training_tabs.setCurrentIndex(0 if view == "train" else 1)
            self._raise_dock("training")
        elif view in VIEWS[1:]:
            if self.engine_loaded:
                self.debug_panel.show_page(view)
            self._raise_dock("debug")

    def _raise_dock(self, key: str) -> None:
        self.docks[key].show()
        self.docks[key].raise_()
        self.fit_docks(key)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._docks_fitted:               # the first show: sizes for this window's width
            self._docks_fitted = True
            if not self._layout_restored:
                QTimer.singleShot(0, self.fit_docks)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        QTimer.singleShot(0, self._keep_canvas_room)     # after the docks have their new sizes

    def view_drawn(self) -> bool:
        """The panels are loaded and the visible debug view, if any, shows its finished trace of
        the current image (with the model's outputs when the view needs them), or has nothing
        to trace (no project, an unreadable image), or says why its trace failed."""
        if not self.engine_loaded:
            return False
        panel = self.debug_panel
        if not panel.active or self.doc is None or self.canvas.image is None:
            return True
        if panel.failure:                                       # said in the view: nothing more will come
            return True
        result, page = panel.result, panel.current_page()
        return result is not None and result.image == self.editor.index and (
            not page.needs_model or result.main.model_name is not None or panel.model_choice() == "none")

    def wait_until_drawn(self, timeout_s: float = 120.0) -> bool:
        """For screenshots: process events until the visible debug view has drawn its trace."""
        import time

        from PySide6.QtWidgets import QApplication
        if self.engine_loaded and not self.debug_panel.active:
            return True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            QApplication.processEvents()
            if self.view_drawn():
                QApplication.processEvents()
                return True
            time.sleep(0.02)
        return False

    def show_message(self, text: str, timeout: int = 5000) -> None:
        self.statusBar().showMessage(text, timeout)

    def _update_title(self, *_args) -> None:
        if self.doc is None:
            return
        project = self.doc.project
        name = project.path.name if project.path else f"{project.image_root.name} (not saved yet)"
        self.setWindowModified(self.doc.is_dirty())
        self.setWindowTitle(f"DetScope — {name}[*]")


def _chosen_class_colors() -> dict[str, str]:
    """The user's class colours, ``{class name: "#rrggbb"}`` (settings; a damaged entry: none)."""
    try:
        chosen = json.loads(str(settings().value("classes/colors", "{}")))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in chosen.items()} if isinstance(chosen, dict) else {}


def _holds(window: MainWindow, doc: Document):
    """``alive()`` for :meth:`Document.claim`: the window is open and still shows ``doc``."""
    window_ref, doc_ref = weakref.ref(window), weakref.ref(doc)

    def alive() -> bool:
        w = window_ref()
        return w is not None and not w._closed and w.doc is not None and w.doc is doc_ref()
    return alive


def _dropped_path(mime) -> str | None:
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.is_dir() or path.suffix.lower() == ".json":
                return str(path)
    return None


def _import_panel_modules() -> None:
    for name in ("app.debug.debug_panel", "app.training.training_panel", "app.training.eval_panel"):
        importlib.import_module(name)


def _placeholder() -> QLabel:
    label = QLabel("Loading the detector engine…")
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    return label
