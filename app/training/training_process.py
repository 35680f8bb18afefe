"""A training run as a child process (``python -m detengine train ... --control FILE``).

Why a process and not a thread: the window keeps its own interpreter lock and event loop (the
training loop's Python work never stalls a repaint), a crash or an out-of-memory kill of the
trainer cannot take the window down, and stop / pause reach it through a control file read
after every iteration. Progress comes back through the run's JSONL log, which the trainer
writes anyway; it is read incrementally on a timer, from where the log ended when the process
started (a resumed run appends to its log: its earlier events are not reported again).

The trainer's console output repeats each event the log carries (``[start] ...``, ``[warning]
...``, ``epoch 1 eval: ...``); those echoes are not passed on as log lines, since the panel
writes its own line per event (the log showed them twice before). The window's arguments are
kept in the run folder (``window_args.json``), so a stopped run can be resumed with the same
config and data.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from detengine.api import write_control

__all__ = ["TrainingProcess", "ROOT", "ARGS_FILE", "saved_args", "run_state", "log_tail"]

ROOT = Path(__file__).resolve().parents[2]  # the folder holding the app and detengine packages
POLL_MS = 150
STOP_GRACE_MS = 60_000
ARGS_FILE = "window_args.json"  # the window's `detengine train` arguments, without the run folder's
TAIL_BYTES = 64 * 1024          # how a run ended is in its log's last events
#: the trainer's console lines that repeat a log event (detengine.train.events.ConsolePrinter), and
#: the CLI's closing "run folder: ..." (the panel says it when the run starts)
_ECHO = re.compile(r"^(\[(start|data|warning|error|stop|end|checkpoint)\] |epoch \d+ eval: |run folder: )")


def saved_args(run_dir: Path) -> list[str] | None:
    """The arguments the window started ``run_dir`` with, or None (a CLI run, an older one)."""
    try:
        args = json.loads((Path(run_dir) / ARGS_FILE).read_text(encoding="utf-8")).get("args")
    except (OSError, ValueError, AttributeError):
        return None
    return [str(a) for a in args] if isinstance(args, list) else None


def log_tail(path: Path, size: int = TAIL_BYTES) -> list[dict]:
    """The events of the last ``size`` bytes of a JSONL log (a line cut by the window or by a
    kill is skipped)."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            f.seek(max(0, end - size))
            lines = f.read().split(b"\n")
    except OSError:
        return []
    out = []
    for line in lines[1:] if end > size else lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def run_state(run_dir: Path, running: bool = False) -> str:
    """How a run's last session ended, for people: ``running``, ``finished``, ``stopped at
    iteration N`` (asked to stop; N iterations done, last.pth saved), ``failed (NaN at
    iteration N)``, ``failed``, ``unfinished`` (no end recorded: killed, or running in another
    process) or ``?`` (no log). The trainer writes ``stop`` then ``end`` for a stopped run."""
    if running:
        return "running"
    events = log_tail(Path(run_dir) / "log.jsonl")
    starts = [i for i, e in enumerate(events) if e.get("type") == "start"]
    session = events[starts[-1] + 1:] if starts else events   # a resumed run: its last session
    last = {e.get("type"): e for e in session}
    if "error" in last:
        error = last["error"]
        if error.get("kind") == "nan_loss":
            return f"failed (NaN at iteration {int(error.get('global_step', 0)) + 1})"
        return "failed"
    if "stop" in last:
        done = (last.get("end") or last.get("checkpoint") or {}).get("global_step")
        return f"stopped at iteration {done}" if done is not None else "stopped"
    if "end" in last:
        return "finished"
    return "unfinished" if events else "?"


class JsonlTail:
    """New complete lines of a growing JSONL file, as dicts."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


class TrainingProcess(QObject):
    """Signals: ``event(dict)`` per trainer event, ``log(text)`` per output line, ``state(text)``
    (running / paused / stopping), ``finished(code, message)`` with the process's exit code
    (3 = the loss diverged, negative = killed/crashed) and a message for the user."""

    event = Signal(dict)
    log = Signal(str)
    state = Signal(str)
    finished = Signal(int, str)

    def __init__(self, run_dir: Path, args: list[str], parent=None, *, resume_from: Path | None = None):
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self.control = self.run_dir / "control"
        self.args = list(args)
        self.resume_from = resume_from             # a checkpoint: ``--resume`` (the same run folder goes on)
        self.tail = JsonlTail(self.run_dir / "log.jsonl")
        self.last_error: dict | None = None
        self.end_event: dict | None = None
        self.stopped = False                        # the trainer wrote a ``stop`` event (asked to stop)
        self.stderr_tail: list[str] = []
        self._held_errors: list[str] = []           # ``error: ...`` lines, said at the end unless an event said it
        self.proc = QProcess(self)
        self.proc.setWorkingDirectory(str(ROOT))
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONPATH", str(ROOT) + os.pathsep + env.value("PYTHONPATH", ""))
        env.insert("PYTHONUNBUFFERED", "1")
        self.proc.setProcessEnvironment(env)
        self.proc.readyReadStandardOutput.connect(lambda: self._read(self.proc.readAllStandardOutput(), False))
        self.proc.readyReadStandardError.connect(lambda: self._read(self.proc.readAllStandardError(), True))
        self.proc.finished.connect(self._on_finished)
        self.proc.errorOccurred.connect(self._on_error)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._escalate)

    @property
    def command(self) -> list[str]:
        resume = ["--resume", str(self.resume_from)] if self.resume_from else []
        return [sys.executable, "-m", "detengine", "train", *self.args, *resume, "--work-dir", str(self.run_dir),
                "--control", str(self.control)]

    def start(self) -> None:
        write_control(self.control, "run")
        cmd = self.command
        with open(self.run_dir / "command.txt", "a", encoding="utf-8") as f:   # one line per session
            f.write(" ".join(cmd) + "\n")
        (self.run_dir / ARGS_FILE).write_text(json.dumps({"args": self.args}), encoding="utf-8")
        log = self.run_dir / "log.jsonl"
        self.tail.offset = log.stat().st_size if log.exists() else 0   # this session's events only
        self.proc.start(cmd[0], cmd[1:])
        self.timer.start()
        self.state.emit("running")

    def running(self) -> bool:
        return self.proc.state() != QProcess.ProcessState.NotRunning

    def pause(self) -> None:
        write_control(self.control, "pause")
        self.state.emit("paused")

    def resume(self) -> None:
        write_control(self.control, "run")
        self.state.emit("running")

    def stop(self) -> None:
        """Stop after the current iteration (the trainer saves last.pth); killed if it hangs."""
        write_control(self.control, "stop")
        self.state.emit("stopping")
        self._kill_timer.start(STOP_GRACE_MS)

    def _escalate(self) -> None:
        if self.running():
            self.log.emit("the trainer did not stop in time: terminating it")
            self.proc.terminate()
            QTimer.singleShot(5000, lambda: self.running() and self.proc.kill())

    def poll(self) -> None:
        for event in self.tail.read():
            kind = event.get("type")
            if kind == "error":
                self.last_error = event
            elif kind == "stop":
                self.stopped = True
            elif kind == "end":
                self.end_event = event
            self.event.emit(event)

    def _read(self, data, is_err: bool) -> None:
        text = bytes(data).decode("utf-8", "replace")
        for line in text.splitlines():
            if not line.strip():
                continue
            if is_err:
                self.stderr_tail = (self.stderr_tail + [line])[-30:]
                if line.startswith("error: "):       # the CLI's last word: often an error event's message
                    self._held_errors.append(line)
                    continue
            elif _ECHO.match(line):                   # the console's copy of an event the panel logs
                continue
            self.log.emit(line)

    def _say_held_errors(self) -> None:
        said = {str(self.last_error.get("message", "")).strip()} if self.last_error else set()
        for line in self._held_errors:
            if line[len("error: "):].strip() not in said:
                self.log.emit(line)
        self._held_errors = []

    def _on_error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.timer.stop()
            self.finished.emit(-1, f"could not start the trainer: {self.proc.errorString()}")

    def _on_finished(self, code: int, status) -> None:
        self._read(self.proc.readAllStandardOutput(), False)
        self._read(self.proc.readAllStandardError(), True)
        self.poll()
        self._say_held_errors()
        self.timer.stop()
        self._kill_timer.stop()
        crashed = status == QProcess.ExitStatus.CrashExit
        if crashed:
            code = -abs(code) or -1
        self.finished.emit(code, self._message(code, crashed))

    def _message(self, code: int, crashed: bool) -> str:
        last = self.run_dir / "last.pth"
        offer = f" The last good checkpoint is {last}." if last.exists() else ""
        if code == 0 and self.stopped:
            done = (self.end_event or {}).get("global_step")
            return (f"training stopped at iteration {done}; last.pth saved (Resume run in the Runs tab "
                    f"continues it)." if done is not None else "training stopped; last.pth saved.")
        if code == 0:
            return "training finished."
        if code == 3 and self.last_error:
            return self.last_error.get("message", "the loss diverged") + "."
        reason = "crashed (killed, or out of memory?)" if crashed else f"failed (exit code {code})"
        detail = "; ".join(line for line in self.stderr_tail[-3:] if line.strip())
        return f"the trainer {reason}: {detail}.{offer}"
