"""The Test-connection report: one line per check as it completes, its status as a coloured symbol, the
detail after the name and, for anything not ok, what to do on the line under it.

Wrapped, selectable labels in a scroll area rather than a table: details and hints are sentences (a TLS
error, a list of unreachable broker addresses) that a person reads and may copy into a message to the
cluster's admin, and a table cell would cut them off.
"""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from ui.widgets.group_format import check_style

PLACEHOLDER = (
    "Test connection checks each step to the brokers: DNS, TCP, TLS, Kafka, login, metadata, the group's topics, "
    "a round trip, and the group's consumers with their lag (the same report as `shoal kshark`)."
)


class CheckList(QScrollArea):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.checks: list[Any] = []  # core.group.kshark.Check, in the order they arrived
        self.labels: list[QLabel] = []
        body = QWidget()
        self._column = QVBoxLayout(body)
        self._column.setContentsMargins(8, 6, 8, 6)
        self._column.setSpacing(4)
        self.placeholder = QLabel(PLACEHOLDER)
        self.placeholder.setWordWrap(True)
        self.placeholder.setEnabled(False)
        self._column.addWidget(self.placeholder)
        self.status = QLabel()  # "Testing…", the verdict, or "Stopped"
        self.status.setWordWrap(True)
        self._column.addWidget(self.status)
        self._column.addStretch(1)
        self.setWidget(body)

    def clear(self) -> None:
        for label in self.labels:
            label.deleteLater()
        self.checks.clear()
        self.labels.clear()
        self.placeholder.show()
        self.status.clear()

    def add_check(self, check: Any) -> None:
        self.placeholder.hide()
        symbol, colour = check_style(check.status)
        text = (
            f'<span style="color:{colour}; font-weight:bold">{symbol} {check.status.upper()}</span>'
            f"&nbsp; <b>{html.escape(check.name)}</b> — {html.escape(check.detail)}"
        )
        if check.duration_ms:
            text += f' <span style="color:#8a8a8a">({check.duration_ms:.0f} ms)</span>'
        if check.hint and check.status in ("warn", "fail"):
            text += f"<br>&nbsp;&nbsp;&nbsp;→ {html.escape(check.hint)}"
        label = QLabel(text)
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._column.insertWidget(self._column.indexOf(self.status), label)
        self.checks.append(check)
        self.labels.append(label)
        self.ensureWidgetVisible(self.status)

    def set_status(self, text: str, colour: str = "") -> None:
        style = f' style="color:{colour}; font-weight:bold"' if colour else ""
        self.status.setText(f"<span{style}>{html.escape(text)}</span>")

    def statuses(self) -> dict[str, str]:
        """Check name → status, for tests and the verdict."""
        return {check.name: check.status for check in self.checks}
