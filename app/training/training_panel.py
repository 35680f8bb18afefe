"""The training panel: config, the project's train / val split, device, epochs, batch size and
learning rate; start / pause / resume / stop; live curves (losses with smoothing, learning rate,
AP / AP50), progress with images/s and ETA, a log; the run list (reopen a run's curves, overlay
earlier runs, load a checkpoint as the debug views' current model).

Training runs in a child process (:class:`TrainingProcess`): the window stays responsive and
survives a crash of the trainer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.debug_common import fill_table, make_table
from app.training.training_process import TrainingProcess
from detengine.api import (
    RunCurves,
    known_runs,
    make_run_dir,
    resolve_config,
    run_curves,
    run_summary,
    shipped_configs,
    split_indices,
    window_runs_root,
    write_split,
)

__all__ = ["TrainingPanel", "runs_root", "smooth", "Smoother", "device_choices"]

_CURVE_COLORS = theme.CURVE_COLORS


def runs_root() -> Path:
    """Where the window starts its runs (DetScope's folder); the Runs tab lists these and every
    run the CLI registered."""
    return window_runs_root()


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style exponential moving average, debiased (the first points are not pulled
    towards 0). Called at most every 200 ms (the redraw is coalesced)."""
    values = np.asarray(values, dtype=np.float64)
    if weight <= 0 or len(values) == 0:
        return values
    out = np.empty_like(values)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values.tolist()):
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out


class Smoother:
    """:func:`smooth` of a growing series, extended incrementally: a new point costs O(1), not a
    pass over the whole history (245 ms per redraw of a 500k-point curve before)."""

    def __init__(self):
        self.weight, self.acc, self.norm, self.out = None, 0.0, 0.0, []

    def __call__(self, values, weight: float) -> np.ndarray:
        if weight <= 0:
            return np.asarray(values, dtype=np.float64)
        if weight != self.weight or len(values) < len(self.out):  # another weight, or another run
            self.weight, self.acc, self.norm, self.out = weight, 0.0, 0.0, []
        for v in values[len(self.out):]:
            self.acc = weight * self.acc + (1 - weight) * v
            self.norm = weight * self.norm + (1 - weight)
            self.out.append(self.acc / self.norm)
        return np.asarray(self.out, dtype=np.float64)


def device_choices() -> list[tuple[str, str]]:
    """(label, value): CUDA devices with their names when available, then the CPU."""
    out = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            out.append((f"cuda:{i} ({torch.cuda.get_device_name(i)})", f"cuda:{i}"))
    out.append(("cpu" + (" (no CUDA GPU found)" if not out else ""), "cpu"))
    return out


class TrainingPanel(QWidget):
    """Signals ``checkpointChosen(config path, checkpoint path)`` (load as the current model),
    ``message(text)``, ``runFinished(code, message)``."""

    checkpointChosen = Signal(str, str)
    message = Signal(str)
    runFinished = Signal(int, str)

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.window = window
        self.process: TrainingProcess | None = None
        self.curves: RunCurves | None = None
        self.doc = None                                    # the open document (set_document)
        self._runs: list[Path] = []                        # the Runs tab's rows
        self.live: RunCurves | None = None                 # the running run's curves (shown or not)
        self._curve_items: dict[tuple, tuple] = {}        # key -> (plot, item), made once, updated with setData
        self._smoothers: dict[tuple, Smoother] = {}
        self.overlays: dict[str, RunCurves] = {}
        self.split: tuple[list[int], list[int]] | None = None
        self.split_seed = 0
        self.skipped_images = 0                            # the running run's undecodable images (warnings)
        self._log_cache: dict[Path, tuple] = {}  # run -> (log and checkpoint state, RunSummary)
        self._redraw_timer = QTimer(self)               # coalesce: curves redraw at most every 200 ms
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(200)
        self._redraw_timer.timeout.connect(self.redraw_curves)
        self._build()

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        self.config_combo = QComboBox()
        for name in shipped_configs():
            if not name.startswith("_"):
                self.config_combo.addItem(name, name)
        self.config_combo.setCurrentIndex(max(0, self.config_combo.findData("tinyssd_synthetic")))
        self.split_label = QLabel()
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
        self.buttons = {k: QPushButton(t) for k, t in (("start", "Start"), ("pause", "Pause"), ("resume", "Resume"),
                                                         ("stop", "Stop"))}
        self.progress = QProgressBar()
        self.status = QLabel("idle")
        self.status.setWordWrap(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {theme.PROBLEM}")
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(60)
        self.plots = pg.GraphicsLayoutWidget()
        self.loss_plot = self.plots.addPlot(row=0, col=0, title="loss")
        self.loss_plot.setDownsampling(auto=True, mode="peak")
        self.loss_plot.setClipToView(True)
        self.loss_plot.addLegend(offset=(-5, 5))
        self.lr_plot = self.plots.addPlot(row=1, col=0, title="learning rate")
        self.ap_plot = self.plots.addPlot(row=2, col=0, title="AP / AP50 (val)")
        self.ap_plot.addLegend(offset=(-5, 5))
        self.ap_plot.setYRange(0, 1)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(3000)
        self.runs = make_table(["run", "config", "status", "best AP", "checkpoints"])
        self.run_buttons = {k: QPushButton(t) for k, t in (("refresh", "Refresh"), ("show", "Show curves"),
                                                             ("overlay", "Overlay"), ("load", "Load best as model"))}
        self._layout()
        self._connect()
        self._update_start_from()
        self._set_running(False)

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("Config", self.config_combo)
        split_row = QHBoxLayout()
        split_row.addWidget(self.split_label, 1)
        split_row.addWidget(self.resplit)
        form.addRow("Data", split_row)
        device_row = QHBoxLayout()
        device_row.addWidget(self.device, 1)
        device_row.addWidget(self.amp)
        form.addRow("Device", device_row)
        form.addRow("Start from", self.start_from)
        numbers = QHBoxLayout()
        for label, w in (("epochs", self.epochs), ("batch", self.batch), ("lr", self.lr), ("max iters", self.max_iters)):
            numbers.addWidget(QLabel(label))
            numbers.addWidget(w)
        form.addRow(numbers)
        controls = QHBoxLayout()
        for b in self.buttons.values():
            controls.addWidget(b)
        controls.addWidget(self.progress, 1)
        smooth_row = QHBoxLayout()
        smooth_row.addWidget(QLabel("smoothing"))
        smooth_row.addWidget(self.smoothing, 1)
        live = QWidget()
        lv = QVBoxLayout(live)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addLayout(smooth_row)
        lv.addWidget(self.plots, 1)
        runs = QWidget()
        rv = QVBoxLayout(runs)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.runs, 1)
        rb = QHBoxLayout()
        for b in self.run_buttons.values():
            rb.addWidget(b)
        rv.addLayout(rb)
        tabs = QTabWidget()
        tabs.addTab(live, "Curves")
        tabs.addTab(self.log, "Log")
        tabs.addTab(runs, "Runs")
        self.tabs = tabs
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(form)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
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
        self.smoothing.valueChanged.connect(lambda _v: self.redraw_curves())
        self.run_buttons["refresh"].clicked.connect(self.refresh_runs)
        self.run_buttons["show"].clicked.connect(lambda: self.show_run(self.selected_run()))
        self.run_buttons["overlay"].clicked.connect(lambda: self.overlay_run(self.selected_run()))
        self.run_buttons["load"].clicked.connect(lambda: self.load_checkpoint(self.selected_run()))

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
            self.split_label.setText(str(exc))
            return
        train, val = self.split
        tagged = all(im.extra.get("detscope_split") in ("train", "val") for im in project.images)
        how = "the images' detscope_split tags" if tagged and self.split_seed == 0 else \
            f"random 80/20, seed {self.split_seed}"
        self.split_label.setText(f"open project: {len(train)} train / {len(val)} val images ({how})")

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

    # ------------------------------------------------------------------ run control

    def config(self) -> str:
        return str(resolve_config(self.config_combo.currentData()))

    def start(self) -> bool:
        if self.process is not None and self.process.running():
            return False
        if self.split is None or not self.doc.project.categories:
            self._fail("the project needs classes and at least 2 images (train and val) to train")
            return False
        run_dir = make_run_dir(runs_root(), self.config_combo.currentData())
        project = self.doc.project
        train, val = self._readable(*self.split)
        if not train or not val:
            self._fail("no readable images left in the train or the val split")
            return False
        write_split(project, train, run_dir / "train.json")
        write_split(project, val, run_dir / "val.json")
        args = self.train_args(run_dir, project.image_root)
        self.process = TrainingProcess(run_dir, args, self)
        self.process.event.connect(self._on_event)
        self.process.log.connect(self._append_log)
        self.process.state.connect(self._on_state)
        self.process.finished.connect(self._on_finished)
        self.curves = self.live = RunCurves(run_dir.name)
        self.error.setText("")
        self.skipped_images = 0
        self.progress.setValue(0)
        self._append_log(f"run folder: {run_dir}")
        self.process.start()
        self._set_running(True)
        return True

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
            self.process.pause()

    def resume(self) -> None:
        if self.process:
            self.process.resume()

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def train_args(self, run_dir: Path, image_root) -> list[str]:
        """The ``python -m detengine train`` arguments for the panel's choices."""
        args = [self.config(), "--data", str(run_dir / "train.json"), "--val-data", str(run_dir / "val.json"),
                "--images", str(image_root), "--device", self.device.currentData(),
                "--workers", "0"]
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
        for w in (self.config_combo, self.device, self.epochs, self.batch, self.lr, self.max_iters, self.resplit):
            w.setEnabled(not running)
        self._update_amp(running)

    def _update_amp(self, running: bool = False) -> None:
        """Mixed precision is a CUDA feature: offered only with a CUDA device."""
        cuda = str(self.device.currentData() or "").startswith("cuda")
        self.amp.setEnabled(cuda and not running)
        if not cuda:
            self.amp.setChecked(False)

    def _on_state(self, state: str) -> None:
        self._set_running(True, paused=state == "paused")
        if state == "stopping":                           # a stop is final: no pause after it
            self.buttons["pause"].setEnabled(False)
            self.buttons["resume"].setEnabled(False)
        self.status.setText(state)

    def _on_event(self, e: dict) -> None:
        kind = e.get("type")
        self.live.add(e)                                  # the live run's curves, whatever is shown
        if kind == "iter":
            total = e["iters_per_epoch"] * e["max_epochs"]
            self.progress.setMaximum(total)
            self.progress.setValue(e["global_step"] + 1)
            eta = int(e.get("eta_s", 0))
            self.status.setText(f"epoch {e['epoch'] + 1}/{e['max_epochs']}, iteration {e['iter'] + 1}/"
                                f"{e['iters_per_epoch']}, {e['images_per_s']:.1f} images/s, ETA {eta // 60}:{eta % 60:02d}, "
                                f"loss {e['loss']:.4f}" + self._skipped_text())
        elif kind in ("eval",):
            m = e["metrics"]
            self._append_log(f"epoch {e['epoch'] + 1}: AP {m['AP']:.4f}, AP50 {m['AP50']:.4f}")
        elif kind == "warning":
            if e.get("kind") == "unreadable_image":        # the trainer skipped it: counted, shown
                self.skipped_images = int(e.get("unreadable", self.skipped_images + 1))
                self.status.setText(self.status.text().split(" — ")[0] + self._skipped_text())
            self._append_log("warning: " + e.get("message", ""))
        elif kind in ("start", "data", "stop", "end", "paused", "resumed", "error"):
            self._append_log(e.get("message", kind))
        if kind in ("iter", "eval") and not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def _skipped_text(self) -> str:
        return f" — {self.skipped_images} unreadable image(s) skipped" if self.skipped_images else ""

    def _on_finished(self, code: int, message: str) -> None:
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

    def _append_log(self, line: str) -> None:
        self.log.appendPlainText(line)

    # ------------------------------------------------------------------ curves

    def redraw_curves(self) -> None:
        """Curve items are made once and updated with ``setData`` (smoothing extended per point);
        items of curves no longer shown are removed."""
        weight = self.smoothing.value() / 100
        shown = set()

        def put(plot, key, x, y, **style):
            if key not in self._curve_items:
                self._curve_items[key] = (plot, plot.plot(**style))
            self._curve_items[key][1].setData(x, y)
            shown.add(key)
        for name, run in self.overlays.items():
            if run.steps:
                put(self.loss_plot, ("overlay", name), run.steps, self._smoothed((name, "loss"), run.losses["loss"], weight),
                    pen=pg.mkPen(theme.OVERLAY_CURVE, width=1, style=Qt.PenStyle.DashLine), name=f"{name} loss")
        run = self.curves
        if run is not None and run.steps:
            for n, (name, values) in enumerate(run.losses.items()):
                put(self.loss_plot, ("loss", name), run.steps, self._smoothed((run.name, name), values, weight),
                    pen=pg.mkPen(_CURVE_COLORS[n % len(_CURVE_COLORS)], width=1.5), name=name)
            put(self.lr_plot, ("lr",), run.steps, run.lr, pen=pg.mkPen(theme.LR_CURVE))
            if run.evals:
                steps, ap, ap50 = zip(*run.evals)
                put(self.ap_plot, ("AP",), steps, ap, pen=theme.AP_CURVE, symbol="o", symbolSize=6, name="AP")
                put(self.ap_plot, ("AP50",), steps, ap50, pen=theme.AP50_CURVE, symbol="t", symbolSize=6, name="AP50")
        for key in [k for k in self._curve_items if k not in shown]:
            plot, item = self._curve_items.pop(key)
            plot.removeItem(item)  # and its legend entry

    def _smoothed(self, key, values, weight: float) -> np.ndarray:
        smoother = self._smoothers.get(key)
        if smoother is None:
            smoother = self._smoothers[key] = Smoother()
        return smoother(values, weight)

    def curve_points(self) -> int:
        return 0 if self.live is None else len(self.live.steps)

    # ------------------------------------------------------------------ runs

    def run_dirs(self) -> list[Path]:
        return known_runs(runs_root())

    def refresh_runs(self) -> None:
        rows = []
        self._runs = self.run_dirs()
        for run in self._runs:
            summary = self._summary(run)
            running = self.process and self.process.run_dir.resolve() == run and self.process.running()
            best = summary.best_ap
            rows.append([run.name, summary.config, "running" if running else summary.status,
                         f"{best:.4f}" if best is not None else "-", ", ".join(summary.checkpoints) or "none"])
        fill_table(self.runs, rows)

    def _summary(self, run: Path):
        """The run's :class:`RunSummary`, re-read only when its log or checkpoints changed (runs
        of many epochs have logs of many megabytes)."""
        log = run / "log.jsonl"
        key = ((log.stat().st_mtime_ns, log.stat().st_size) if log.exists() else None,
               tuple(sorted(p.name for p in run.glob("*.pth"))))
        if run in self._log_cache and self._log_cache[run][0] == key:
            return self._log_cache[run][1]
        summary = run_summary(run)
        self._log_cache[run] = (key, summary)
        return summary

    def selected_run(self) -> Path | None:
        row = self.runs.currentRow()
        return self._runs[row] if 0 <= row < len(self._runs) else None

    def _curves_of(self, run: Path) -> RunCurves:
        return run_curves(run)

    def show_run(self, run: Path | None) -> None:
        if run is not None:
            self.curves = self._curves_of(run)
            self.redraw_curves()
            self.tabs.setCurrentIndex(0)

    def overlay_run(self, run: Path | None) -> None:
        if run is not None:
            self.overlays[run.name] = self._curves_of(run)
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
        if self.process is not None and self.process.running():
            self.process.stop()
            self.process.proc.waitForFinished(15_000)
            if self.process.running():
                self.process.proc.kill()
