"""The transcript of one thread: recorded messages rendered as Markdown, plus the answer being streamed.

Recorded messages are rendered once per load (what is shown is what the core recorded). The answer that is
still streaming lives in a "live region" at the end of the document: its parts are owned by the chat pane
(which appends deltas to the list it passed in) and only that region is re-rendered, coalesced by a timer,
so a fast token stream never re-lays out the whole thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QPoint, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QContextMenuEvent,
    QDesktopServices,
    QFontDatabase,
    QGuiApplication,
    QResizeEvent,
    QTextBlockFormat,
    QTextCursor,
    QTextFrameFormat,
)
from PySide6.QtWidgets import QFrame, QMenu, QTextBrowser, QWidget

from core.timeline.sessions import TranscriptEntry
from ui.widgets.doc_writer import DocWriter
from ui.widgets.memory_citations import MEMORY_PART, items_of, write_memories
from ui.widgets.policy_format import LABEL_HELP, badge_label, label_color
from ui.widgets.transcript_format import Colors, Notice, Part, meta_line, tool_line
from ui.widgets.transcript_format import paragraphs as _paragraphs

LIVE_RENDER_MS = 40
COLUMN = 860  # widest text column: long lines are hard to read on a wide window


@dataclass(frozen=True)
class _Range:
    """Where one message sits in the document, and its raw text (what "Copy message" copies)."""

    start: int
    end: int
    index: int  # position in the transcript; -1 for the live answer
    text: str


class MessageView(QTextBrowser):
    regenerateRequested = Signal()
    copied = Signal(str)  # the text put on the clipboard

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.document().setDocumentMargin(18)
        self.anchorClicked.connect(self._on_anchor)
        self._entries: list[TranscriptEntry] = []
        self._ranges: list[_Range] = []
        self._results: dict[str | None, str] = {}
        self._memories: dict[int, list[dict[str, Any]]] = {}  # answer index -> memories recalled for its turn
        self._called: set[str] = set()
        self._last_assistant = -1
        self._can_regenerate = True
        self.default_label = "internal"  # policy.default_label: a question labelled otherwise shows a badge
        self._live: list[Part] | None = None
        self._live_start = 0
        self._frozen: list[Part] | None = None  # live units already written, up to `_frozen_end`
        self._frozen_end = 0
        self._colors = Colors.from_palette(self.palette())
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()
        self._w = DocWriter(self.document(), self._colors, self.font().pointSizeF(), mono)
        self._menu: QMenu | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(LIVE_RENDER_MS)
        self._timer.timeout.connect(self._render_live)
        self._write_empty()

    # --- what the pane calls -------------------------------------------------------------------

    def show_transcript(
        self,
        entries: list[TranscriptEntry],
        notice: Notice | None = None,
        live: list[Part] | None = None,
        memories: dict[int, list[dict[str, Any]]] | None = None,
    ) -> None:
        """Render a whole thread; `live` (by reference) is the answer still streaming, if any; `memories` the
        memories each answer's turn recalled (`memory_format.answer_memories`), listed under that answer."""
        stick, scrolled = self._at_bottom(), self.verticalScrollBar().value()
        self._timer.stop()
        self._entries, self._live, self._ranges = list(entries), live, []
        self._memories = dict(memories or {})
        self._results = {e.message.tool_call_id: e.message.content for e in entries if e.message.role == "tool"}
        self._called = {call.id for e in entries for call in e.message.tool_calls}
        self._last_assistant = max((i for i, e in enumerate(entries) if e.message.role == "assistant"), default=-1)
        self._colors = self._w.colors = Colors.from_palette(self.palette())
        self.document().clear()
        self._frozen = None
        self._fit_column()
        if not entries and notice is None and live is None:
            self._write_empty()
            self._live_start = 0  # a live answer started later replaces the hint
            return
        for index, entry in enumerate(self._entries):
            self._write_entry(index, entry)
        if notice is not None:
            self._write_notice(notice)
        self._live_start = self._w.end().position()
        if live is not None:
            self._render_live()
        self._restore_scroll(stick, scrolled)

    def add_pending_user(self, text: str, label: str | None = None) -> None:
        """Show a just-sent question at once (with the label chosen for it); the reload after the turn starts
        replaces it with the record."""
        if not self._entries and not self._ranges:
            self.document().clear()
        self._cut_live()
        self._write_user(len(self._entries), text, label)
        self._live_start = self._w.end().position()
        self.scroll_to_bottom()

    def set_live(self, live: list[Part] | None) -> None:
        """Start (or drop) the streaming region at the end of the thread."""
        self._live = live
        self._render_live()

    def live_changed(self) -> None:
        """The live parts grew: re-render the live region soon, once for however many deltas arrive."""
        if self._live is not None and not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Render pending streamed text now (before reading the view's text)."""
        if self._timer.isActive():
            self._timer.stop()
            self._render_live()

    def has_messages(self) -> bool:
        """Anything recorded (or just sent) in the shown thread."""
        return bool(self._entries) or any(r.index >= 0 for r in self._ranges)

    def set_regenerate_enabled(self, enabled: bool) -> None:
        """Off while a turn runs: the core refuses a second turn in the same thread anyway."""
        self._can_regenerate = enabled

    def last_answer(self) -> str | None:
        answers = [e.message.content for e in self._entries if e.message.role == "assistant" and e.message.content]
        return answers[-1] if answers else None

    def message_text_at(self, pos: QPoint) -> str | None:
        """The raw text of the message under a viewport point (what "Copy message" copies)."""
        position = self.cursorForPosition(pos).position()
        for item in self._ranges:
            if item.start <= position <= item.end:
                return item.text
        return None

    def copy_text(self, text: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self.copied.emit(text)

    def copy_last_answer(self) -> bool:
        answer = self.last_answer()
        if answer is not None:
            self.copy_text(answer)
        return answer is not None

    def reveal(self, index: int, term: str = "") -> bool:
        """Scroll to message `index` and select the first `term` in it (search results land here)."""
        target = next((r for r in self._ranges if r.index >= index), None)
        if target is None:
            return False
        cursor = QTextCursor(self.document())
        cursor.setPosition(target.start)
        if term:
            found = self.document().find(term, target.start)
            if not found.isNull() and found.selectionStart() <= target.end:
                cursor = found
        self.setTextCursor(cursor)
        self.ensureCursorVisible()
        return True

    def scroll_to_bottom(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    # --- Qt overrides ----------------------------------------------------------------------------

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        """The standard menu plus per-message actions; shown with popup() so no nested event loop runs."""
        menu = self.createStandardContextMenu(event.pos())
        menu.setParent(self, menu.windowFlags())
        menu.addSeparator()
        text = self.message_text_at(event.pos())
        copy = menu.addAction("Copy message")
        copy.setEnabled(text is not None)
        copy.triggered.connect(lambda: self.copy_text(text or ""))
        menu.addAction("Copy answer", self.copy_last_answer).setEnabled(self.last_answer() is not None)
        regenerate = menu.addAction("Regenerate answer", self.regenerateRequested.emit)
        regenerate.setEnabled(self._can_regenerate and self._live is None and self.has_messages())
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._menu = menu
        menu.popup(event.globalPos())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_column()

    def loadResource(self, kind: int, name: QUrl) -> object:
        """Never fetch images or files named by a model's Markdown."""
        return None

    # --- rendering -------------------------------------------------------------------------------

    def _fit_column(self) -> None:
        """Centre the text in a column at most COLUMN wide (side margins on the root frame)."""
        side = max(self.document().documentMargin(), (self.viewport().width() - COLUMN) / 2)
        fmt = self.document().rootFrame().frameFormat()
        if fmt.leftMargin() != side:
            fmt.setLeftMargin(side)
            fmt.setRightMargin(side)
            self.document().rootFrame().setFrameFormat(fmt)

    def _restore_scroll(self, stick: bool, value: int) -> None:
        """Follow the end while the reader is at it; otherwise stay where they scrolled to."""
        if stick:
            self.scroll_to_bottom()
        else:
            self.verticalScrollBar().setValue(value)

    def _at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 40

    def _write_empty(self) -> None:
        cursor = self._w.end()
        fmt = QTextBlockFormat()
        fmt.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        fmt.setTopMargin(60)
        cursor.setBlockFormat(fmt)
        cursor.insertText("Ask anything — the answer streams in here.", self._w.char(muted=True))

    def _write_entry(self, index: int, entry: TranscriptEntry) -> None:
        message = entry.message
        if message.role == "user":
            self._write_user(index, message.content, entry.label)
        elif message.role == "assistant":
            self._write_assistant(index, entry)
        elif message.role == "tool" and message.tool_call_id not in self._called:
            line, tip = tool_line(message.name or "tool", "", message.content)
            self._write_tool(index, line, tip, message.content)

    def _write_user(self, index: int, text: str, label: str | None = None) -> None:
        cursor = self._w.end()
        if cursor.position() == 0:  # the document's first, empty paragraph would sit above the frame
            self._w.squash(cursor)
        frame_fmt = QTextFrameFormat()
        frame_fmt.setBackground(self._colors.user_bg)
        frame_fmt.setPadding(10)
        frame_fmt.setTopMargin(10)
        frame_fmt.setBottomMargin(4)
        frame = cursor.insertFrame(frame_fmt)
        cursor.insertText("You", self._w.char(bold=True, muted=True, small=True))
        badge = badge_label(label, self.default_label)
        if badge is not None:
            self._w.badge(cursor, badge, label_color(badge), f"Sent labelled {LABEL_HELP[badge]}")
        self._w.block(cursor)
        self._w.markdown(cursor, text)
        self._ranges.append(_Range(frame.firstPosition(), frame.lastPosition(), index, text))

    def _write_assistant(self, index: int, entry: TranscriptEntry) -> None:
        cursor = self._w.end()
        start = cursor.position()
        previous = self._entries[index - 1].message.role if index else "user"
        if previous == "user":
            self._w.block(cursor, self._w.char(bold=True), top=12)
            cursor.insertText("Shoal")
        for call in entry.message.tool_calls:
            result = self._results.get(call.id)
            line, tip = tool_line(call.name, call.arguments, result)
            self._write_tool(index, line, tip, tip)
            cursor = self._w.end()
        if entry.message.content:
            self._w.block(cursor, top=4)
            self._w.markdown(cursor, entry.message.content)
            write_memories(self._w, self._memories.get(index, []))
            self._write_footer(index, entry)
        if entry.message.content:
            self._ranges.append(_Range(start, self._w.end().position(), index, entry.message.content))

    def _write_tool(self, index: int, line: str, tip: str, copy: str) -> None:
        cursor = self._w.end()
        start = cursor.position()
        fmt = self._w.char(muted=True, small=True)
        fmt.setToolTip(tip)
        self._w.block(cursor, fmt, top=2)
        cursor.insertText(line, fmt)
        if index >= 0:
            self._ranges.append(_Range(start, cursor.position(), index, copy))

    def _write_footer(self, index: int, entry: TranscriptEntry) -> None:
        """Model, token figures and timing under an answer, with Copy (and Regenerate on the last one)."""
        cursor = self._w.end()
        muted = self._w.char(muted=True, small=True)
        self._w.block(cursor, muted, top=4)
        cursor.insertText(meta_line(entry) + "   ", muted)
        self._w.link(cursor, "Copy", f"shoal:copy/{index}")
        if index == self._last_assistant:
            cursor.insertText("  ·  ", muted)
            self._w.link(cursor, "Regenerate", "shoal:regenerate")

    def _write_notice(self, notice: Notice) -> None:
        cursor = self._w.end()
        error = notice.kind == "error"
        fmt = self._w.char(muted=not error)
        if error:
            fmt.setForeground(self._colors.error)
        self._w.block(cursor, fmt, top=10)
        block = QTextBlockFormat()
        block.setTopMargin(10)
        if error:
            block.setBackground(self._colors.error_bg)
        cursor.setBlockFormat(block)
        prefix = "⚠ " if error else ""
        cursor.insertText(prefix + notice.text.replace("\n", "\u2028"), fmt)

    # --- the live answer ---------------------------------------------------------------------------

    def _cut_live(self) -> QTextCursor:
        self._frozen = None
        cursor = QTextCursor(self.document())
        cursor.setPosition(min(self._live_start, self._w.end().position()))
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        self._ranges = [r for r in self._ranges if r.index >= 0]
        return cursor

    def _render_live(self) -> None:
        """Render the live answer incrementally: finished paragraphs and tool lines are written once
        ("frozen"); only the paragraph still growing is re-rendered, so the cost per repaint stays small
        however long the answer gets."""
        stick, scrolled = self._at_bottom(), self.verticalScrollBar().value()
        if self._live is None:
            self._cut_live()
            return
        units = _live_units(self._live)
        settled, tail = units[:-1], units[-1:]
        frozen = self._frozen
        if frozen is None or settled[: len(frozen)] != frozen or self._frozen_end > self._w.end().position():
            cursor = self._cut_live()  # first render, or something already written changed: start over
            self._w.block(cursor, self._w.char(bold=True), top=12)
            cursor.insertText("Shoal")
            if not self._live:
                self._w.block(cursor, self._w.char(muted=True))
                cursor.insertText("…", self._w.char(muted=True))
            frozen = []
        else:
            self._cut_from(self._frozen_end)
        for unit in settled[len(frozen) :]:
            self._write_unit(unit)
        # the "…" placeholder of an answer with nothing yet must go once text arrives: freeze nothing then
        self._frozen, self._frozen_end = (list(settled) if self._live else None), self._w.end().position()
        for unit in tail:
            self._write_unit(unit)
        write_memories(self._w, items_of(self._live))
        text = "".join(value for kind, value in units if kind == "text")
        self._ranges = [r for r in self._ranges if r.index >= 0]
        self._ranges.append(_Range(self._live_start, self._w.end().position(), -1, text))
        self._restore_scroll(stick, scrolled)

    def _write_unit(self, unit: Part) -> None:
        kind, value = unit
        if kind == "tool":
            self._write_tool(-1, value, value, value)
            return
        cursor = self._w.end()
        self._w.block(cursor)
        self._w.markdown(cursor, value)

    def _cut_from(self, position: int) -> None:
        cursor = QTextCursor(self.document())
        cursor.setPosition(min(position, self._w.end().position()))
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()

    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() in ("http", "https", "mailto"):  # never file: links a model wrote
            QDesktopServices.openUrl(url)
            return
        if url.scheme() != "shoal":
            return
        action, _, arg = url.path().partition("/")
        if action == "copy" and arg.isdigit() and int(arg) < len(self._entries):
            self.copy_text(self._entries[int(arg)].message.content)
        elif action == "regenerate" and self._can_regenerate:
            self.regenerateRequested.emit()


def _live_units(live: list[Part]) -> list[Part]:
    """Tool lines and text paragraphs, in order: the units the live region is written in."""
    units: list[Part] = []
    for kind, value in live:
        if kind != MEMORY_PART:  # listed after the answer, not where the event arrived
            units += [("text", p) for p in _paragraphs(value)] if kind == "text" else [(kind, value)]
    return units or [("text", "")]
