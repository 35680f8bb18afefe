"""The base of the four debug views."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QWidget

__all__ = ["DebugPage"]


class DebugPage(QWidget):
    """A view of the current trace. ``changed`` asks the panel for a new trace (a parameter
    changed); ``needs_model`` views get the model's head outputs in their trace."""

    changed = Signal()
    needs_model = False
    persistent_layers: tuple[str, ...] = ()     # overlay layers the page keeps across traces when unchanged

    def __init__(self, panel):
        super().__init__()
        self.panel = panel
        self.result = None  # the DebugResult shown

    def show_result(self, result, overlay) -> None:  # a DebugResult
        """Draw ``result`` (``{"main": ImageTrace, "compare": ..., "box_ids": [...]}``)."""
        self.result = result

    def on_click(self, x: float, y: float) -> None:
        """A click on the image at original pixel (x, y)."""

    def on_zoom(self) -> None:
        """The canvas zoom changed (level-of-detail views redraw)."""

    def config_changed(self, cfg: dict) -> None:
        """A new config: reset the parameters that came from the old one."""

    def redraw(self) -> None:
        if self.result is not None and self.panel.active and self.panel.current_page() is self:
            self.panel.clear_overlay(keep=self.persistent_layers)
            self.show_result(self.result, self.panel.overlay)
