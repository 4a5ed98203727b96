"""Replay a group topic (File › Replay group topic…): list a past sequence of envelopes, each one checked.

The reading goes through the group bridge to core/group/replay.py, which never joins the live group, commits
nothing and sends nothing, so looking costs the group nothing and works with group mode off. Re-running tasks
in a scratch agent is the command line's job (`shoal replay --refeed`, docs/replay.md): it loads a model.
"""

from __future__ import annotations

import asyncio

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid

from core.group.replay_query import POSITION_HELP
from ui.bridge import Bridge
from ui.widgets.envelope_table import EnvelopeTable
from ui.widgets.inline_message import InlineMessage

TOPICS = ["requests", "responses", "progress", "announce", "audit", "memory", "traces", "control"]


class ReplayDialog(QDialog):
    def __init__(self, bridge: Bridge, parent: QWidget | None = None, *, correlation: str = "") -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setWindowTitle("Replay a group topic")
        self.resize(980, 560)
        self._task: asyncio.Task[None] | None = None
        self.topic = QComboBox()
        self.topic.setEditable(True)
        self.topic.addItems(TOPICS + _skill_topics(bridge))
        self.start = QLineEdit("beginning")
        self.start.setToolTip(f"Where to start: {POSITION_HELP}.")
        self.correlation = QLineEdit(correlation)
        self.correlation.setPlaceholderText("any (a prefix of a correlation id is enough)")
        self.table = EnvelopeTable()
        self.status = InlineMessage()
        self.buttons = QDialogButtonBox()
        self.list_button = self.buttons.addButton("List", QDialogButtonBox.ButtonRole.ActionRole)
        close = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.list_button.clicked.connect(self.list_envelopes)
        self.start.returnPressed.connect(self.list_envelopes)
        self.correlation.returnPressed.connect(self.list_envelopes)
        close.clicked.connect(self.reject)
        form = QFormLayout()
        form.addRow("Topic", self.topic)
        form.addRow("From", self.start)
        form.addRow("Correlation", self.correlation)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def list_envelopes(self) -> None:
        if self.running:
            return
        self.list_button.setEnabled(False)
        self.status.show_info("Reading…")
        self._task = asyncio.ensure_future(
            self._list(self.topic.currentText(), self.start.text(), self.correlation.text())
        )

    async def _list(self, topic: str, start: str, correlation: str) -> None:
        try:
            rows = await self.bridge.group.replay(topic, start, correlation)
        except Exception as exc:
            if isValid(self):
                self.status.show_error(exc)
            return
        finally:
            if isValid(self):
                self.list_button.setEnabled(True)
        if not isValid(self):
            return
        self.table.set_rows(rows)
        verified = sum(row["status"] == "verified" for row in rows)
        if rows:
            self.status.show_ok(f"{len(rows)} envelope{'s' * (len(rows) != 1)}, {verified} verified.")
        else:
            self.status.show_info("No envelope matches.")

    def done(self, result: int) -> None:
        if self._task is not None:
            self._task.cancel()
        super().done(result)


def _skill_topics(bridge: Bridge) -> list[str]:
    """The queues of the skills members offer right now (a replay often starts from one)."""
    skills = {s.get("name", "") for card in bridge.group.group_members() for s in card.get("skills", [])}
    return [f"skill.{name}.requests" for name in sorted(skills) if name]
