"""The group dashboard: who is idle, who is on which task (step n of m, elapsed time), and this agent's tasks.

Two tables from `bridge.group` (plain rows from core/group/taskviews.py): the members, rebuilt on every
(coalesced) roster change, since each card carries the tasks its agent works on; and this agent's latest
group tasks, reloaded shortly after one of their envelopes is recorded (a request, accepted, a step, a
result). Elapsed times tick every second on this machine's clock, from when the card or list was read, so a
peer's clock never shows here. `docs/coordination.md` says what the columns mean.
"""

from __future__ import annotations

import time
from enum import IntEnum
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid

from ui.bridge import Bridge
from ui.tasks import spawn

TICK_MS = 1000
RELOAD_MS = 300  # envelopes of one task come in bursts: one reload per burst, at most this late
TASK_EVENTS = ("shoal.task.request", "shoal.task.progress", "shoal.task.result")
BUSY, IDLE = "#d97706", "#2e9d3a"
FINAL = ("ok", "error", "expired", "refused", "cancelled", "unanswered")


class M(IntEnum):
    NAME = 0
    STATE = 1
    TASK = 2
    STEP = 3
    ELAPSED = 4


class T(IntEnum):
    ID = 0
    SKILL = 1
    STATUS = 2
    ASSIGNEE = 3
    REQUESTER = 4
    STEP = 5
    ELAPSED = 6


def elapsed_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}:{whole % 60:02d}"
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def step_text(step: int | None, steps: int | None, message: str = "") -> str:
    if step is None:
        return "—"
    text = f"{step}/{steps}" if steps else str(step)
    return f"{text} · {message}" if message else text


class GroupDashboard(QWidget):
    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.member_rows: list[Any] = []  # MemberRow, as shown
        self.task_rows: list[Any] = []  # TaskView, as shown
        self._tasks_read_at = time.monotonic()
        self._reading = False  # a read of the task list is under way
        self._stale = False  # something changed while it was: read again
        self.summary = QLabel()
        self.members = _table(["Member", "State", "Task", "Step", "Elapsed"], stretch=M.TASK)
        self.tasks_label = QLabel("<b>This agent's tasks</b>")
        self.tasks = _table(["Task", "Skill", "Status", "Assignee", "Requester", "Step", "Elapsed"], stretch=T.STEP)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.summary)
        layout.addWidget(self.members, 1)
        layout.addWidget(self.tasks_label)
        layout.addWidget(self.tasks, 1)
        self._tick = QTimer(self)
        self._tick.setInterval(TICK_MS)
        self._tick.timeout.connect(self.tick)
        self._reload = QTimer(self)
        self._reload.setSingleShot(True)
        self._reload.setInterval(RELOAD_MS)
        self._reload.timeout.connect(lambda: spawn(self.refresh_tasks()))
        bridge.group.rosterChanged.connect(self.refresh_members)
        bridge.group.groupState.connect(self._on_state)
        bridge.timelineEvent.connect(self._on_event)

    async def start(self) -> None:
        """The core has started: fill both tables and start the clock."""
        self.refresh_members()
        await self.refresh_tasks()
        self._tick.start()

    # --- members -------------------------------------------------------------------------------

    def refresh_members(self) -> None:
        """Rebuilt from the cards; the task list follows too (it shows the live steps cards carry)."""
        self.member_rows = self.bridge.group.dashboard_members()
        if self._tick.isActive():
            self._schedule_reload()
        busy = sum(row.status == "busy" for row in self.member_rows)
        if self.bridge.group.group_state().state == "off":
            self.summary.setText("Group mode is off: only this agent's past group tasks are listed.")
        else:
            count = len(self.member_rows)
            self.summary.setText(f"{count} member{'s' * (count != 1)} · {busy} busy · {count - busy} idle")
        self.members.setRowCount(len(self.member_rows))
        for n, row in enumerate(self.member_rows):
            current = row.current
            name = row.name + ("  (this agent)" if row.isself else "")
            more = f" (+{len(row.tasks) - 1} more)" if len(row.tasks) > 1 else ""
            task = f"{current.skill or 'task'} {current.taskid[:8]} for {current.requester}{more}" if current else "—"
            step = step_text(current.step, current.steps, current.message) if current else "—"
            _set_row(
                self.members, n, [name, row.status, task, step, elapsed_text(current.elapsed() if current else None)]
            )
            self.members.item(n, M.STATE).setForeground(QColor(BUSY if row.status == "busy" else IDLE))
            if current is not None:
                self.members.item(n, M.TASK).setToolTip(f"task {current.taskid}\nstarted {current.startedat}")

    # --- this agent's tasks --------------------------------------------------------------------

    async def refresh_tasks(self) -> None:
        """One read at a time; a change meanwhile reads again once it is answered (so every answer is shown,
        and a slow database cannot leave the list behind for good)."""
        if self._reading:
            self._stale = True
            return
        self._reading = True
        try:
            while True:
                self._stale = False
                rows = await self.bridge.group.dashboard_tasks()
                if not isValid(self):
                    return  # the window closed while the database answered
                self._show_tasks(rows)
                if not self._stale:
                    return
        finally:
            if isValid(self):
                self._reading = False

    def _show_tasks(self, rows: list[Any]) -> None:
        self.task_rows = rows
        self._tasks_read_at = time.monotonic()
        self.tasks.setRowCount(len(self.task_rows))
        for n, task in enumerate(self.task_rows):
            cells = [task.taskid[:12], task.skill or "—", task.status, task.assignee or "—", task.requester or "—",
                     step_text(task.step, task.steps, task.message), elapsed_text(task.elapsed_s)]  # fmt: skip
            _set_row(self.tasks, n, cells)
            self.tasks.item(n, T.ID).setToolTip(f"{task.taskid}\n{task.input[:300]}")
        self.tasks_label.setText(f"<b>This agent's tasks</b> ({len(self.task_rows)})")

    def _on_state(self, _state: str, _detail: str) -> None:
        self.refresh_members()

    def _on_event(self, event: Any) -> None:
        if event.kind in ("group.sent", "group.received") and event.name in TASK_EVENTS:
            self._schedule_reload()

    def _schedule_reload(self) -> None:
        """One reload at most RELOAD_MS after the first change of a burst; a timer restarted on every change
        would never fire while cards and envelopes keep coming (a busy group), leaving the list stale."""
        if not self._reload.isActive():
            self._reload.start()

    # --- the clock -----------------------------------------------------------------------------

    def tick(self) -> None:
        """Elapsed times move on between updates: members' current tasks, and this agent's running tasks."""
        now = time.monotonic()
        for n, row in enumerate(self.member_rows[: self.members.rowCount()]):
            if row.current is not None:
                self.members.item(n, M.ELAPSED).setText(elapsed_text(row.current.elapsed(now)))
        for n, task in enumerate(self.task_rows[: self.tasks.rowCount()]):
            if task.status not in FINAL and task.elapsed_s is not None:
                self.tasks.item(n, T.ELAPSED).setText(elapsed_text(task.elapsed_s + now - self._tasks_read_at))


def _table(headers: list[str], *, stretch: int) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setWordWrap(False)
    table.verticalHeader().hide()
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    return table


def _set_row(table: QTableWidget, row: int, cells: list[str]) -> None:
    for col, text in enumerate(cells):
        item = table.item(row, col)
        if item is None:
            table.setItem(row, col, QTableWidgetItem(text))
        else:
            item.setText(text)
            item.setToolTip("")
