"""One stream of training events; the JSONL log, the console and the GUI subscribe to it.

An event is a small JSON-ready dict with a ``type``: ``"start"``, ``"iter"`` (epoch, iter, each
named loss, lr, images/s, ETA), ``"eval"`` (metrics), ``"checkpoint"``, ``"error"``, ``"stop"``,
``"end"``. Subscribers are called in the order they were added; a failing subscriber is
reported once and dropped, never allowed to stop training.
"""
from __future__ import annotations

import json
import math
import sys
import time
from collections import deque
from pathlib import Path
from typing import Callable

from ..progress import write_line

__all__ = ["EventBus", "JsonlWriter", "ConsolePrinter", "EpochProgress", "read_jsonl"]


class EventBus:
    def __init__(self, history: int = 20_000):
        self._subscribers: list[Callable[[dict], None]] = []
        self.history: deque[dict] = deque(maxlen=history)  # the latest events, for late subscribers
        self.keep_history = True

    def subscribe(self, fn: Callable[[dict], None]) -> Callable[[dict], None]:
        self._subscribers.append(fn)
        return fn

    def unsubscribe(self, fn) -> None:
        if fn in self._subscribers:
            self._subscribers.remove(fn)

    def emit(self, event: dict) -> dict:
        event = {"time": time.time(), **event}
        if self.keep_history:
            self.history.append(event)
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception as exc:  # a broken view must not kill a training run
                self._subscribers.remove(fn)
                print(f"detscope: event subscriber {fn!r} failed and was removed: {exc}", file=sys.stderr)
        return event


def _clean(value):
    """JSON cannot hold NaN / inf: write them as strings so the log stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _clean(value.item())
    return value


class JsonlWriter:
    """Appends each event as one JSON line, flushed at once (a killed run keeps its log)."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def __call__(self, event: dict) -> None:
        self._file.write(json.dumps(_clean(event)) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_jsonl(path) -> list[dict]:
    """Events of a log; a truncated last line (a killed process) is skipped."""
    events = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ConsolePrinter:
    """A progress line every ``every`` iterations, and each evaluation and error (written above
    a progress bar on the same terminal, if one is drawn)."""

    def __init__(self, every: int = 10, stream=None):
        self.every = max(1, every)
        self.stream = stream or sys.stdout

    def __call__(self, e: dict) -> None:
        kind = e["type"]
        if kind == "iter" and (e["iter"] % self.every == 0 or e.get("last_in_epoch")):
            losses = " ".join(f"{k} {v:.4f}" for k, v in e["losses"].items())
            write_line(f"epoch {e['epoch'] + 1}/{e['max_epochs']} iter {e['iter'] + 1}/{e['iters_per_epoch']}  "
                       f"loss {e['loss']:.4f} ({losses})  lr {e['lr']:.2e}  {e['images_per_s']:.1f} img/s  "
                       f"eta {_fmt_eta(e['eta_s'])}", self.stream)
        elif kind == "eval":
            m = e["metrics"]
            write_line(f"epoch {e['epoch'] + 1} eval: AP {m.get('AP', 0):.4f}  AP50 {m.get('AP50', 0):.4f}  "
                       f"AP75 {m.get('AP75', 0):.4f}", self.stream)
        elif kind in ("error", "warning", "stop", "end", "checkpoint", "start", "data"):
            text = e.get("message") or e.get("path") or ""
            write_line(f"[{kind}] {text}", self.stream)


class EpochProgress:
    """A progress bar per epoch from the ``"iter"`` events, with the loss, the learning rate,
    images/s and the ETA of the whole run after it. ``factory(desc, unit)`` gives the bar, a
    ``bar(done, total, **postfix)`` callable with ``close()`` (the CLI's
    :func:`~detengine.progress.progress_bar`), or None; the epoch's last iteration, a stop, an
    error or the end closes it."""

    def __init__(self, factory: Callable):
        self.factory = factory
        self.epoch: int | None = None
        self.bar = None

    def __call__(self, e: dict) -> None:
        if e["type"] == "iter":
            if e["epoch"] != self.epoch:
                self.close()
                self.epoch = e["epoch"]
                self.bar = self.factory(f"epoch {e['epoch'] + 1}/{e['max_epochs']}", "it")
            if self.bar is not None:
                self.bar(e["iter"] + 1, e["iters_per_epoch"], loss=f"{e['loss']:.4f}", lr=f"{e['lr']:.2e}",
                         img_s=f"{e['images_per_s']:.1f}", eta=_fmt_eta(e["eta_s"]))
            if e.get("last_in_epoch"):
                self.close()
        elif e["type"] in ("stop", "error", "end"):
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None
