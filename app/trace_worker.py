"""Computes image traces off the GUI thread.

One unparented worker ``QObject`` lives in its own ``QThread``. The GUI posts requests with
:meth:`TraceRunner.request`; only the newest request per ``slot`` is computed (a slider dragged
across twenty values costs one or two traces, not twenty), and results carry the request id so
the GUI drops stale ones. Errors come back as text, never as an exception in the GUI thread.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

__all__ = ["TraceRunner", "TraceRequest"]


@dataclass
class TraceRequest:
    """``job()`` runs on the worker thread and returns the result; ``slot`` names the kind of
    result (``"main"``, ``"compare"``, ``"scan"``) so different kinds do not replace each other."""

    job: Callable[[], object]
    slot: str = "main"
    id: int = 0
    posted: float = field(default_factory=time.perf_counter)


class _Worker(QObject):
    finished = Signal(str, int, object, float)      # slot, id, result, seconds
    failed = Signal(str, int, str)

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()
        self._pending: dict[str, TraceRequest] = {}

    def post(self, request: TraceRequest) -> None:
        with self._lock:
            self._pending[request.slot] = request

    @Slot()
    def run_pending(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    return
                slot = next(iter(self._pending))
                request = self._pending.pop(slot)
            t0 = time.perf_counter()
            try:
                result = request.job()
            except Exception as exc:                    # reported to the GUI, never raised there
                detail = traceback.format_exc(limit=6)
                self.failed.emit(request.slot, request.id, f"{type(exc).__name__}: {exc}\n{detail}")
                continue
            self.finished.emit(request.slot, request.id, result, time.perf_counter() - t0)


class TraceRunner(QObject):
    """Signals ``done(slot, id, result, seconds)`` and ``failed(slot, id, message)``, emitted in
    the GUI thread."""

    done = Signal(str, int, object, float)
    failed = Signal(str, int, str)
    _wake = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("detscope-trace")
        self._worker = _Worker()
        self._worker.moveToThread(self._thread)
        self._wake.connect(self._worker.run_pending)
        self._worker.finished.connect(self.done)
        self._worker.failed.connect(self.failed)
        self._thread.start()
        self._next_id = 0
        self.latest: dict[str, int] = {}

    def request(self, job: Callable[[], object], slot: str = "main") -> int:
        self._next_id += 1
        self.latest[slot] = self._next_id
        self._worker.post(TraceRequest(job, slot, self._next_id))
        self._wake.emit()
        return self._next_id

    def is_latest(self, slot: str, request_id: int) -> bool:
        return self.latest.get(slot) == request_id

    def stop(self) -> None:
        """Quit the thread; waits for a job in progress (callers cancel long jobs first)."""
        with self._worker._lock:
            self._worker._pending.clear()
        self._thread.quit()
        if not self._thread.wait(120_000):
            self._thread.terminate()
            self._thread.wait(5_000)
