"""The training panel: config, the data (the open project's train / val split, or the built-in
synthetic set as ``--data synthetic``), device, epochs, batch size, learning rate and an
iteration limit (with a warning when the run ends inside the config's warm-up); start / pause /
resume / stop with a status line (paused: the ETA is on hold); live curves (losses with
smoothing, learning rate, AP / AP50) over iterations or epochs, with a legend above each plot
that reads out the values under the cursor; a log of this run only; the run list, refreshed by
itself (how each run ended: finished, stopped at iteration N, failed; reopen a run's curves,
overlay any curve of other runs, resume a stopped run, load a checkpoint as the debug views'
current model).

Training runs in a child process (:class:`TrainingProcess`): the window stays responsive and
survives a crash of the trainer.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from PySide6.QtCore import QEventLoop, QFileSystemWatcher, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.compact import narrow
from app.debug_common import fill_table, make_table
from app.training.curves import CurvePlots, Smoother, add_event, smooth
from app.training.training_process import STOP_GRACE_MS, TrainingProcess, run_state, saved_args
from detengine.api import (
    RunCurves,
    detscope_home,
    known_runs,
    load_cfg,
    make_run_dir,
    read_jsonl,
    resolve_config,
    run_summary,
    shipped_configs,
    split_indices,
    window_runs_root,
    write_split,
)

__all__ = ["TrainingPanel", "runs_root", "smooth", "Smoother", "device_choices", "warmup_iterations"]

RUNS_POLL_MS = 5000                # the Runs tab, while shown, re-reads the runs (CLI runs elsewhere go on)
RECENT_S = 60                      # a log written this recently may belong to a run in another process


def runs_root() -> Path:
    """Where the window starts its runs (DetScope's folder); the Runs tab lists these and every
    run the CLI registered."""
    return window_runs_root()


def device_choices() -> list[tuple[str, str]]:
    """(label, value): CUDA devices with their names when available, then the CPU."""
    out = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            out.append((f"cuda:{i} ({torch.cuda.get_device_name(i)})", f"cuda:{i}"))
    out.append(("cpu" + (" (no CUDA GPU found)" if not out else ""), "cpu"))
    return out


WARMUP_SCHEDULERS = ("LinearLR", "QuadraticWarmupLR", "mmdet.QuadraticWarmupLR")


def warmup_iterations(cfg: dict, iters_per_epoch: int) -> tuple[int, str] | None:
    """(the iteration at which the config's warm-up reaches the full rate, the warm-up's type:
    ``LinearLR`` or mmdetection's ``QuadraticWarmupLR``), or None without one. An epoch-based
    ``end`` counts ``iters_per_epoch`` each (``convert_to_iter_based`` or not, the rate is full
    from that epoch on)."""
    schedulers = cfg.get("param_scheduler") or []
    schedulers = [schedulers] if isinstance(schedulers, dict) else schedulers
    ends = [(int(s["end"]) * (max(1, iters_per_epoch) if s.get("by_epoch", True) else 1),
             s["type"].removeprefix("mmdet."))
            for s in schedulers if isinstance(s, dict) and s.get("type") in WARMUP_SCHEDULERS
            and s.get("end") is not None]
    return max(ends) if ends else None


class TrainingPanel(QWidget):
    """Signals ``checkpointChosen(config path, checkpoint path)`` (load as the current model),
    ``message(text)``, ``runFinished(code, message)``."""

    checkpointChosen = Signal(str, str)
    message = Signal(str)
    runFinished = Signal(int, str)
    splitChanged = Signal(object)       # the validation split's images (a list of rows), or None

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.window = window
        self.process: TrainingProcess | None = None
        self.curves: RunCurves | None = None
        self.doc = None                                    # the open document (set_document)
        self._runs: list[Path] = []                        # the Runs tab's rows
        self.live: RunCurves | None = None                 # the running run's curves (shown or not)
        self.overlays: dict[str, RunCurves] = {}
        self._ipe: dict[str, int] = {}                     # run name -> iterations per epoch (x in epochs)
        self.split: tuple[list[int], list[int]] | None = None
        self.split_seed = 0
        self._project_text = "no project open"             # what the split label says of the project's data
        self.skipped_images = 0                            # the running run's undecodable images (warnings)
        self.paused = False                                # the trainer said it waits (a ``paused`` event)
        self._pause_asked = False
        self._max_iters: int | None = None                 # the running run's iteration limit (its start event)
        self._last_log_line = None
        self._cfg_cache: dict[str, dict | None] = {}
        self._log_cache: dict[Path, tuple] = {}  # run -> (log and checkpoint state, RunSummary, state)
        self._redraw_timer = QTimer(self)               # coalesce: curves redraw at most every 200 ms
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(200)
        self._redraw_timer.timeout.connect(self.redraw_curves)
        self._build()

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        self._build_settings()
        self._build_controls()
        self.curve_view = CurvePlots(lambda: (self.curves, self.overlays, self._ipe))
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(3000)
        self.runs = make_table(["run", "config", "status", "best AP", "checkpoints"])
        self.run_buttons = {k: QPushButton(t) for k, t in (
            ("show", "Show curves"), ("overlay", "Overlay"), ("clear", "Clear overlays"), ("continue", "Resume run"),
            ("load", "Load best as model"), ("refresh", "Refresh"))}
        self.run_buttons["overlay"].setToolTip("Add the run's curves to the plots (again: remove them); the Curves "
                                               "tab's 'overlay' chooses which loss term")
        narrow(self.config_combo, self.data_source, self.resplit, self.device, self.start_from, self.epochs,
               self.batch, self.lr, self.max_iters, *self.buttons.values(),
               *self.run_buttons.values())                 # the Train tab fits a ~290 px dock
        self._layout()
        self._connect()
        self._update_start_from()
        self._update_data_label()
        self._set_running(False)
        self._watch_runs()
        self.redraw_curves()

    def _build_settings(self) -> None:
        self.config_combo = QComboBox()
        for name in shipped_configs():
            if not name.startswith("_"):
                self.config_combo.addItem(name, name)
        self.config_combo.setCurrentIndex(max(0, self.config_combo.findData("tinyssd_synthetic")))
        self.data_source = QComboBox()
        self.data_source.addItem("this project", "project")
        self.data_source.addItem("built-in synthetic set", "synthetic")
        self.data_source.setToolTip("This project: its images, split into train / val. The built-in synthetic "
                                    "set: the config's data.synthetic, as `python -m detengine train CONFIG --data "
                                    "synthetic` (the README's recipes); made on first use")
        self.split_label = QLabel()
        self.split_label.setWordWrap(True)
        self.resplit = QPushButton("New random split")
        self.device = QComboBox()
        for label, value in device_choices():
            self.device.addItem(label, value)
        self.start_from = QComboBox()
        self.start_from.setToolTip("Where the weights start: the backbone's pretrained weights named by the config's "
                                   "init_cfg (mmdetection's default), a random initialisation, or every fitting "
                                   "weight of a checkpoint (fine-tuning: load_from)")
        self.start_checkpoint: str | None = None
        self.amp = QCheckBox("mixed precision")
        self.amp.setToolTip("float16 autocast with a loss scaler on CUDA (mmdetection's --amp / AmpOptimWrapper); "
                            "a config with AmpOptimWrapper uses it anyway")
        self._build_numbers()

    def _build_numbers(self) -> None:
        self.epochs = QSpinBox()
        self.epochs.setRange(0, 10_000)
        self.epochs.setSpecialValueText("config's")                 # 0: the config's max_epochs, its schedule intact
        self.epochs.setValue(0)
        self.batch = QSpinBox()
        self.batch.setRange(0, 1024)
        self.batch.setSpecialValueText("config's")
        self.batch.setValue(0)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(0.0, 1e9)
        self.lr.setSpecialValueText("config's")
        self.lr.setValue(0.0)
        self.max_iters = QSpinBox()
        self.max_iters.setRange(0, 10_000_000)
        self.max_iters.setSpecialValueText("no limit")

    def _build_controls(self) -> None:
        self.buttons = {k: QPushButton(t) for k, t in (("start", "Start"), ("pause", "Pause"), ("resume", "Resume"),
                                                         ("stop", "Stop"))}
        self.progress = QProgressBar()
        self.status = QLabel("idle")
        self.status.setWordWrap(True)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(f"color: {theme.WARNING}")
        self.warning.hide()
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {theme.PROBLEM}")

    def _settings_form(self) -> QFormLayout:
        form = QFormLayout()
        form.addRow("Config", self.config_combo)
        form.addRow("Data", self.data_source)
        split_row = QHBoxLayout()
        split_row.addWidget(self.split_label, 1)
        split_row.addWidget(self.resplit, 0, Qt.AlignmentFlag.AlignTop)
        form.addRow(split_row)
        form.addRow("Device", self.device)
        form.addRow("", self.amp)
        form.addRow("Start from", self.start_from)
        numbers = QGridLayout()                            # two rows: the panel fits a narrow dock
        for i, (label, w) in enumerate((("epochs", self.epochs), ("batch", self.batch), ("lr", self.lr),
                                        ("max iters", self.max_iters))):
            numbers.addWidget(QLabel(label), i // 2, 2 * (i % 2))
            numbers.addWidget(w, i // 2, 2 * (i % 2) + 1)
        form.addRow(numbers)
        return form

    def _runs_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.runs, 1)
        buttons = QGridLayout()                            # two columns: the panel fits a narrow dock
        for i, k in enumerate(("show", "overlay", "clear", "continue", "load", "refresh")):
            buttons.addWidget(self.run_buttons[k], i // 2, i % 2)
        layout.addLayout(buttons)
        return page

    def _layout(self) -> None:
        controls = QHBoxLayout()
        for b in self.buttons.values():
            controls.addWidget(b)
        tabs = QTabWidget()
        tabs.addTab(self.curve_view, "Curves")
        tabs.addTab(self.log, "Log")
        self.runs_page = self._runs_page()
        tabs.addTab(self.runs_page, "Runs")
        self.tabs = tabs
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(self._settings_form())
        layout.addLayout(controls)
        layout.addWidget(self.progress)
        for label in (self.status, self.warning, self.error):
            layout.addWidget(label)
        layout.addWidget(tabs, 1)

    def _connect(self) -> None:
        self.buttons["start"].clicked.connect(self.start)
        self.buttons["pause"].clicked.connect(self.pause)
        self.buttons["resume"].clicked.connect(self.resume)
        self.buttons["stop"].clicked.connect(self.stop)
        self.resplit.clicked.connect(self.new_split)
        self.device.currentIndexChanged.connect(lambda _i: self._update_amp())
        self.config_combo.currentIndexChanged.connect(lambda _i: self._update_start_from())
        self.start_from.activated.connect(self._on_start_from)
        self.data_source.currentIndexChanged.connect(lambda _i: self._update_data_label())
        for box in (self.config_combo, self.data_source):
            box.currentIndexChanged.connect(lambda _i: self._update_warning())
        for box in (self.epochs, self.batch, self.max_iters):
            box.valueChanged.connect(lambda _v: self._update_warning())
        self.run_buttons["refresh"].clicked.connect(self.refresh_runs)
        self.run_buttons["show"].clicked.connect(lambda: self.show_run(self.selected_run()))
        self.run_buttons["overlay"].clicked.connect(lambda: self.overlay_run(self.selected_run()))
        self.run_buttons["clear"].clicked.connect(self.clear_overlays)
        self.run_buttons["continue"].clicked.connect(lambda: self.resume_run(self.selected_run()))
        self.run_buttons["load"].clicked.connect(lambda: self.load_checkpoint(self.selected_run()))
        self.runs.itemSelectionChanged.connect(self._update_run_buttons)
        self.tabs.currentChanged.connect(lambda _i: self._poll_runs())

    def _watch_runs(self) -> None:
        """The Runs tab follows the runs root (a new folder, the CLI's registry) by a file watcher,
        and re-reads the listed runs every few seconds while it is shown."""
        self._runs_soon = QTimer(self)
        self._runs_soon.setSingleShot(True)
        self._runs_soon.setInterval(300)
        self._runs_soon.timeout.connect(self.refresh_runs)
        self._runs_watcher = QFileSystemWatcher(self)
        self._runs_watcher.addPaths([str(runs_root()), str(detscope_home())])
        self._runs_watcher.directoryChanged.connect(lambda _p: self._runs_changed())
        self._runs_watcher.fileChanged.connect(lambda _p: self._runs_changed())
        self._runs_timer = QTimer(self)
        self._runs_timer.setInterval(RUNS_POLL_MS)
        self._runs_timer.timeout.connect(self._poll_runs)
        self._runs_timer.start()
        self._runs_changed()

    def _runs_changed(self) -> None:
        registry = detscope_home() / "runs.txt"
        if registry.exists() and str(registry) not in self._runs_watcher.files():
            self._runs_watcher.addPath(str(registry))
        self._runs_soon.start()

    def _poll_runs(self) -> None:
        if self.isVisible() and self.tabs.currentWidget() is self.runs_page:
            self.refresh_runs()

    # ------------------------------------------------------------------ data

    def set_document(self, doc) -> None:
        self.doc = doc
        self.split = None
        self._update_split()
        self.refresh_runs()

    def _update_split(self) -> None:
        project = self.doc.project
        try:
            self.split = split_indices(project, seed=self.split_seed)
        except ValueError as exc:
            self.split = None
            self._project_text = str(exc)
            self.splitChanged.emit(None)
        else:
            train, val = self.split
            self.splitChanged.emit(list(val))
            tagged = all(im.extra.get("detscope_split") in ("train", "val") for im in project.images)
            how = "the images' detscope_split tags" if tagged and self.split_seed == 0 else \
                f"random 80/20, seed {self.split_seed}"
            self._project_text = f"open project: {len(train)} train / {len(val)} val images ({how})"
        self._update_data_label()

    def _update_data_label(self) -> None:
        synthetic = self.synthetic()
        self.resplit.setEnabled(not synthetic and not self.running())
        if synthetic:
            opts = ((self._config_dict() or {}).get("data") or {}).get("synthetic") or {}
            self.split_label.setText(
                f"built-in synthetic set of the config: {opts.get('num_train', 240)} train / {opts.get('num_val', 60)} "
                f"val images of {opts.get('image_size', 256)} px (made on first use)")
        else:
            self.split_label.setText(self._project_text)
        self._update_warning()

    def synthetic(self) -> bool:
        return self.data_source.currentData() == "synthetic"

    def new_split(self) -> None:
        """A seeded random 80/20 split (tags ignored), written into the images' detscope_split."""
        self.split_seed += 1
        project = self.doc.project
        for im in project.images:
            im.extra.pop("detscope_split", None)
        train, val = split_indices(project, seed=self.split_seed)
        for i in train:
            project.images[i].extra["detscope_split"] = "train"
        for i in val:
            project.images[i].extra["detscope_split"] = "val"
        self.doc.mark_project_dirty()
        self._update_split()

    def _config_dict(self) -> dict | None:
        """The chosen config as a dict (read once per config; a broken one: None)."""
        name = self.config_combo.currentData()
        if name not in self._cfg_cache:
            try:
                self._cfg_cache[name] = load_cfg(self.config())
            except (Exception, SystemExit):
                self._cfg_cache[name] = None
        return self._cfg_cache[name]

    def warmup_warning(self) -> str:
        """A sentence when the run would end inside the config's warm-up, else ``""``."""
        cfg = self._config_dict()
        if not cfg:
            return ""
        if self.synthetic():
            images = int(((cfg.get("data") or {}).get("synthetic") or {}).get("num_train", 240))
        else:
            images = len(self.split[0]) if self.split else 0
        batch = self.batch.value() or int((cfg.get("train_dataloader") or {}).get("batch_size", 8))
        epochs = self.epochs.value() or int((cfg.get("train_cfg") or {}).get("max_epochs", 12))
        ipe = max(1, math.ceil(images / max(batch, 1)))
        warmup, total, limit = warmup_iterations(cfg, ipe), epochs * ipe, self.max_iters.value()
        length = f"max iters {limit}" if limit and limit < total else f"{epochs} epoch(s) of {ipe} iterations"
        total = min(total, limit) if limit else total
        if not images or warmup is None or total >= warmup[0]:
            return ""
        return (f"warning: this run ({length}) ends inside the config's warm-up ({warmup[1]}, {warmup[0]} "
                f"iterations): the learning rate never reaches its full value")

    def _update_warning(self) -> None:
        text = self.warmup_warning()
        self.warning.setText(text)
        self.warning.setVisible(bool(text))

    # ------------------------------------------------------------------ run control

    def config(self) -> str:
        return str(resolve_config(self.config_combo.currentData()))

    def running(self) -> bool:
        return self.process is not None and self.process.running()

    def start(self) -> bool:
        """A new run of the chosen config on the chosen data (a new run folder)."""
        if self.running():
            return False
        synthetic = self.synthetic()
        if not synthetic and (self.split is None or not self.doc.project.categories):
            self._fail("the project needs classes and at least 2 images (train and val) to train")
            return False
        self._clear_log()
        run_dir = make_run_dir(runs_root(), self.config_combo.currentData())
        if not synthetic:
            project = self.doc.project
            train, val = self._readable(*self.split)
            if not train or not val:
                self._fail("no readable images left in the train or the val split")
                return False
            write_split(project, train, run_dir / "train.json")
            write_split(project, val, run_dir / "val.json")
        self._append_log(f"run folder: {run_dir}")
        if self.warning.text():
            self._append_log(self.warning.text())
        self._launch(run_dir, self.train_args(run_dir, None if synthetic else self.doc.project.image_root),
                     RunCurves(run_dir.name))
        return True

    def resumable(self, run: Path | None) -> str | None:
        """Why ``run`` cannot be resumed from the window, or None when it can: a run the window
        started (its arguments are kept), not finished, with a ``last.pth``, not running."""
        if run is None:
            return "no run is selected"
        if self.running():
            return "a run is in progress"
        if saved_args(run) is None:
            return (f"it was not started from the window; resume it with `python -m detengine train CONFIG --data "
                    f"... --resume {run / 'last.pth'} --work-dir {run}`")
        if not (run / "last.pth").exists():
            return "it has no last.pth"
        state = self._summary(run)[1]
        if state == "finished":
            return "it finished"
        log = run / "log.jsonl"
        if state == "unfinished" and log.exists() and time.time() - log.stat().st_mtime < RECENT_S:
            return "its log is being written: it may be running in another window"
        return None

    def resume_run(self, run: Path | None) -> bool:
        """Continue a stopped run where it stopped: the same config and data (its arguments),
        ``--resume <run>/last.pth --work-dir <run>``; its curves go on from its last iteration."""
        why = self.resumable(run)
        if why is not None:
            self._fail(f"cannot resume {run.name if run else 'a run'}: {why}")
            return False
        curves = self._curves_of(run)
        self._clear_log()
        done = curves.steps[-1] + 1 if curves.steps else 0
        self._append_log(f"resuming {run} from last.pth (the log ends after iteration {done})")
        self._launch(run, saved_args(run), curves, resume_from=run / "last.pth")
        self.tabs.setCurrentIndex(0)
        return True

    def _launch(self, run_dir: Path, args: list[str], curves: RunCurves, resume_from: Path | None = None) -> None:
        self.process = TrainingProcess(run_dir, args, self, resume_from=resume_from)
        self.process.event.connect(self._on_event)
        self.process.log.connect(self._append_log)
        self.process.state.connect(self._on_state)
        self.process.finished.connect(self._on_finished)
        self.curve_view.forget(curves.name)
        self.curves = self.live = curves
        self.error.setText("")
        self.skipped_images = 0
        self.paused = self._pause_asked = False
        self._max_iters = None
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.process.start()
        self._set_running(True)
        self.status.setText("starting the trainer…")
        self.refresh_runs()
        self.redraw_curves()

    def _readable(self, train: list[int], val: list[int]) -> tuple[list[int], list[int]]:
        """Leave out images known to be unreadable before the run (one that only fails to decode
        mid-run is skipped by the trainer with a warning, counted in the status)."""
        from app.annotate.image_loader import image_size
        project = self.doc.project
        known_bad = set(self.window.image_list.model.problems)
        bad = {i for i in train + val if i in known_bad or image_size(project.image_path(i)) is None}
        if bad:
            names = ", ".join(project.images[i].file_name for i in sorted(bad)[:5])
            self._append_log(f"left out {len(bad)} unreadable image(s): {names}")
        return [i for i in train if i not in bad], [i for i in val if i not in bad]

    def pause(self) -> None:
        if self.process:
            self._pause_asked = True
            self.process.pause()

    def resume(self) -> None:
        if self.process:
            self._pause_asked = False
            self.process.resume()

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def confirm_close(self) -> bool:
        """Asked before the window closes: True when it may close. While a run trains, the user
        chooses between stopping it (it stops after the current iteration and saves last.pth
        before this returns; Resume run continues it later) and keeping it (False)."""
        if not self.running():
            return True
        if not self.window.dialogs.ask_stop_training(self.process.run_dir.name):
            return False
        self.stop()
        self.wait_for_end(STOP_GRACE_MS)
        return True

    def wait_for_end(self, timeout_ms: int) -> bool:
        """Wait until the run's process has ended, the window still painting (no user input);
        killed when it takes longer than ``timeout_ms``. True when it ended by itself."""
        process = self.process
        if process is None or not process.running():
            return True
        loop = QEventLoop()
        timer = QTimer(loop)
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        process.finished.connect(loop.quit)
        timer.start(timeout_ms)
        loop.exec(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
        if not process.running():
            return True
        process.proc.kill()
        process.proc.waitForFinished(5000)
        return False

    def train_args(self, run_dir: Path, image_root) -> list[str]:
        """The ``python -m detengine train`` arguments for the panel's choices."""
        if self.synthetic():
            data = ["--data", "synthetic"]
        else:
            data = ["--data", str(run_dir / "train.json"), "--val-data", str(run_dir / "val.json"),
                    "--images", str(image_root)]
        args = [self.config(), *data, "--device", self.device.currentData(), "--workers", "0"]
        if self.batch.value() > 0:
            args += ["--batch-size", str(self.batch.value())]
        if self.epochs.value() > 0:
            args += ["--epochs", str(self.epochs.value())]
        if self.lr.value() > 0:
            args += ["--lr", repr(self.lr.value())]
        if self.max_iters.value() > 0:
            args += ["--max-iters", str(self.max_iters.value())]
        if self.amp.isChecked() and self.amp.isEnabled():
            args.append("--amp")
        start = self.start_from.currentData()
        if start == "scratch" and self.start_from.findData("pretrained") >= 0:  # the config names weights
            args.append("--no-pretrained")
        elif start == "checkpoint" and self.start_checkpoint:
            args += ["--load-from", self.start_checkpoint]
        return args

    # ------------------------------------------------------------------ start from

    def _update_start_from(self) -> None:
        """Pretrained backbone (when the config names one), scratch, or a checkpoint file."""
        from detengine.api import backbone_init_checkpoint, load_config, resolve_config
        try:
            init = backbone_init_checkpoint(load_config(resolve_config(self.config())).to_dict()["model"])
        except (Exception, SystemExit) as exc:  # a broken config: training will say why
            init = None
            self.status.setText(f"config {self.config()}: {type(exc).__name__}: {exc}")
        self.start_from.blockSignals(True)
        self.start_from.clear()
        if init:
            self.start_from.addItem(f"pretrained backbone ({init['checkpoint']})", "pretrained")
        self.start_from.addItem("scratch (random initialisation)", "scratch")
        label = f"checkpoint: {Path(self.start_checkpoint).name}" if self.start_checkpoint else "checkpoint…"
        self.start_from.addItem(label, "checkpoint")
        self.start_from.blockSignals(False)

    def _on_start_from(self, index: int) -> None:
        if self.start_from.itemData(index) != "checkpoint":
            return
        path = self.window.dialogs.ask_checkpoint() if hasattr(self.window, "dialogs") else None
        if not path:
            self.start_from.setCurrentIndex(0)
            return
        self.set_start_checkpoint(path)

    def set_start_checkpoint(self, path: str) -> None:
        """Fine-tune from ``path`` (``--load-from``): every weight that fits by name and shape."""
        self.start_checkpoint = str(path)
        self._update_start_from()
        self.start_from.setCurrentIndex(self.start_from.findData("checkpoint"))


    def _set_running(self, running: bool, paused: bool = False) -> None:
        self.buttons["start"].setEnabled(not running)
        self.buttons["pause"].setEnabled(running and not paused)
        self.buttons["resume"].setEnabled(running and paused)
        self.buttons["stop"].setEnabled(running)
        for w in (self.config_combo, self.data_source, self.device, self.start_from, self.epochs, self.batch,
                  self.lr, self.max_iters):
            w.setEnabled(not running)
        self.resplit.setEnabled(not running and not self.synthetic())
        self._update_amp(running)
        self._update_run_buttons()

    def _update_amp(self, running: bool = False) -> None:
        """Mixed precision is a CUDA feature: offered only with a CUDA device."""
        cuda = str(self.device.currentData() or "").startswith("cuda")
        self.amp.setEnabled(cuda and not running)
        if not cuda:
            self.amp.setChecked(False)

    def _on_state(self, state: str) -> None:
        """What was asked (the trainer acts between two iterations: its events say when)."""
        self._set_running(True, paused=state == "paused")
        if state == "stopping":                           # a stop is final: no pause after it
            self.buttons["pause"].setEnabled(False)
            self.buttons["resume"].setEnabled(False)
            self.status.setText("stopping after the current iteration (last.pth is saved)…")
        elif state == "paused":
            if not self.paused:                           # the trainer says when it waits (its event)
                self.status.setText("pausing after the current iteration…")
        elif self.paused:
            self.status.setText("resuming…")

    def _on_event(self, e: dict) -> None:
        kind = e.get("type")
        add_event(self.live, e)                           # the live run's curves, whatever is shown
        if kind == "iter":
            self._on_iter(e)
        elif kind == "eval":
            m = e["metrics"]
            self._append_log(f"epoch {e['epoch'] + 1}: AP {m['AP']:.4f}, AP50 {m['AP50']:.4f}")
        elif kind == "warning":
            if e.get("kind") == "unreadable_image":        # the trainer skipped it: counted, shown
                self.skipped_images = int(e.get("unreadable", self.skipped_images + 1))
                self.status.setText(self.status.text().split(" — ")[0] + self._skipped_text())
            self._append_log("warning: " + e.get("message", ""))
        elif kind in ("paused", "resumed"):
            self._on_paused(e) if kind == "paused" else self._on_resumed()
            self._append_log(e.get("message", kind))
        elif kind == "checkpoint":
            self._append_log(f"checkpoint after iteration {e.get('global_step')}: {e.get('path')}")
        elif kind in ("start", "data", "stop", "end", "error"):
            if kind == "start":
                self._max_iters = (e.get("settings") or {}).get("max_iters")
            self._append_log(e.get("message", kind))
        if kind in ("iter", "eval") and not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def _on_iter(self, e: dict) -> None:
        self._ipe[self.live.name] = int(e["iters_per_epoch"])
        total = e["iters_per_epoch"] * e["max_epochs"]
        self.progress.setMaximum(min(total, self._max_iters) if self._max_iters else total)
        self.progress.setValue(e["global_step"] + 1)
        eta = int(e.get("eta_s", 0))
        pausing = " — pausing after this iteration" if self._pause_asked else ""
        self.status.setText(f"epoch {e['epoch'] + 1}/{e['max_epochs']}, iteration {e['iter'] + 1}/"
                            f"{e['iters_per_epoch']} ({e['global_step'] + 1} in all), {e['images_per_s']:.1f} images/s, "
                            f"ETA {eta // 60}:{eta % 60:02d}, loss {e['loss']:.4f}{pausing}" + self._skipped_text())

    def _on_paused(self, e: dict) -> None:
        """The trainer waits: no ETA (it would count the pause); the progress says paused."""
        self.paused = True
        self.progress.setFormat("paused — %p%")
        done = e.get("global_step", self.curve_points())
        self.status.setText(f"paused after iteration {done} — ETA on hold; Resume continues, Stop saves last.pth"
                            + self._skipped_text())

    def _on_resumed(self) -> None:
        self.paused = False
        self.progress.setFormat("%p%")
        self.status.setText("resumed: the ETA follows with the next iteration")

    def _skipped_text(self) -> str:
        return f" — {self.skipped_images} unreadable image(s) skipped" if self.skipped_images else ""

    def _on_finished(self, code: int, message: str) -> None:
        self.paused = self._pause_asked = False
        self.progress.setFormat("%p%")
        self._set_running(False)
        self.redraw_curves()
        self.status.setText(message + self._skipped_text())
        if code != 0:
            self._fail(message)
        self._append_log(message)
        self.refresh_runs()
        self.runFinished.emit(code, message)

    def _fail(self, message: str) -> None:
        self.error.setText(message)
        self.message.emit(message)

    def _clear_log(self) -> None:
        self.log.clear()
        self._last_log_line = None

    def _append_log(self, line: str) -> None:
        """One line; the same line again right after it (an event and the process's last word
        saying the same thing) is not repeated."""
        same = line.rstrip(". ")
        if same == self._last_log_line:
            return
        self._last_log_line = same
        self.log.appendPlainText(line)

    # ------------------------------------------------------------------ curves

    def redraw_curves(self) -> None:
        """The Curves tab: the shown run (the live one, or one reopened from the Runs tab) and
        the overlaid runs."""
        self.curve_view.redraw()

    def curve_points(self) -> int:
        return 0 if self.live is None else len(self.live.steps)

    # ------------------------------------------------------------------ runs

    def run_dirs(self) -> list[Path]:
        return known_runs(runs_root())

    def refresh_runs(self) -> None:
        """Re-read the run list (the selected run stays selected)."""
        selected = self.selected_run()
        rows = []
        self._runs = self.run_dirs()
        for run in self._runs:
            summary, state = self._summary(run)
            best = summary.best_ap
            rows.append([run.name, summary.config, "running" if self._is_running(run) else state,
                         f"{best:.4f}" if best is not None else "-", ", ".join(summary.checkpoints) or "none"])
        self.runs.blockSignals(True)
        fill_table(self.runs, rows)
        if selected in self._runs:
            self.runs.selectRow(self._runs.index(selected))
        self.runs.blockSignals(False)
        self._update_run_buttons()

    def _is_running(self, run: Path) -> bool:
        return self.running() and self.process.run_dir.resolve() == run

    def _summary(self, run: Path):
        """The run's (:class:`RunSummary`, how it ended), re-read only when its log or
        checkpoints changed (runs of many epochs have logs of many megabytes)."""
        log = run / "log.jsonl"
        key = ((log.stat().st_mtime_ns, log.stat().st_size) if log.exists() else None,
               tuple(sorted(p.name for p in run.glob("*.pth"))))
        if run in self._log_cache and self._log_cache[run][0] == key:
            return self._log_cache[run][1:]
        summary, state = run_summary(run), run_state(run)
        self._log_cache[run] = (key, summary, state)
        return summary, state

    def run_status(self, run: Path) -> str:
        """The Runs tab's status of ``run`` (as listed at the last refresh)."""
        return self.runs.item(self._runs.index(run), 2).text()

    def selected_run(self) -> Path | None:
        rows = self.runs.selectionModel().selectedRows()
        row = rows[0].row() if rows else self.runs.currentRow()
        return self._runs[row] if 0 <= row < len(self._runs) else None

    def _update_run_buttons(self) -> None:
        run = self.selected_run()
        for key in ("show", "overlay", "load"):
            self.run_buttons[key].setEnabled(run is not None)
        self.run_buttons["clear"].setEnabled(bool(self.overlays))
        why = self.resumable(run)
        self.run_buttons["continue"].setEnabled(why is None)
        self.run_buttons["continue"].setToolTip(
            "Continue the selected run where it stopped: its config and data, from its last.pth; its curves go on"
            if why is None else f"Cannot resume: {why}")

    def _curves_of(self, run: Path) -> RunCurves:
        """The run's curves from its log (a resumed run's sessions joined), and its iterations
        per epoch (x in epochs)."""
        curves = RunCurves(run.name)
        log = run / "log.jsonl"
        for e in read_jsonl(log) if log.exists() else []:
            if e.get("type") == "iter":
                self._ipe[run.name] = int(e.get("iters_per_epoch") or 1)
            add_event(curves, e)
        return curves

    def show_run(self, run: Path | None) -> None:
        if run is not None:
            self.curves = self.live if self._is_running(run) else self._curves_of(run)
            self.redraw_curves()
            self.tabs.setCurrentIndex(0)

    def overlay_run(self, run: Path | None) -> None:
        """Overlay ``run``'s curves on the plots (a run overlaid already: removed)."""
        if run is None:
            return
        if self.overlays.pop(run.name, None) is None:
            self.overlays[run.name] = self._curves_of(run)
        self.curve_view.update_overlay_terms(self.overlays)
        self._update_run_buttons()
        self.redraw_curves()

    def clear_overlays(self) -> None:
        self.overlays.clear()
        self.curve_view.update_overlay_terms(self.overlays)
        self._update_run_buttons()
        self.redraw_curves()

    def load_checkpoint(self, run: Path | None, name: str | None = None) -> str | None:
        """Make a run's checkpoint (best, else last) the current model of the debug views."""
        if run is None:
            return None
        names = [name] if name else ["best.pth", "last.pth"]
        ckpt = next((run / n for n in names if (run / n).exists()), None)
        if ckpt is None:
            self._fail(f"{run.name} has no checkpoint yet")
            return None
        self.checkpointChosen.emit(str(run / "config.py"), str(ckpt))
        self.message.emit(f"current model: {ckpt}")
        return str(ckpt)

    def shutdown(self) -> None:
        self._runs_timer.stop()
        if self.process is not None and self.process.running():
            self.process.stop()
            self.process.proc.waitForFinished(15_000)
            if self.process.running():
                self.process.proc.kill()
