"""The chat pane: threads on the left, the shown thread's transcript, and the composer.

It owns the per-thread state of running turns (the streamed parts, a failed turn's error) so a person can
switch threads mid-answer and come back to the answer still streaming. Everything else is read from the
bridge: the transcript is reloaded when a turn starts and ends, so what is shown is what was recorded.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core import events as ev
from core.errors import ShoalError, classify
from ui.bridge import Bridge
from ui.dialogs.search import SearchDialog
from ui.tasks import spawn
from ui.widgets.composer import Composer
from ui.widgets.find_bar import FindBar
from ui.widgets.live_turns import LiveTurns
from ui.widgets.memory_citations import live_part
from ui.widgets.memory_format import answer_memories
from ui.widgets.message_view import MessageView
from ui.widgets.thread_list import ThreadList
from ui.widgets.transcript_format import Notice

SIDEBAR_WIDTH = 220
STATUS_MS = 8000


class ChatPane(QWidget):
    sessionSelected = Signal(str)  # the shown thread changed
    transcriptShown = Signal(str)  # the shown thread was (re)rendered from the record

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._session_id: str | None = None
        self._live = LiveTurns()  # per thread with a running turn: what has streamed so far
        self._recorded: set[str] = set()  # threads whose running turn has started (its question is on record)
        self._notices: dict[str, Notice] = {}  # per thread: how its last turn failed or stopped
        self._generation = 0
        self._search: SearchDialog | None = None
        self.threads = ThreadList(bridge, self)
        self.view = MessageView(self)
        self.find_bar = FindBar(self.view, self)
        self.composer = Composer(lambda: bridge.core.settings.tools.workspace_path(), self)
        self.title_label = QLabel("", self)
        self.status = QLabel("", self)
        self._status_timer = QTimer(self)
        self._status_timer.setSingleShot(True)
        self._status_timer.timeout.connect(lambda: self.show_status(""))
        self._build()
        self._connect()

    # --- layout ----------------------------------------------------------------------------------

    def _build(self) -> None:
        title_font = QFont(self.title_label.font())
        title_font.setPointSizeF(title_font.pointSizeF() + 1.5)
        title_font.setWeight(QFont.Weight.DemiBold)
        self.title_label.setFont(title_font)
        self.title_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        header = QHBoxLayout()
        header.setContentsMargins(18, 8, 10, 6)
        header.addWidget(self.title_label, 1)
        header.addWidget(self._tool_button("Find", "Find in this thread (Ctrl+F)", self.show_find))
        header.addWidget(self._tool_button("Search", "Search all threads (Ctrl+Shift+F)", self.show_search))
        export = self._tool_button("Export", "Save this thread as Markdown or JSON", None)
        menu = QMenu(export)
        menu.addAction("As Markdown…", lambda: self._export_dialog("markdown"))
        menu.addAction("As JSON…", lambda: self._export_dialog("json"))
        export.setMenu(menu)
        export.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        header.addWidget(export)
        self.status.setWordWrap(True)
        self.status.setContentsMargins(18, 2, 18, 2)
        self.status.hide()
        chat = QWidget(self)
        column = QVBoxLayout(chat)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addLayout(header)
        column.addWidget(_line(chat))
        column.addWidget(self.find_bar)
        column.addWidget(self.view, 1)
        column.addWidget(self.status)
        column.addWidget(_line(chat))
        column.addWidget(self.composer)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.threads)
        splitter.addWidget(chat)
        splitter.setChildrenCollapsible(False)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([SIDEBAR_WIDTH, 800])
        self.threads.setMinimumWidth(160)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(splitter)

    def _tool_button(self, text: str, tip: str, slot: object) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setToolTip(tip)
        button.setAutoRaise(True)
        if slot is not None:
            button.clicked.connect(slot)
        return button

    def _connect(self) -> None:
        bridge = self.bridge
        bridge.turnStarted.connect(self._on_turn_started)
        bridge.assistantDelta.connect(self._on_delta)
        bridge.agentEvent.connect(self._on_event)
        bridge.turnEnded.connect(self._on_turn_ended)
        bridge.busyChanged.connect(self._on_busy)
        bridge.errorRaised.connect(self._on_error)
        self.threads.sessionActivated.connect(lambda sid: spawn(self.open_session(sid)))
        self.threads.newRequested.connect(lambda: spawn(self.new_thread()))
        self.threads.sessionDeleted.connect(self._on_deleted)
        self.threads.failed.connect(lambda text: self.show_status(text, error=True))
        self.threads.refreshed.connect(self._update_title)
        self.view.regenerateRequested.connect(self.regenerate)
        self.view.copied.connect(lambda _text: self.show_status("Copied to the clipboard."))
        self.composer.sendRequested.connect(self._send)
        self.composer.stopRequested.connect(self.stop)
        bridge.policy.changed.connect(self._sync_labels)

    # --- public API --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the threads and show the most recently active one (or a fresh thread when there are none)."""
        self._sync_labels()
        sessions = await self.threads.refresh()
        if sessions:
            await self.open_session(max(sessions, key=lambda s: s.updated_at).id)
        else:
            await self.new_thread()

    def current_session_id(self) -> str | None:
        return self._session_id

    async def open_session(self, session_id: str) -> None:
        changed = session_id != self._session_id
        self._session_id = session_id
        self.threads.set_current(session_id)
        self.composer.set_busy(self.bridge.is_busy(session_id))
        self.composer.labels.show_session(session_id)  # each thread keeps its own label
        self._update_title()
        if changed:
            self.sessionSelected.emit(session_id)
        await self.reload()
        if changed:
            self.view.scroll_to_bottom()
            self.composer.input.setFocus()

    async def new_thread(self) -> None:
        """Open a new thread, unless the shown one is still empty (then that one is the new thread)."""
        sid = self._session_id
        if sid is not None and not self.view.has_messages() and sid not in self._live:
            self.composer.labels.set_label(None)  # a new thread starts at auto, even when it is this one
            self.composer.input.setFocus()
            return
        info = await self.bridge.new_session()
        await self.threads.refresh()
        await self.open_session(info.id)

    def ask(self, text: str) -> None:
        """Send `text` as if typed (quick-ask's "open in main window"); a busy thread gets a new one instead."""
        if self._session_id is not None and self.bridge.is_busy(self._session_id):
            spawn(self._send_in_new_thread(text))
            return
        self.composer.set_text(text)
        self.composer.submit()

    def stop(self) -> None:
        if self._session_id is not None:
            self.bridge.stop(self._session_id)

    def regenerate(self) -> bool:
        """Answer the shown thread's last question again (the old answer is dropped by the core)."""
        sid = self._session_id
        if sid is None or self.bridge.is_busy(sid) or not self.view.has_messages():
            return False
        return self._start_turn(sid, "", regenerate=True)

    def show_find(self) -> None:
        self.find_bar.open_bar()

    def show_search(self) -> SearchDialog:
        if self._search is None:
            self._search = SearchDialog(self.bridge, self)
            self._search.resultActivated.connect(lambda sid, seq, term: spawn(self.reveal(sid, seq, term)))
        self._search.open_with()
        return self._search

    async def reveal(self, session_id: str, seq: int, term: str) -> None:
        """Open a search hit's thread, scroll to its message and select the matched word."""
        await self.open_session(session_id)
        if self.view.reveal(seq - 1, term):  # sequence numbers count messages from 1
            self.find_bar.open_bar(term, from_top=False)

    async def export_current(self, fmt: str, path: str) -> None:
        """Write the shown thread as "markdown" or "json" to `path`."""
        if self._session_id is None:
            raise ValueError("No thread is shown.")
        text = await self.bridge.export(self._session_id, fmt)
        await asyncio.to_thread(Path(path).write_text, text, encoding="utf-8")
        self.show_status(f"Exported to {path}")

    async def reload(self) -> None:
        """Re-read the shown thread; a reload overtaken by a newer one (or a thread switch) is dropped."""
        sid = self._session_id
        if sid is None:
            return
        self._generation += 1
        generation = self._generation
        entries = await self.bridge.transcript(sid)
        turns = await self.bridge.memory.recalled_in(sid)
        if generation != self._generation or sid != self._session_id:
            return
        if sid in self._recorded and sid in self._live:
            # The live answer shows this turn's steps; a slow read (a remote server) may already hold some of
            # them, which would show twice: keep the record up to the turn's question.
            last_question = max((i for i, e in enumerate(entries) if e.message.role == "user"), default=-1)
            entries = entries[: last_question + 1]
        memories = answer_memories(entries, turns)
        self.view.show_transcript(entries, self._notices.get(sid), self._live.get(sid), memories)
        self.view.set_regenerate_enabled(not self.bridge.is_busy(sid))
        self.transcriptShown.emit(sid)

    def show_status(self, text: str, error: bool = False) -> None:
        """One line under the transcript: errors stay until the next message, notes fade after a while."""
        self.status.setText(text)
        self.status.setStyleSheet("color: #c62828;" if error else "color: palette(placeholder-text);")
        self.status.setVisible(bool(text))
        if text and not error:
            self._status_timer.start(STATUS_MS)
        else:
            self._status_timer.stop()

    # --- sending ---------------------------------------------------------------------------------------

    def _send(self, text: str) -> None:
        label = self.composer.label()
        if self._session_id is None:
            spawn(self._send_in_new_thread(text, label))
        else:
            self._start_turn(self._session_id, text, label=label)

    async def _send_in_new_thread(self, text: str, label: str | None = None) -> None:
        try:
            info = await self.bridge.new_session()
        except ShoalError:  # the bridge reported why (errorRaised)
            if text and not self.composer.text():
                self.composer.set_text(text)  # give the draft back rather than lose it
            return
        await self.open_session(info.id)
        if label:
            self.composer.labels.set_label(label)  # the label chosen for it goes with it to its thread
        self._start_turn(info.id, text, label=label)

    def _start_turn(self, sid: str, text: str, *, regenerate: bool = False, label: str | None = None) -> bool:
        task = self.bridge.regenerate(sid) if regenerate else self.bridge.send(sid, text, label=label)
        if task is None:
            if text and not self.composer.text():
                self.composer.set_text(text)  # give the draft back rather than lose it
            self.show_status("An answer is still running in this thread; stop it or wait.", error=True)
            return False
        self.show_status("")
        self._notices.pop(sid, None)
        parts = self._live.begin(sid)
        if sid == self._session_id:
            if not regenerate:
                self.view.add_pending_user(text, label)
            self.view.set_live(parts)
        return True

    # --- bridge signals --------------------------------------------------------------------------------

    def _on_turn_started(self, sid: str, _trace_id: str) -> None:
        if sid not in self._live:  # started elsewhere (quick ask): stream it here too
            self._live.begin(sid)
        self._recorded.add(sid)
        if sid == self._session_id:
            spawn(self.reload())  # the question is recorded now (and a regenerate has dropped the old answer)

    def _on_delta(self, sid: str, text: str) -> None:
        """Cheap on purpose: append to the thread's live parts; the view re-renders on its own timer."""
        if self._live.add_text(sid, text) and sid == self._session_id:
            self.view.live_changed()

    def _on_event(self, sid: str, event: object) -> None:
        if isinstance(event, ev.MemoryRecalled):  # listed under the answer as "Memories used: [1] …"
            parts = self._live.get(sid)
            if parts is not None:
                parts.append(live_part(event.items))
                if sid == self._session_id:
                    self.view.live_changed()
            return
        if self._live.add_event(sid, event) and sid == self._session_id:
            self.view.live_changed()

    def _on_turn_ended(self, sid: str, final: object) -> None:
        self._live.end(sid)
        self._recorded.discard(sid)
        if isinstance(final, ev.TurnFailed):
            self._notices[sid] = Notice.from_error(final.error)
        elif isinstance(final, ev.TurnFinished) and final.status == "max_iterations":
            self._notices[sid] = Notice("error", f"Stopped after {final.iterations} steps without a final answer.")
        elif isinstance(final, ev.TurnFinished) and final.status == "cancelled" and not final.text:
            self._notices[sid] = Notice("info", "Stopped before any answer.")
        if sid == self._session_id:
            spawn(self.reload())

    def _on_busy(self, sid: str, busy: bool) -> None:
        if sid == self._session_id:
            self.composer.set_busy(busy)
            self.view.set_regenerate_enabled(not busy)

    def _on_error(self, error: dict[str, str]) -> None:
        notice = Notice.from_error(error)
        self.show_status(notice.text.replace("\n", "  "), error=True)

    def _on_deleted(self, sid: str) -> None:
        self._live.end(sid)
        self._notices.pop(sid, None)
        if sid == self._session_id:
            self._session_id = None
            spawn(self.start())

    def _sync_labels(self) -> None:
        """The label picker and the badges follow the policy in force (default label; remote: the server's)."""
        policy = self.bridge.policy
        self.view.default_label = policy.default_label
        self.composer.set_label_policy(policy.default_label, remote=not policy.available)
        if self._session_id is not None:
            spawn(self.reload())  # badges show labels other than the default, which may have changed

    def _update_title(self) -> None:
        sid = self._session_id
        self.title_label.setText(self.threads.title_of(sid) if sid else "")

    # --- export ------------------------------------------------------------------------------------------

    def _export_dialog(self, fmt: str) -> None:
        """A normal (non-async) slot, so the static save dialog may run its own event loop here."""
        if self._session_id is None:
            return
        suffix = "md" if fmt == "markdown" else "json"
        name = re.sub(r"[^\w\- ]+", "", self.title_label.text()).strip() or "thread"
        start = str(self.composer.workspace / f"{name}.{suffix}")
        kind = "Markdown (*.md)" if fmt == "markdown" else "JSON (*.json)"
        path, _ = QFileDialog.getSaveFileName(self, "Export thread", start, kind)
        if path:
            spawn(self._export_reporting(fmt, path))

    async def _export_reporting(self, fmt: str, path: str) -> None:
        try:
            await self.export_current(fmt, path)
        except Exception as exc:
            self.show_status(f"Export failed: {classify(exc).describe()}", error=True)


def _line(parent: QWidget) -> QFrame:
    line = QFrame(parent)
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Plain)
    line.setStyleSheet("color: palette(midlight);")
    return line
