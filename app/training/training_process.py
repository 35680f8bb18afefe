"""A training run as a child process (``python -m detengine train ... --control FILE``).

Why a process and not a thread: the window keeps its own interpreter lock and event loop (the
training loop's Python work never stalls a repaint), a crash or an out-of-memory kill of the
trainer cannot take the window down, and stop / pause reach it through a control file read
after every iteration. Progress comes back through the run's JSONL log, which the trainer
writes anyway; it is read incrementally on a timer.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from detengine.api import write_control

__all__ = ["TrainingProcess", "ROOT"]

ROOT = Path(__file__).resolve().parents[2]  # the folder holding the app and detengine packages
POLL_MS = 150
STOP_GRACE_MS = 60_000


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

    def __init__(self, run_dir: Path, args: list[str], parent=None):
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self.control = self.run_dir / "control"
        self.args = args
        self.tail = JsonlTail(self.run_dir / "log.jsonl")
        self.last_error: dict | None = None
        self.stderr_tail: list[str] = []
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
        return [sys.executable, "-m", "detengine", "train", *self.args, "--work-dir", str(self.run_dir),
                "--control", str(self.control)]

    def start(self) -> None:
        write_control(self.control, "run")
        cmd = self.command
        (self.run_dir / "command.txt").write_text(" ".join(cmd) + "\n", encoding="utf-8")
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
            if event.get("type") == "error":
                self.last_error = event
            self.event.emit(event)

    def _read(self, data, is_err: bool) -> None:
        text = bytes(data).decode("utf-8", "replace")
        for line in text.splitlines():
            if line.strip():
                if is_err:
                    self.stderr_tail = (self.stderr_tail + [line])[-30:]
                self.log.emit(line)

    def _on_error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.timer.stop()
            self.finished.emit(-1, f"could not start the trainer: {self.proc.errorString()}")

    def _on_finished(self, code: int, status) -> None:
        self.poll()
        self.timer.stop()
        self._kill_timer.stop()
        crashed = status == QProcess.ExitStatus.CrashExit
        if crashed:
            code = -abs(code) or -1
        self.finished.emit(code, self._message(code, crashed))

    def _message(self, code: int, crashed: bool) -> str:
        last = self.run_dir / "last.pth"
        offer = f" The last good checkpoint is {last}." if last.exists() else ""
        if code == 0:
            return "training finished."
        if code == 3 and self.last_error:
            return self.last_error.get("message", "the loss diverged") + "."
        reason = "crashed (killed, or out of memory?)" if crashed else f"failed (exit code {code})"
        detail = "; ".join(line for line in self.stderr_tail[-3:] if line.strip())
        return f"the trainer {reason}: {detail}.{offer}"
