"""The timeline pane: every step of every turn, live, as a tree by trace, with the full record of any step.

The pane shows one scope: the chat's current thread, or all threads. A reload (scope change, Refresh) reads
recent traces from the bridge; everything else arrives through `Bridge.timelineEvent` and is inserted one row
at a time. Events that arrive while a reload is in flight are held and applied after it, so none is lost and
none is shown twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QPushButton, QSplitter, QVBoxLayout, QWidget

from core.timeline.store import Event
from ui.bridge import Bridge
from ui.tasks import spawn
from ui.widgets.event_detail import EventDetail
from ui.widgets.event_format import FILTERS
from ui.widgets.trace_tree import TraceTree

log = logging.getLogger(__name__)

THIS_THREAD, ALL_THREADS = "This thread", "All threads"


class TimelinePane(QWidget):
    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._session: str | None = None
        self._started = False
        self._loading = False
        self._generation = 0
        self._held: list[Event] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.tree = TraceTree(self)
        self.detail = EventDetail(self)
        self._build()
        self.tree.eventSelected.connect(self._on_selected)
        self.tree.walkRequested.connect(lambda event_id: self._run(self.walk_to_origin(event_id)))
        bridge.timelineEvent.connect(self._on_live)

    def _build(self) -> None:
        self.scope_combo = QComboBox(self)
        self.scope_combo.addItems([THIS_THREAD, ALL_THREADS])
        self.scope_combo.setToolTip("Show the current chat thread's turns, or every thread's")
        self.scope_combo.currentTextChanged.connect(lambda _text: self._schedule_reload())
        self.filter_combo = QComboBox(self)
        self.filter_combo.addItems(FILTERS)
        self.filter_combo.setToolTip("Show only one kind of step (their causes stay visible, greyed)")
        self.filter_combo.currentTextChanged.connect(self.tree.set_filter)
        self.walk_button = QPushButton("Walk back to origin", self)
        self.walk_button.setToolTip("Highlight the chain of steps that led to the selected one, up to the message")
        self.walk_button.setEnabled(False)
        self.walk_button.clicked.connect(self._walk_current)
        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.clicked.connect(self._schedule_reload)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        for widget in (self.scope_combo, self.filter_combo):
            bar.addWidget(widget)
        bar.addStretch(1)
        bar.addWidget(self.walk_button)
        bar.addWidget(self.refresh_button)
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(self.tree)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(bar)
        layout.addWidget(self.splitter, 1)

    # --- public API ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the recent turns of the current scope; live events are shown from then on."""
        self._started = True
        await self.reload()

    def set_session(self, session_id: str | None) -> None:
        """The chat's thread changed (None: no thread, show all). Reloads only if the shown scope changes."""
        before = self.scope()
        self._session = session_id
        if self.scope() != before:
            self._schedule_reload()

    def select_event(self, event_id: str) -> None:
        """Show one event: select its row, or load its turn first if it is in scope but not shown."""
        if not self.tree.select(event_id):
            self._run(self._reveal(event_id))

    def scope(self) -> str | None:
        """The session shown, or None for all sessions."""
        return self._session if self.scope_combo.currentText() == THIS_THREAD else None

    async def reload(self) -> None:
        """Rebuild the tree from the bridge. A newer reload supersedes an older one still awaiting."""
        if not self._started:
            return
        self._generation += 1
        generation, scope = self._generation, self.scope()
        self._loading = True
        try:
            traces = await self.bridge.traces(scope)
        except Exception:
            log.warning("could not load the timeline", exc_info=True)
            traces = []
        if generation != self._generation:
            return
        held, self._held, self._loading = self._held, [], False
        self.tree.load(traces)
        for event in held:
            if self._in_scope(event):  # held during an older reload of another scope
                self.tree.add_event(event)
        self.detail.show_event(None)

    async def walk_to_origin(self, event_id: str) -> None:
        """Highlight the chain of causes from `event_id` to its user message, list it, and select the origin."""
        chain = await self.bridge.walk_to_origin(event_id)
        self.tree.highlight(e.id for e in chain)
        if chain:
            self.tree.select(chain[-1].id)
        self.detail.show_chain(chain)

    # --- reactions -----------------------------------------------------------------------------

    def _in_scope(self, event: Event) -> bool:
        scope = self.scope()
        return scope is None or event.session_id == scope

    def _on_live(self, event: Event) -> None:
        if not self._started or not self._in_scope(event):
            return
        if self._loading:
            self._held.append(event)
        else:
            self.tree.add_event(event)

    def _on_selected(self, event: Event | None) -> None:
        self.walk_button.setEnabled(event is not None)
        self.detail.show_event(event)

    def _walk_current(self) -> None:
        event = self.tree.current_event()
        if event is not None:
            self._run(self.walk_to_origin(event.id))

    async def _reveal(self, event_id: str) -> None:
        event = await self.bridge.get_event(event_id)
        if event is None:
            return
        if self._in_scope(event) and not self.tree.has_trace(event.trace_id):
            self.tree.add_trace(await self.bridge.trace(event.trace_id))
        if not self.tree.select(event_id):
            self.detail.show_event(event)  # outside the shown scope: show it without its row

    # --- plumbing ------------------------------------------------------------------------------

    def _schedule_reload(self) -> None:
        self._run(self.reload())

    def _run(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` on the loop (failures are logged by `spawn`); `settle` can wait for it."""
        task = spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for scheduled reloads and walks (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
