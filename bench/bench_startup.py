"""Benchmark: how long ``python main.py`` takes to show its window, and to be ready.

Three kinds of run, each a fresh process, interleaved (the order rotates every round), ``--reps``
rounds; medians are reported:

* ``bare imports``: ``python -c "import PySide6.QtWidgets, torch"``, wall time of the process
  (the floor: what any PyTorch + Qt program pays before it can do anything).
* ``window``: ``python main.py`` offscreen, on the built-in sample project. With
  ``$DETSCOPE_STARTUP_T0`` set to a ``time.time()`` taken just before the process starts, the
  app prints the seconds since then at its first paint (``first-paint``) and when it is ready
  (engine loaded, first view drawn: ``ready``), then quits (``app/main.py``).
* ``window --view assign``: the same, opening on the Assignment view, so ``ready`` includes
  building the detector config and drawing the first trace.
* ``app imports``: ``python -c "import PySide6.QtWidgets, torch, torchvision, pyqtgraph"``, what
  the window must import before it is ready (torchvision alone pulls in ``torch._dynamo``): for
  reading how much of ``ready`` is the app's own work. Not part of the goals.

Goals (issue "Green on every machine", section 3): first paint <= 0.5 x bare imports, ready
<= 1.2 x bare imports. A warm-up round (page cache, sample project) is not counted.
Run from the repository root:  .venv/bin/python bench/bench_startup.py [--reps 5]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BARE = "import PySide6.QtWidgets, torch"
APP_IMPORTS = "import PySide6.QtWidgets, torch, torchvision, pyqtgraph"
KINDS = {"bare imports": BARE, "window": [], "window --view assign": ["--view", "assign"], "app imports": APP_IMPORTS}
STAMP = re.compile(r"detscope-startup: (first-paint|ready) ([\d.]+) s")


def run_imports(env: dict, code: str) -> dict[str, float]:
    t0 = time.time()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
    return {"process": time.time() - t0}


def run_window(env: dict, args: list[str]) -> dict[str, float]:
    """Seconds from just before the process starts to its first paint and to ready."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], env={**env, "DETSCOPE_STARTUP_T0": repr(t0)},
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    stamps = {what: float(value) for what, value in STAMP.findall(proc.stderr)}
    if proc.returncode != 0 or set(stamps) != {"first-paint", "ready"}:
        raise RuntimeError(f"main.py {' '.join(args)} exited {proc.returncode} without both stamps:\n"
                           f"{proc.stderr[-2000:]}")
    stamps["process"] = time.time() - t0
    return stamps


def run_kind(kind: str, env: dict) -> dict[str, float]:
    what = KINDS[kind]
    return run_imports(env, what) if isinstance(what, str) else run_window(env, what)


def header() -> str:
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "?"
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "app", "main.py"],
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
        if dirty:
            commit += f" + uncommitted changes in {', '.join(dirty[:4])}" + (", ..." if len(dirty) > 4 else "")
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"commit {commit}; python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {load:.1f}, "
            f"date {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="timed rounds (default 5)")
    args = ap.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="detscope-bench-startup-"))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DETSCOPE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    print(header())
    kinds = list(KINDS)
    for kind in kinds:                                           # warm-up: page cache, sample project
        run_kind(kind, env)
    times: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for rep in range(args.reps):
        order = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
        for kind in order:
            times[kind].append(run_kind(kind, env))
        print(f"round {rep + 1}/{args.reps}: " + "; ".join(_round_text(kind, times[kind][-1]) for kind in kinds),
              flush=True)
    report(times, args.reps)


def _round_text(kind: str, t: dict[str, float]) -> str:
    if "ready" not in t:
        return f"{kind} {t['process']:.2f} s"
    return f"{kind} paint {t['first-paint']:.2f} s, ready {t['ready']:.2f} s"


def report(times: dict[str, list[dict[str, float]]], reps: int) -> None:
    def med(kind: str, key: str) -> float:
        return statistics.median(t[key] for t in times[kind])
    bare = med("bare imports", "process")
    print(f"\nmedians of {reps} runs, seconds from just before the process starts:")
    print(f"  {f'bare imports (python -c {BARE!r})':64s} {bare:6.2f}")
    for kind in ("window", "window --view assign"):
        print(f"  {kind + ': first paint':64s} {med(kind, 'first-paint'):6.2f}")
        print(f"  {kind + ': ready (engine loaded, first view drawn)':64s} {med(kind, 'ready'):6.2f}")
    floor = med("app imports", "process")
    print(f"  {f'app imports (python -c {APP_IMPORTS!r})':64s} {floor:6.2f}")
    for kind in ("window", "window --view assign"):
        paint, ready = med(kind, "first-paint") / bare, med(kind, "ready") / bare
        print(f"RATIO {kind}: first-paint / bare-imports = {paint:.2f} (goal <= 0.5: {_verdict(paint <= 0.5)}); "
              f"ready / bare-imports = {ready:.2f} (goal <= 1.2: {_verdict(ready <= 1.2)}); "
              f"ready / app-imports = {med(kind, 'ready') / floor:.2f}")


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    main()
