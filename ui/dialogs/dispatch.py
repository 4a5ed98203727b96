"""Dispatch a task to the group by hand: pick a skill (or one member), write the task, watch the answer stream.

The targets come from the live roster, so a person can only pick a skill somebody offers right now. The
answer is followed by a task the Stop button or closing the dialog cancels: that only stops watching (the
peer still finishes, and the result is in the timeline), so the window is never held by a slow peer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid

from ui.bridge import Bridge
from ui.widgets.inline_message import InlineMessage


def targets(members: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(label, kind "skill" | "to", value): each skill once with who offers it, then each other member."""
    offered: dict[str, list[str]] = {}
    for card in members:
        for skill in card.get("skills", []):
            offered.setdefault(skill.get("name", ""), []).append(card.get("name", "?"))
    out = [(f"Skill {name} ({', '.join(who)})", "skill", name) for name, who in sorted(offered.items()) if name]
    out += [(f"Agent {c['name']}", "to", c["agentid"]) for c in members if not c.get("isself")]
    return out


class DispatchDialog(QDialog):
    def __init__(self, bridge: Bridge, parent: QWidget | None = None, *, skill: str = "") -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setWindowTitle("Dispatch a task to the group")
        self.resize(620, 520)
        self.results: list[Any] = []  # the TaskResult once it arrives (tests)
        self._task: asyncio.Task[None] | None = None
        self.target = QComboBox()
        for label, kind, value in targets(bridge.group.group_members()):
            self.target.addItem(label, (kind, value))
        if skill:
            self.target.setCurrentIndex(max(0, self.target.findData(("skill", skill))))
        self.text = QPlainTextEdit()
        self.text.setPlaceholderText("The complete task: the peer sees nothing else.")
        self.text.setMaximumHeight(110)
        self.answer = QPlainTextEdit()
        self.answer.setReadOnly(True)
        self.answer.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.answer.setPlaceholderText("The answer streams here.")
        self.status = InlineMessage()
        if not self.target.count():
            self.status.show_info("Nobody in the group offers a skill yet, and no other member is online.")
        self.buttons = QDialogButtonBox()
        self.send_button = self.buttons.addButton("Send", QDialogButtonBox.ButtonRole.AcceptRole)
        self.send_button.setEnabled(self.target.count() > 0)
        self.stop_button = self.buttons.addButton("Stop watching", QDialogButtonBox.ButtonRole.ActionRole)
        self.stop_button.setEnabled(False)
        close = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        close.clicked.connect(self.reject)
        form = QFormLayout()
        form.addRow("Send to", self.target)
        form.addRow("Task", self.text)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Answer"))
        layout.addWidget(self.answer, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def send(self) -> None:
        text = self.text.toPlainText().strip()
        if self.running or self.target.currentData() is None:
            return
        if not text:
            self.status.show_error("Write the task first.")
            return
        kind, value = self.target.currentData()
        self.answer.clear()
        self.results.clear()
        self.send_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.status.show_info("Sent: waiting for a member to take it…")
        self._task = asyncio.ensure_future(self._follow(text, **{kind: value}))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _follow(self, text: str, **target: str) -> None:
        from core.group.dispatch import TaskResult

        try:
            async for update in self.bridge.group.dispatch(text, **target):
                if not isValid(self):
                    return
                if isinstance(update, TaskResult):
                    self._finished(update)
                else:
                    self._progress(update)
        except asyncio.CancelledError:
            if isValid(self):
                self.status.show_info("Stopped watching. The peer still finishes; its answer goes to the timeline.")
        except Exception as exc:
            if isValid(self):
                self.status.show_error(exc)
        finally:
            if isValid(self):
                self.send_button.setEnabled(True)
                self.stop_button.setEnabled(False)

    def _progress(self, update: Any) -> None:
        who = update.agent.get("name") or update.agent.get("agentid", "")[:12]
        if update.delta:
            self.answer.moveCursor(self.answer.textCursor().MoveOperation.End)
            self.answer.insertPlainText(update.delta)
        step = f" (step {update.step}/{update.steps})" if update.step and update.steps else ""
        self.status.show_info(
            f"{update.state.capitalize()} by {who}{step}" + (f": {update.message}" if update.message else "")
        )

    def _finished(self, result: Any) -> None:
        self.results.append(result)
        who = result.agent.get("name") or result.agent.get("agentid", "")[:12] or "nobody"
        if result.output and result.output != self.answer.toPlainText():
            self.answer.setPlainText(result.output)  # the result is the whole answer, whatever streamed
        ms = result.elapsedms
        seconds = "" if ms is None else f" in {ms} ms" if ms < 1000 else f" in {ms / 1000:.1f} s"
        if result.ok:
            self.status.show_ok(f"✓ Answered by {who}{seconds}.")
        else:
            message = result.error.get("message", "") if result.error else ""
            self.status.show_error(f"{result.status}: {message or 'no answer'} ({who})")

    def done(self, result: int) -> None:
        self.stop()
        super().done(result)
