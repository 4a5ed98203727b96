"""A form row the dialogs share: the field (plus an optional button), a dimmed hint, and the field's inline
message under it, so a wrong value is explained right where it was typed."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ui.widgets.inline_message import InlineMessage


def form_layout(parent: QWidget) -> QFormLayout:
    form = QFormLayout(parent)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
    return form


def field_row(
    form: QFormLayout, label: str, widget: QWidget, hint: str = "", extra: QWidget | None = None
) -> tuple[QWidget, InlineMessage]:
    """Add the row; returns its field box (to hide the row with `form.setRowVisible`) and its message."""
    box = QWidget()
    column = QVBoxLayout(box)
    column.setContentsMargins(0, 0, 0, 0)
    column.setSpacing(2)
    line = QHBoxLayout()
    line.addWidget(widget, 1)
    if extra is not None:
        line.addWidget(extra)
    column.addLayout(line)
    if hint:
        note = QLabel(hint)
        note.setWordWrap(True)
        note.setEnabled(False)  # the palette's dimmed text
        column.addWidget(note)
    error = InlineMessage()
    column.addWidget(error)
    form.addRow(label, box)
    return box, error
