"""What DetScope ships besides code: the configs (and any icons) in the repository's ``resources/``.

An installed wheel carries that folder as the package data ``detengine.resources`` (pyproject's
``package-dir`` maps it), found through the import system, so the commands work from any
folder; a source checkout run without installing reads ``resources/`` in place. Imports no torch:
the window and the CLI look configs up before anything heavy is loaded.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

__all__ = ["ConfigNotFound", "resource_dir", "config_dir", "shipped_configs", "find_config"]

_CHECKOUT = Path(__file__).resolve().parent.parent / "resources"


class ConfigNotFound(ValueError):
    """A ``--config`` that is neither a file nor the name of a shipped config."""


@lru_cache(maxsize=1)
def resource_dir() -> Path:
    """The folder holding ``configs/`` (and ``icons/``): installed package data, else the checkout's."""
    try:  # a data-only package (no __init__): its locations come from the import system's spec
        spec = importlib.util.find_spec("detengine.resources")
    except ModuleNotFoundError:
        spec = None
    installed = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    for folder in [*installed, _CHECKOUT]:
        if (folder / "configs").is_dir():
            return folder
    raise FileNotFoundError(
        f"DetScope's shipped configs are missing: neither the installed package data "
        f"({', '.join(map(str, installed)) or 'no detengine.resources'}) nor {_CHECKOUT / 'configs'} exists; "
        "reinstall DetScope (`pip install .` in the source folder, or `make install`)")


def config_dir() -> Path:
    return resource_dir() / "configs"


def shipped_configs() -> list[str]:
    """Names of the shipped configs (``ssd300_coco``, ...), without the ``_base_`` parts."""
    return sorted(p.stem for p in config_dir().glob("*.py"))


def find_config(name: str | Path) -> Path:
    """A config file path as given, or the shipped config of that name (``ssd300_coco[.py]``)."""
    path = Path(name)
    if path.exists():
        return path
    text = str(name)
    shipped = config_dir() / (text if text.endswith(".py") else text + ".py")
    if shipped.exists():
        return shipped
    raise ConfigNotFound(f"no config {text!r} (not a file, nor a shipped config: {', '.join(shipped_configs())})")
