"""Pause / resume / stop a training process from outside (the window runs training as a child
process and writes one word into a control file).

The file holds ``run``, ``pause`` or ``stop``. :class:`ControlFile` is an event subscriber: after
every iteration it reads the file (a stat, and a read only when it changed); on ``pause`` it
blocks between two iterations until the word changes; on ``stop`` it asks the trainer to stop,
which happens before the next iteration (``last.pth`` is saved). SIGTERM / SIGINT stop the same
way.
"""
from __future__ import annotations

import signal
import time
from pathlib import Path

__all__ = ["ControlFile", "write_control", "install_stop_signals"]

POLL_S = 0.1


def write_control(path, word: str) -> None:
    if word not in ("run", "pause", "stop"):
        raise ValueError(f"control word must be run, pause or stop, got {word!r}")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(word + "\n", encoding="utf-8")
    tmp.replace(path)


class ControlFile:
    def __init__(self, path, trainer):
        self.path = Path(path)
        self.trainer = trainer
        self._mtime = None
        self._word = "run"

    def read(self) -> str:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return self._word
        if mtime != self._mtime:
            self._mtime = mtime
            word = self.path.read_text(encoding="utf-8").strip()
            self._word = word if word in ("run", "pause", "stop") else self._word
        return self._word

    def __call__(self, event: dict) -> None:
        if event.get("type") != "iter":
            return
        word = self.read()
        if word == "pause":
            self.trainer.events.emit({"type": "paused", "message": "paused", "global_step": event.get("global_step")})
            while word == "pause":
                time.sleep(POLL_S)
                word = self.read()
            if word == "run":
                self.trainer.events.emit({"type": "resumed", "message": "resumed"})
        if word == "stop":
            self.trainer.request_stop()


def install_stop_signals(trainer) -> None:
    """SIGTERM / SIGINT: stop after the current iteration (checkpoint saved) instead of dying."""
    def handler(_signum, _frame):
        trainer.request_stop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):       # not the main thread, or not supported here
            pass
