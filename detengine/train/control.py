"""Pause / resume / stop a training process from outside (the window runs training as a child
process and writes one word into a control file).

The file holds ``run``, ``pause`` or ``stop``. A :class:`ControlFile` given to the trainer
(``trainer.control``) is read before every iteration (a stat, and a read only when it changed):
``pause`` waits between two iterations until the word changes, ``stop`` ends the run before the
next iteration (``last.pth`` is saved). SIGTERM / SIGINT stop the same way. Under torchrun the
ranks agree on the word before each iteration (see ``Trainer.step``), so they pause and stop
together.
"""
from __future__ import annotations

import signal
import weakref
from pathlib import Path

__all__ = ["ControlFile", "POLL_S", "write_control", "install_stop_signals"]

POLL_S = 0.1


def write_control(path, word: str) -> None:
    if word not in ("run", "pause", "stop"):
        raise ValueError(f"control word must be run, pause or stop, got {word!r}")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(word + "\n", encoding="utf-8")
    tmp.replace(path)


class ControlFile:
    """The word in ``path`` (``run`` while the file is missing or holds something else)."""

    def __init__(self, path):
        self.path = Path(path)
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


def install_stop_signals(trainer):
    """SIGTERM / SIGINT: stop after the current iteration (checkpoint saved) instead of dying.
    Returns ``restore()``, which puts the previous handlers back. The handler holds the trainer
    weakly: a handler left installed must not keep the trainer, and through it the DDP model and
    its process group, alive until the interpreter shuts down (gloo's threads destroyed that late
    abort the process: "terminate called without an active exception")."""
    ref = weakref.ref(trainer)

    def handler(_signum, _frame):
        live = ref()
        if live is not None:
            live.request_stop()
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):       # not the main thread, or not supported here
            pass

    def restore() -> None:
        for sig, old in previous.items():
            try:
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass
        previous.clear()
    return restore
