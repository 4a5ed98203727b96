"""Search every thread (Ctrl+Shift+F): a non-modal dialog over the core's full-text index.

Typing searches after a short pause (the index is fast, but a query per keystroke is wasteful); activating
a result asks the chat pane to open that thread and reveal the match, and the dialog stays open so the
next result is one click away.
"""

from __future__ import annotations

import html
import re

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QDialog, QLabel, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from core.errors import classify
from core.timeline.sessions import SearchHit
from ui.bridge import Bridge
from ui.tasks import spawn

DEBOUNCE_MS = 250
HIT = Qt.ItemDataRole.UserRole
ROLE_NAMES = {"user": "You", "assistant": "Shoal", "tool": "Tool"}


def match_term(hit: SearchHit, query: str) -> str:
    """The word the index matched (bracketed in the snippet), else the query's first word."""
    marked = re.search(r"\[([^\[\]]+)\]", hit.snippet)
    if marked:
        return marked.group(1)
    words = query.split()
    return words[0] if words else ""


def snippet_html(snippet: str) -> str:
    """The snippet with the index's [match] markers shown in bold, everything else escaped."""
    escaped = html.escape(" ".join(snippet.split()))
    return re.sub(r"\[([^\[\]]+)\]", r"<b>\1</b>", escaped)


class SearchDialog(QDialog):
    resultActivated = Signal(str, int, str)  # session_id, message seq, term to highlight

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setWindowTitle("Search all threads")
        self.setModal(False)
        self.resize(560, 480)
        self.field = QLineEdit(self)
        self.field.setPlaceholderText("Search every thread…")
        self.field.setClearButtonEnabled(True)
        self.field.textChanged.connect(self._on_text)
        self.field.returnPressed.connect(self._activate_current)
        self.results = QListWidget(self)
        self.results.setAlternatingRowColors(True)
        self.results.itemActivated.connect(self._on_activated)
        self.status = QLabel("", self)
        self.status.setStyleSheet("color: palette(placeholder-text);")
        column = QVBoxLayout(self)
        column.setContentsMargins(12, 12, 12, 12)
        column.setSpacing(8)
        column.addWidget(self.field)
        column.addWidget(self.results, 1)
        column.addWidget(self.status)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(lambda: spawn(self.run_search(self.field.text())))
        self._generation = 0
        self._query = ""

    def open_with(self, text: str = "") -> None:
        """Show (non-modal), focus the field, keep earlier results for a quick return."""
        if text:
            self.field.setText(text)
        self.show()
        self.raise_()
        self.activateWindow()
        self.field.setFocus()
        self.field.selectAll()

    async def run_search(self, text: str) -> list[SearchHit]:
        """Query the index and list the hits; an older query finishing late never overwrites a newer one."""
        self._generation += 1
        generation = self._generation
        self._query = text
        if not text.strip():
            self._show([], "")
            return []
        try:
            hits = await self.bridge.search(text)
        except Exception as exc:
            self._show([], classify(exc).message)
            return []
        if generation == self._generation:
            self._show(hits, "No matches." if not hits else f"{len(hits)} match{'es' * (len(hits) != 1)}")
        return hits

    def activate_row(self, row: int) -> None:
        item = self.results.item(row)
        if item is not None:
            self._on_activated(item)

    # --- internals ---------------------------------------------------------------------------------

    def _on_text(self, _text: str) -> None:
        self._timer.start()

    def _show(self, hits: list[SearchHit], status: str) -> None:
        self.results.clear()
        for hit in hits:
            item = QListWidgetItem(self.results)
            item.setData(HIT, hit)
            label = QLabel(self._row_html(hit))
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setContentsMargins(6, 4, 6, 4)
            label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            item.setSizeHint(label.sizeHint())
            self.results.setItemWidget(item, label)
        self.status.setText(status)
        if hits:
            self.results.setCurrentRow(0)

    @staticmethod
    def _row_html(hit: SearchHit) -> str:
        role = ROLE_NAMES.get(hit.role, hit.role)
        title = html.escape(hit.session_title)
        return f"<b>{title}</b> <span style='color:gray'>· {role}</span><br>{snippet_html(hit.snippet)}"

    def _activate_current(self) -> None:
        item = self.results.currentItem()
        if item is not None:
            self._on_activated(item)

    def _on_activated(self, item: QListWidgetItem) -> None:
        hit: SearchHit = item.data(HIT)
        self.resultActivated.emit(hit.session_id, hit.seq, match_term(hit, self._query))
