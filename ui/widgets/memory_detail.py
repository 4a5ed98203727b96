"""Everything about the selected memory: where it came from, when, who shared it, and its full text.

Shown under the results so a person can check what the agent would draw on before trusting (or forgetting)
it. The text is plain and selectable, exactly as stored: what the model is given is what is shown here.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from ui.widgets import memory_format as fmt

PLACEHOLDER = "Select a memory to see its full text and where it came from."


class MemoryDetail(QWidget):
    forgetRequested = Signal(object)  # the MemoryRow to forget

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.row: fmt.MemoryRow | None = None
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setWordWrap(True)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.meta = QLabel()
        self.meta.setTextFormat(Qt.TextFormat.RichText)
        self.meta.setWordWrap(True)
        self.meta.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setPlaceholderText(PLACEHOLDER)
        self.text.setMinimumHeight(60)
        self.forget_button = QPushButton("Forget…")
        self.forget_button.setToolTip("Delete this memory so the agent no longer recalls it")
        self.forget_button.clicked.connect(lambda: self.row is not None and self.forgetRequested.emit(self.row))
        head = QHBoxLayout()
        head.setContentsMargins(0, 0, 0, 0)
        head.addWidget(self.title, 1)
        head.addWidget(self.forget_button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(head)
        layout.addWidget(self.meta)
        layout.addWidget(self.text, 1)
        self.show_row(None)

    def show_row(self, row: fmt.MemoryRow | None) -> None:
        self.row = row
        self.forget_button.setEnabled(row is not None)
        self.forget_button.setVisible(row is not None)
        self.title.setVisible(row is not None)
        self.meta.setVisible(row is not None)
        if row is None:
            self.title.clear()
            self.meta.clear()
            self.text.clear()
            return
        self.title.setText(row.citation)
        self.meta.setText(_meta_html(row, self.palette().color(QPalette.ColorRole.PlaceholderText).name()))
        self.text.setPlainText(row.text)

    def set_text(self, text: str) -> None:
        """The full text of a listed source, once looked up (a search hit comes with its chunk's text)."""
        self.text.setPlainText(text)


def _meta_html(row: fmt.MemoryRow, muted: str) -> str:
    """One line of short facts, then a line each for where it lives, its heading and who shared it: only the
    facts this memory has (a note has no heading, a file no sharer)."""
    chunks = f"{row.chunks} chunk{'s' * (row.chunks != 1)}" if row.chunks is not None else ""
    match = f"{fmt.percent(row.similarity)} match" if row.is_hit else ""
    created = f"created {fmt.date_text(row.created_at, long=True)}" if row.created_at else ""
    tags = f"tags: {row.tags}" if row.tags else ""
    short = " · ".join(html.escape(x) for x in (row.kind, row.zone, created, match, chunks, tags) if x)
    lines = [f'<span style="color:{muted}">{short}</span>']
    where = ("File" if row.kind == "document" else "Source", fmt.where_from(row))
    for key, value in (where, ("Heading", row.heading), ("Shared by", row.origin_name)):
        if value:
            lines.append(f'<span style="color:{muted}">{key}:</span> {html.escape(value)}')
    return "<br>".join(lines)
