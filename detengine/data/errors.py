"""Errors raised while reading datasets; every message names the file it is about.

The GUI catches :class:`ImageReadError` per image (one bad file must not stop a whole
epoch or an evaluation) and :class:`DatasetError` per dataset (shown to the user as is).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DatasetError", "ImageReadError", "DatasetProblem", "shorten_json"]


class DatasetError(ValueError):
    """A dataset file (annotation JSON, VOC XML, split list, folder) that cannot be used.

    ``path`` is the offending file (or folder); the message always contains it."""

    def __init__(self, message: str, *, path=None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


class ImageReadError(DatasetError):
    """An image file that is missing, unreadable or not a decodable image."""


@dataclass(frozen=True)
class DatasetProblem:
    """One record that a lenient load skipped or repaired.

    ``section`` is the JSON list it came from (``"annotations"``, ``"images"``, ...), ``index``
    its position there, ``record`` its JSON text (shortened), ``message`` what is wrong and
    ``action`` what the loader did (``"skipped"`` or ``"renumbered to N"``)."""

    file: str
    section: str
    index: int
    record: str
    message: str
    action: str = "skipped"

    def __str__(self) -> str:
        where = f"{self.section}[{self.index}] {self.record}" if self.index >= 0 else f'"{self.section}"'
        return f"{self.file}: {where}: {self.message} ({self.action})"


def shorten_json(value, limit: int = 160) -> str:
    """``value`` as compact JSON text, cut to ``limit`` characters with ``...`` when longer."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
