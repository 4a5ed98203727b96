"""Find in the shown thread (Ctrl+F): next/previous with wrap-around, a match count, every match tinted.

It searches the rendered document (QTextDocument.find), so it finds what a person sees, including the
answer still streaming; a re-render only triggers a debounced recount, never a jump of the selection.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QGuiApplication, QKeyEvent, QPalette, QTextCursor, QTextDocument
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QTextEdit, QToolButton, QWidget

from ui.widgets.transcript_format import mix

REFRESH_MS = 150


class FindBar(QWidget):
    closed = Signal()

    def __init__(self, target: QTextEdit, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.target = target
        self.field = QLineEdit(self)
        self.field.setPlaceholderText("Find in thread")
        self.field.setClearButtonEnabled(True)
        self.field.textEdited.connect(self._on_edited)
        self.field.returnPressed.connect(self._on_return)
        self.count_label = QLabel("", self)
        self.count_label.setMinimumWidth(80)
        previous = self._button("▲", "Previous match (Shift+Enter)", self.find_previous)
        following = self._button("▼", "Next match (Enter)", self.find_next)
        close = self._button("✕", "Close (Esc)", self.close_bar)
        row = QHBoxLayout(self)
        row.setContentsMargins(12, 4, 12, 4)
        row.setSpacing(4)
        row.addWidget(self.field, 1)
        row.addWidget(self.count_label)
        row.addWidget(previous)
        row.addWidget(following)
        row.addWidget(close)
        self._refresh = QTimer(self)
        self._refresh.setSingleShot(True)
        self._refresh.setInterval(REFRESH_MS)
        self._refresh.timeout.connect(self._recount)
        target.textChanged.connect(self._on_target_changed)
        self.hide()

    def _button(self, text: str, tip: str, slot: object) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setToolTip(tip)
        button.setAutoRaise(True)
        button.clicked.connect(slot)
        return button

    # --- public -------------------------------------------------------------------------------------

    def open_bar(self, text: str | None = None, *, from_top: bool = True) -> None:
        """Show the bar and focus the field; with `text`, search for it from the top of the thread
        (or, with `from_top=False`, keep the selection a caller already placed on a match)."""
        self.show()
        if text is not None:
            self.field.setText(text)
        if text is not None and from_top:
            cursor = self.target.textCursor()
            cursor.movePosition(QTextCursor.MoveOperation.Start)
            self.target.setTextCursor(cursor)
            self.find_next()
        else:
            self._recount()
        self.field.setFocus()
        self.field.selectAll()

    def close_bar(self) -> None:
        self.hide()
        self.target.setExtraSelections([])
        self.target.setFocus()
        self.closed.emit()

    def find_next(self) -> bool:
        return self._find(backward=False)

    def find_previous(self) -> bool:
        return self._find(backward=True)

    def matches(self) -> list[tuple[int, int]]:
        """Every match of the field's text as (start, end) document positions."""
        text = self.field.text()
        found: list[tuple[int, int]] = []
        if not text:
            return found
        doc = self.target.document()
        cursor = doc.find(text, 0)
        while not cursor.isNull() and len(found) < 10_000:
            found.append((cursor.selectionStart(), cursor.selectionEnd()))
            cursor = doc.find(text, cursor)
        return found

    def match_count(self) -> int:
        return len(self.matches())

    def current_index(self, matches: list[tuple[int, int]] | None = None) -> int:
        """1-based index of the selected match, 0 when the selection is not a match."""
        selected = self.target.textCursor()
        span = (selected.selectionStart(), selected.selectionEnd())
        matches = self.matches() if matches is None else matches
        return matches.index(span) + 1 if span in matches else 0

    # --- internals ------------------------------------------------------------------------------------

    def _find(self, backward: bool) -> bool:
        text = self.field.text()
        if not text:
            self._recount()
            return False
        flags = QTextDocument.FindFlag.FindBackward if backward else QTextDocument.FindFlag(0)
        doc = self.target.document()
        found = doc.find(text, self.target.textCursor(), flags)
        if found.isNull():  # wrap around
            start = QTextCursor(doc)
            start.movePosition(QTextCursor.MoveOperation.End if backward else QTextCursor.MoveOperation.Start)
            found = doc.find(text, start, flags)
        if not found.isNull():
            self.target.setTextCursor(found)
            self.target.ensureCursorVisible()
        self._recount()
        return not found.isNull()

    def _on_edited(self, _text: str) -> None:
        """Incremental: search again from where the current match starts, so typing refines in place."""
        cursor = self.target.textCursor()
        cursor.setPosition(cursor.selectionStart())
        self.target.setTextCursor(cursor)
        self.find_next()

    def _on_return(self) -> None:
        shift = QGuiApplication.keyboardModifiers() & Qt.KeyboardModifier.ShiftModifier
        self._find(backward=bool(shift))

    def _on_target_changed(self) -> None:
        if self.isVisible():
            self._refresh.start()

    def _recount(self) -> None:
        """Update "3 of 7" and tint every match."""
        matches = self.matches() if self.isVisible() else []
        tint = mix(self.target.palette().color(QPalette.ColorRole.Base), QColor("#ffca28"), 0.45)
        selections = []
        for start, end in matches:
            selection = QTextEdit.ExtraSelection()
            selection.cursor = QTextCursor(self.target.document())
            selection.cursor.setPosition(start)
            selection.cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            selection.format.setBackground(tint)
            selections.append(selection)
        self.target.setExtraSelections(selections)
        if not self.field.text():
            self.count_label.setText("")
        elif not matches:
            self.count_label.setText("No matches")
        else:
            self.count_label.setText(f"{self.current_index(matches) or '–'} of {len(matches)}")
        self.count_label.setStyleSheet("color: #c62828;" if self.field.text() and not matches else "")

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.close_bar()
            return
        super().keyPressEvent(event)
