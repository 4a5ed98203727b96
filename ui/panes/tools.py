"""The tools pane: approvals the agent is waiting on (on top, where they are seen) and the tool registry.

Everything goes through the bridge: the table and the queue refresh on `toolsChanged` and
`approvalsChanged`, switches call `set_tool_enabled`, and card buttons call `resolve_approval`.
`pendingCountChanged` lets the window raise this pane or show a badge when a question arrives.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from core.tools.registry import ApprovalDecision
from ui.bridge import Bridge
from ui.tasks import spawn
from ui.widgets.approval_queue import ApprovalQueue
from ui.widgets.tool_table import ToolTable

log = logging.getLogger(__name__)


class ToolsPane(QWidget):
    pendingCountChanged = Signal(int)

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._pending_count = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.queue = ApprovalQueue(self)
        self.table = ToolTable(self)
        self.queue_title = QLabel(self)
        self.tools_title = QLabel(self)
        self._build()
        self.table.toggled.connect(bridge.set_tool_enabled)
        self.queue.decided.connect(self._resolve)
        bridge.toolsChanged.connect(self.refresh_tools)
        bridge.approvalsChanged.connect(self.refresh_approvals)
        self._set_titles()

    def _build(self) -> None:
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(_section(self.queue_title, self.queue))
        self.splitter.addWidget(_section(self.tools_title, self.table))
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.splitter)

    def _fit_queue(self, *, grow_only: bool = False) -> None:
        """Give waiting cards the room they need (their buttons must never be cut off); an empty queue shrinks.
        With `grow_only` (on resize) a queue the person made larger by hand keeps its size."""
        sizes = self.splitter.sizes()
        total = sum(sizes)
        if total <= 0:
            return
        want = self.queue_title.sizeHint().height() + self.queue.widget().sizeHint().height() + 12
        want = min(want, int(total * 0.75) if self._pending_count else total // 3)
        if not grow_only or sizes[0] < want:
            self.splitter.setSizes([want, total - want])

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._pending_count:
            self._fit_queue(grow_only=True)

    # --- public API ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.refresh()
        self._fit_queue()

    def refresh(self) -> None:
        self.refresh_tools()
        self.refresh_approvals()

    def refresh_tools(self) -> None:
        self.table.set_rows(self.bridge.tools())
        self._set_titles()

    def refresh_approvals(self) -> None:
        """Match the cards to the broker; tell the window when the number waiting changes."""
        pending = self.bridge.pending_approvals()
        if self.queue.sync(pending):
            self._run(self._name_sessions())
        changed = len(pending) != self._pending_count
        self._pending_count = len(pending)
        self._set_titles()
        if changed:
            QTimer.singleShot(0, self._fit_queue)  # once the new card is polished and laid out
            self.pendingCountChanged.emit(self._pending_count)

    def pending_count(self) -> int:
        return self._pending_count

    async def settle(self) -> None:
        """Wait for background look-ups (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- reactions -----------------------------------------------------------------------------

    def _resolve(self, approval_id: str, decision: ApprovalDecision) -> None:
        if not self.bridge.resolve_approval(approval_id, decision):
            self.refresh_approvals()  # answered elsewhere or withdrawn (the turn stopped): drop the card

    async def _name_sessions(self) -> None:
        """Cards first show a session id; replace it with the thread's title once known."""
        sessions = await self.bridge.sessions()
        self.queue.set_session_titles({s.id: s.title for s in sessions if s.title})

    def _set_titles(self) -> None:
        waiting = self._pending_count
        self.queue_title.setText(f"<b>Waiting for approval</b> ({waiting})" if waiting else "<b>Approvals</b>")
        rows = self.bridge.tools()
        enabled = sum(r.enabled for r in rows)
        self.tools_title.setText(f"<b>Tools</b> ({enabled} of {len(rows)} on) · hover a tool for its arguments")

    def _run(self, coro: Any) -> None:
        task = spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _section(title: QLabel, body: QWidget) -> QWidget:
    """A bold heading over a widget: splitter halves that read as two parts of one pane."""
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 4)
    layout.setSpacing(4)
    layout.addWidget(title)
    layout.addWidget(body, 1)
    return box
