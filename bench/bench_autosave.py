"""Benchmark: a big project in the window: opening it, the GUI's stall during an autosave, Save.

Data (made into ``$DETSCOPE_BENCH`` or ``/tmp/detscope-bench-autosave``, never the repository):
COCO files of 5,000 and 20,000 images with 10 boxes each (80 classes); only the first 20 image
files exist (tiny JPEGs: enough for the window to find the image folder and show image 1).

* ``open``: ``MainWindow(open_path=...)`` until shown and the events processed (median).
* ``autosave stall``: one box added through the undo stack, then the autosave is started from
  the event loop while a 10 ms ``QTimer`` ticks; the figure is the largest lateness of a tick
  (how long the GUI thread could not react) from the start until the recovery file is written.
  Measured for the worker-thread autosave (now) and for the same autosave written on the GUI
  thread (as before: ``ASYNC_AUTOSAVE_MIN_RECORDS`` raised past the project's size).
* ``save``: Ctrl+S of the edited project, measured as the autosave is (the 10 ms ticks'
  largest lateness until the file is written), in the background (now) and on the GUI thread
  (before), alternating.

Goals (issue "Nothing lost, nothing silently changed", item 12): no GUI stall over 100 ms at
20k during an autosave or a save; opening 20k at most 3x opening 5k.
Run from the repository root:  QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_autosave.py
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from bench_gui import open_window_any as open_window  # noqa: E402
from bench_gui import random_coco  # noqa: E402

BOXES_PER_IMAGE = 10


def make_data(root: Path, n: int) -> Path:
    path = root / f"big{n}" / "annotations.json"
    if path.is_file():
        return path
    images_dir = path.parent
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    for i in range(1, 21):
        cv2.imwrite(str(images_dir / f"{i:05d}.jpg"), np.full((48, 64, 3), i * 10, np.uint8))
    path.write_text(json.dumps(random_coco(n, BOXES_PER_IMAGE, rng)))
    return path


_CLOSED = []     # closed windows are kept (hidden): a window's QThreads must not be collected while running


def close_window(app, win) -> None:
    win.doc.discard()
    win.doc.release()
    win.hide()
    app.processEvents()
    project = win.doc.project                  # its records go (the hidden window never paints again):
    project.images, project._origins, project._kept = [], {}, {}    # the next open must not scan them
    _CLOSED.append(win)
    gc.collect()


def add_box(win) -> None:
    from app.annotate.commands import AddBoxes
    from detengine.api import Box

    doc = win.doc
    doc.push(0, AddBoxes(doc, 0, [Box(doc.project.new_box_id(), 1, 5, 5, 25, 25)]))
    doc._autosave.stop()


def stall_during(start, connect_done) -> tuple[float, float]:
    """Run ``start()`` from the event loop while a 10 ms ``QTimer`` ticks, until the callback
    that ``connect_done(callback)`` wires is called: (largest lateness of a tick, seconds taken)."""
    from PySide6.QtCore import QEventLoop, QTimer

    late, last = [0.0], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        late[0] = max(late[0], now - last[0] - 0.010)
        last[0] = now
    ticker = QTimer()
    ticker.setInterval(10)
    ticker.timeout.connect(tick)
    loop = QEventLoop()
    done = []
    disconnect = connect_done(lambda: (done.append(time.perf_counter()), QTimer.singleShot(30, loop.quit)))
    ticker.start()
    last[0] = time.perf_counter()
    t0 = time.perf_counter()
    QTimer.singleShot(20, start)
    QTimer.singleShot(120_000, loop.quit)
    loop.exec()
    ticker.stop()
    disconnect()
    assert done, "did not finish"
    return late[0], done[0] - t0 - 0.020


def autosave_stall(app, win) -> tuple[float, float]:
    """(largest lateness of a 10 ms tick, seconds until the recovery file was written)."""
    doc = win.doc
    doc.discard_recovery()

    def connect(callback):
        doc.autosaved.connect(lambda _p: callback())
        doc.autosaveFailed.connect(lambda text: (print("autosave failed:", text), callback()))
        return lambda: (doc.autosaved.disconnect(), doc.autosaveFailed.disconnect())
    result = stall_during(doc._on_autosave_timer, connect)
    assert doc.recovery_path().is_file(), "no autosave"
    return result


def save_stall(app, win, background: bool) -> tuple[float, float]:
    """Ctrl+S: (largest lateness of a 10 ms tick, seconds until the file was written);
    ``background``: as the window does it now, else on the GUI thread (as before)."""
    doc = win.doc
    if background:
        def connect(callback):
            doc.saveFinished.connect(lambda job: callback() if job.error is None else print("save failed:", job.error))
            return doc.saveFinished.disconnect
        return stall_during(lambda: win.save(background=True), connect)
    hook = []

    def save_now():
        win.save()
        hook[0]()

    def connect(callback):
        hook.append(callback)
        return lambda: None
    return stall_during(save_now, connect)


def use_old_sort() -> None:
    from PySide6.QtCore import QSortFilterProxyModel

    from app.annotate.image_list_panel import _Filter

    def less_than(self, left, right) -> bool:
        a, b = self.sourceModel().data(left), self.sourceModel().data(right)
        if a is None or b is None:
            return a is not None
        if isinstance(a, int) and isinstance(b, int):
            return a < b
        return str(a).lower() < str(b).lower()
    _Filter.sort = QSortFilterProxyModel.sort
    _Filter.lessThan = less_than


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--opens", type=int, default=2)
    parser.add_argument("--autosaves", type=int, default=3)
    parser.add_argument("--old-sort", action="store_true",
                        help="the image list sorted as before (sorted at each reset and filter, through data())")
    args = parser.parse_args()
    root = Path(os.environ.get("DETSCOPE_BENCH", Path(tempfile.gettempdir()) / "detscope-bench-autosave"))
    (root / "homes").mkdir(parents=True, exist_ok=True)
    os.environ["DETSCOPE_HOME"] = tempfile.mkdtemp(dir=root / "homes")     # fresh: no recovery files of earlier runs
    paths = {n: make_data(root, n) for n in args.sizes}

    from PySide6.QtWidgets import QApplication

    from app.annotate import document
    app = QApplication.instance() or QApplication([])
    if args.old_sort:
        use_old_sort()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    opens = {}
    for n, path in paths.items():
        times = []
        for _ in range(args.opens):
            win, elapsed = open_window(app, path)
            times.append(elapsed)
            close_window(app, win)
        opens[n] = statistics.median(times)
        print(f"{n} images, {n * BOXES_PER_IMAGE} boxes: open {opens[n]:.2f} s (median of {args.opens})")
        win, _ = open_window(app, path)
        threshold = document.ASYNC_AUTOSAVE_MIN_RECORDS
        runs = {"worker": [], "gui": []}
        for _ in range(args.autosaves):                           # the two ways alternate
            for way in runs:
                document.ASYNC_AUTOSAVE_MIN_RECORDS = threshold if way == "worker" else 1 << 60
                try:
                    add_box(win)
                    runs[way].append(autosave_stall(app, win))
                finally:
                    document.ASYNC_AUTOSAVE_MIN_RECORDS = threshold
        (stall, took), (sync_stall, sync_took) = ((statistics.median(s for s, _ in runs[w]),
                                                   statistics.median(t for _, t in runs[w])) for w in runs)
        worst = max(s for s, _ in runs["worker"])
        print(f"  autosave in the worker: GUI stall {stall * 1000:.0f} ms median of {args.autosaves} "
              f"(worst {worst * 1000:.0f} ms; goal <= 100 ms), written after {took:.2f} s; on the GUI thread "
              f"(before): stall {sync_stall * 1000:.0f} ms, {sync_took:.2f} s; stall ratio {stall / sync_stall:.3f}x")
        saves = {"background": [], "gui": []}
        for _ in range(args.autosaves):                           # the two ways alternate
            for way in saves:
                add_box(win)
                saves[way].append(save_stall(app, win, background=way == "background"))
        (stall, took), (sync_stall, sync_took) = ((statistics.median(s for s, _ in saves[w]),
                                                   statistics.median(t for _, t in saves[w])) for w in saves)
        print(f"  save (Ctrl+S) in the background: GUI stall {stall * 1000:.0f} ms median of {args.autosaves} "
              f"(worst {max(s for s, _ in saves['background']) * 1000:.0f} ms), written after {took:.2f} s; "
              f"on the GUI thread (before): stall {sync_stall * 1000:.0f} ms, {sync_took:.2f} s; "
              f"stall ratio {stall / sync_stall:.3f}x")
        close_window(app, win)
    if len(opens) >= 2:
        small, big = min(opens), max(opens)
        print(f"open {big} / open {small}: {opens[big] / opens[small]:.2f}x (goal <= 3x; "
              f"{big / small:.0f}x the images)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)         # the windows' worker QThreads are not torn down one by one at exit
