"""Progress bars of the long command-line jobs (train, eval, export, scan, the synthetic data set).

The engine's loops take a plain ``progress(done, total)`` callback and never draw a bar
themselves: the window runs the same loops in worker threads and shows its own progress. The
command line passes a :class:`ProgressBar` (a tqdm bar) from :func:`progress_bar`, which gives
None unless a person watches: stderr is a terminal and, under torchrun, this is rank 0. Logs,
pipes, the window's training subprocess and the tests therefore see no bar at all.
"""
from __future__ import annotations

import os
import sys

__all__ = ["shows_bars", "ProgressBar", "progress_bar", "write_line"]


def shows_bars(stream=None) -> bool:
    """True on a terminal (``stream``, default stderr) of rank 0 (torchrun's ``RANK``)."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return os.environ.get("RANK", "0") in ("", "0") and callable(isatty) and bool(isatty())


class ProgressBar:
    """A ``progress(done, total, **postfix)`` callable drawing one tqdm bar, made at the first
    call (when the total is known); ``postfix`` items are shown after it. :meth:`close` ends it;
    usable as a context manager."""

    def __init__(self, desc: str, unit: str = "img", stream=None):
        self.desc, self.unit = desc, unit
        self.stream = sys.stderr if stream is None else stream
        self._bar = None

    def __call__(self, done: int, total: int, **postfix) -> None:
        if self._bar is None:
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=self.stream, dynamic_ncols=True,
                             mininterval=0.3, disable=False)
        self._bar.total = total
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(desc: str, unit: str = "img", stream=None) -> ProgressBar | None:
    """A :class:`ProgressBar` when :func:`shows_bars`, else None (the loops then report nothing).
    This is also the factory ``progress(desc, unit)`` that :func:`~detengine.train.runner.train_from_config`
    takes."""
    return ProgressBar(desc, unit, stream) if shows_bars(stream) else None


def write_line(text: str, stream) -> None:
    """Print a line without breaking a bar on the same terminal: with a tqdm bar open, tqdm
    clears it, writes and draws it again; otherwise a plain print (tqdm is not even imported)."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is not None and getattr(tqdm_module.tqdm, "_instances", None):
        tqdm_module.tqdm.write(text, file=stream)
        stream.flush()
    else:
        print(text, file=stream, flush=True)
