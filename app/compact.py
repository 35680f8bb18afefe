"""Widgets that fit a narrow dock (~290 px at 1024x700): combos sized to a few characters (the
full text in the popup and the tooltip), buttons and spin boxes no wider than their text. Qt's
defaults size a combo to its longest item, a spin box to its largest value and a push button to
at least 80 px, which together push a panel wider than the dock (it then scrolls sideways)."""
from __future__ import annotations

from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QPushButton, QWidget

__all__ = ["narrow_combo", "narrow_button", "narrow_spin", "narrow"]


def narrow_combo(combo: QComboBox, chars: int = 12) -> QComboBox:
    """At least ``chars`` characters wide, not its longest item (the popup shows whole items); a
    combo without a tooltip of its own shows its current text as one (it may be cut)."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    if not combo.toolTip():
        combo.currentTextChanged.connect(combo.setToolTip)
        combo.setToolTip(combo.currentText())
    return combo


def narrow_button(button: QPushButton, pad: int = 14) -> QPushButton:
    """As narrow as its text allows (Qt's styles keep push buttons ≥ 80 px otherwise)."""
    button.setMinimumWidth(button.fontMetrics().horizontalAdvance(button.text()) + pad)
    return button


def narrow_spin(spin: QAbstractSpinBox, text: str = "config's") -> QAbstractSpinBox:
    """Wide enough for ``text`` plus its arrows, not for the largest value of its range."""
    spin.setMinimumWidth(spin.fontMetrics().horizontalAdvance(text) + 28)
    return spin


def narrow(*widgets: QWidget) -> None:
    """:func:`narrow_combo` / :func:`narrow_button` / :func:`narrow_spin` by type."""
    for w in widgets:
        if isinstance(w, QComboBox):
            narrow_combo(w)
        elif isinstance(w, QPushButton):
            narrow_button(w)
        elif isinstance(w, QAbstractSpinBox):
            narrow_spin(w)
