"""Run folders: one naming scheme for the CLI and the window, and what the window's Runs tab reads.

A run folder is ``<root>/<config>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... when taken) holding
``config.py``, ``log.jsonl``, ``last.pth``, ``best.pth`` (and ``command.txt`` when the window
started it), and for other tools TensorBoard event files, ``results.csv`` and PNG plots
(:mod:`detengine.train.outputs`). The CLI puts runs under ``./runs`` unless ``--work-dir`` says
otherwise; the window under DetScope's folder. Every run registers its folder in DetScope's folder (``runs.txt``), so
the window lists the CLI's runs wherever they are.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .events import read_jsonl

__all__ = ["detscope_home", "window_runs_root", "make_run_dir", "register_run", "known_runs", "RunSummary",
           "run_summary", "RunCurves", "run_curves", "checkpoint_config", "config_for_checkpoint", "plain_config"]

REGISTRY = "runs.txt"


def detscope_home() -> Path:
    """DetScope's own folder: ``$DETSCOPE_HOME``, else the platform's application-data folder
    (the window's settings, recovery files, sample project and runs live there)."""
    if os.environ.get("DETSCOPE_HOME"):
        path = Path(os.environ["DETSCOPE_HOME"])
    elif sys.platform == "win32":
        path = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "detscope"
    elif sys.platform == "darwin":
        path = Path.home() / "Library" / "Application Support" / "detscope"
    else:
        path = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "detscope"
    path.mkdir(parents=True, exist_ok=True)
    return path


def window_runs_root() -> Path:
    path = detscope_home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_run_dir(root, config_name: str) -> Path:
    """A new ``root/<config>-YYYYmmdd-HHMMSS`` folder (suffixed ``-2``, ``-3``... if taken)."""
    base = Path(root) / f"{Path(str(config_name)).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}-{k}")


def register_run(path) -> None:
    """Remember a run folder in DetScope's folder, for the window's Runs tab. Best effort: a
    read-only home only means the window does not list this run."""
    try:
        with open(detscope_home() / REGISTRY, "a", encoding="utf-8") as f:
            f.write(str(Path(path).resolve()) + "\n")
    except OSError:
        pass


def _is_run(path: Path) -> bool:
    return path.is_dir() and ((path / "log.jsonl").exists() or (path / "command.txt").exists())


def known_runs(root=None) -> list[Path]:
    """Run folders under ``root`` (default: the window's) and every registered one that still
    exists, newest first."""
    root = Path(root) if root is not None else window_runs_root()
    found = {p.resolve() for p in root.iterdir() if _is_run(p)} if root.is_dir() else set()
    registry = detscope_home() / REGISTRY
    if registry.exists():
        for line in registry.read_text(encoding="utf-8", errors="replace").splitlines():
            p = Path(line.strip())
            if line.strip() and _is_run(p):
                found.add(p.resolve())
    return sorted(found, key=lambda p: (p / "log.jsonl").stat().st_mtime if (p / "log.jsonl").exists()
                  else p.stat().st_mtime, reverse=True)


@dataclass(frozen=True)
class RunSummary:
    """One row of the Runs tab: ``status`` is how the log ends (``end``, ``stop``, ``error``, ``?``);
    ``outputs``: the files for other tools in the folder (``results.csv``, the PNG plots, and
    ``tensorboard`` when it holds event files)."""

    path: Path
    config: str
    status: str
    aps: tuple[float, ...]
    checkpoints: tuple[str, ...]
    outputs: tuple[str, ...] = ()

    @property
    def best_ap(self) -> float | None:
        return max(self.aps) if self.aps else None


def run_summary(path) -> RunSummary:
    path = Path(path)
    events = read_jsonl(path / "log.jsonl") if (path / "log.jsonl").exists() else []
    status = next((e["type"] for e in reversed(events) if e.get("type") in ("end", "stop", "error")), "?")
    aps = tuple(float(e["metrics"]["AP"]) for e in events if e.get("type") == "eval" and "AP" in e.get("metrics", {}))
    outputs = tuple(sorted(p.name for p in [*path.glob("*.png"), *path.glob("results.csv")]))
    outputs += ("tensorboard",) if next(path.glob("events.out.tfevents.*"), None) else ()
    return RunSummary(path, _config_name(path, events), status, aps, tuple(sorted(p.name for p in path.glob("*.pth"))),
                      outputs)


def _config_name(path: Path, events: list[dict]) -> str:
    start = next((e for e in events if e.get("type") == "start" and e.get("config")), None)
    if start:
        return Path(str(start["config"])).stem
    if (path / "command.txt").exists():
        words = (path / "command.txt").read_text(encoding="utf-8").split(" train ")[-1].split()
        return Path(words[0]).stem if words else "?"
    name = path.name.rsplit("-", 2)[0]  # <config>-<date>-<time>
    return name or "?"


@dataclass
class RunCurves:
    """The curves of one run, from its events: ``steps`` with each loss term and the lr, the
    evaluations as ``(step, AP, AP50)``, and the assignment statistics (``assign/*``)."""

    name: str
    steps: list[int] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)
    lr: list[float] = field(default_factory=list)
    evals: list[tuple[int, float, float]] = field(default_factory=list)
    # the trainer's assignment statistics at its logging interval: name -> [(step, value)]
    assign: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def add(self, e: dict) -> None:
        if e.get("type") == "iter":
            for k, v in (e.get("assign") or {}).items():
                self.assign.setdefault(k, []).append((int(e["global_step"]), float(v)))
            self.steps.append(int(e["global_step"]))
            self.losses.setdefault("loss", []).append(float(e["loss"]))
            for k, v in e.get("losses", {}).items():
                self.losses.setdefault(k, []).append(float(v))
            self.lr.append(float(e.get("lr", 0.0)))
        elif e.get("type") == "eval":
            m = e.get("metrics", {})
            step = self.steps[-1] if self.steps else 0
            self.evals.append((step, float(m.get("AP", 0.0)), float(m.get("AP50", 0.0))))


def run_curves(path) -> RunCurves:
    path = Path(path)
    curves = RunCurves(path.name)
    for e in read_jsonl(path / "log.jsonl") if (path / "log.jsonl").exists() else []:
        curves.add(e)
    return curves


def plain_config(cfg) -> dict:
    """``cfg`` as plain dicts, lists, tuples and scalars: what a checkpoint carries as data
    (``torch.load(weights_only=True)`` reads it; nothing in it runs)."""
    if isinstance(cfg, dict):
        return {str(k): plain_config(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(plain_config(v) for v in cfg) if isinstance(cfg, tuple) else [plain_config(v) for v in cfg]
    if hasattr(cfg, "item") and getattr(cfg, "ndim", 1) == 0:       # numpy / torch scalars
        cfg = cfg.item()
    return cfg if cfg is None or isinstance(cfg, (bool, int, float, str)) else str(cfg)


def checkpoint_config(checkpoint) -> dict | None:
    """The config a DetScope checkpoint carries as data (``meta["config"]``), or None (an older
    run, mmdetection's checkpoints): read without running any code."""
    import torch
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:                       # not a checkpoint we can read as data: no config from it
        return None
    meta = (ckpt.get("meta") or {}) if isinstance(ckpt, dict) else {}
    cfg = meta.get("config")
    return cfg if isinstance(cfg, dict) and "model" in cfg else None


def config_for_checkpoint(checkpoint) -> Path | None:
    """A config file for a checkpoint without running foreign code: its own config (data) written
    as a literal config under DetScope's folder (``configs/<digest>.py``, only dicts, lists and
    values: loading it runs nothing else), or None when the checkpoint carries none."""
    import hashlib
    import json

    from ..config import Config
    cfg = checkpoint_config(checkpoint)
    if cfg is None:
        return None
    try:
        text = Config.from_dict(cfg).pretty_text()
    except ValueError:                      # not writable as a config (ConfigError): none from it
        return None
    digest = hashlib.sha1(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]
    name = str(cfg.get("_name") or "run").replace("/", "_").replace("\\", "_")
    folder = detscope_home() / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{Path(name).stem}-{digest}.py"
    if not path.exists():
        from ..io import atomic_write_text
        atomic_write_text(path, text)
    return path
