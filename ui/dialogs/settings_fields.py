"""Fields of the settings dialog: parsing what a person typed, and what each field reads and shows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QLabel, QVBoxLayout, QWidget

from ui.widgets.inline_message import InlineMessage


class _ParseError(ValueError):
    """The text in a field is not the kind of value it needs (said in words for the user)."""


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise _ParseError("Enter a whole number.") from None


def _float(text: str) -> float:
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        raise _ParseError("Enter a number, e.g. 0.7.") from None


def _optional_int(text: str) -> int | None:
    return _int(text) if text.strip() else None


def _number_text(value: Any) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


@dataclass
class _Field:
    key: str  # dotted settings key
    read: Callable[[], Any]  # the widget's value; raises _ParseError
    write: Callable[[Any], None]  # show a value
    error: InlineMessage
    initial: Any = None


def intro_form(tab: QWidget, text: str) -> QFormLayout:
    """A settings tab of its own module: a line saying what the tab is about, then the form (returned)."""
    layout = QVBoxLayout(tab)
    intro = QLabel(text)
    intro.setWordWrap(True)
    layout.addWidget(intro)
    box = QWidget()
    form = QFormLayout(box)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
    layout.addWidget(box)
    layout.addStretch(1)
    return form
