"""Consumer lag in the group pane: a warning banner while a partition stays behind the limits, and one line per
partition that is behind (records and seconds), so a slow agent is seen without opening a terminal.

Fed plain rows (`GroupBridge.lag_rows()`: topic, partition, reader, group, messages, seconds, warning): given a
`source`, it polls it about once a second while shown (the monitor samples at that pace; nothing to push).
Partitions that are caught up are only counted, so a group of many topics keeps the view to a few lines.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

POLL_MS = 1000
WARN_COLOUR = "#d97706"
HEADERS = ["Partition", "Behind", "Seconds", "Consumer"]
MAX_TABLE_HEIGHT = 150
Rows = list[dict[str, Any]]


def partition_name(row: dict[str, Any]) -> str:
    """'memory[0]' for topic group.<name>.memory partition 0 (the group prefix is the same on every line)."""
    topic = str(row["topic"])
    short = topic.split(".", 2)[2] if topic.startswith("group.") and topic.count(".") >= 2 else topic
    return f"{short}[{row['partition']}]"


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.0f} min"


class LagView(QWidget):
    def __init__(self, source: Callable[[], Rows] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = source
        self.rows: Rows = []
        self.banner = QLabel()
        self.banner.setTextFormat(Qt.TextFormat.RichText)
        self.banner.setWordWrap(True)
        self.banner.hide()
        self.summary = QLabel()
        self.summary.setEnabled(False)
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMaximumHeight(MAX_TABLE_HEIGHT)
        self.table.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.banner)
        layout.addWidget(self.table)
        layout.addWidget(self.summary)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.refresh)
        self.set_rows([])

    @property
    def warning(self) -> bool:
        return any(row["warning"] for row in self.rows)

    def refresh(self) -> None:
        if self.source is not None:
            self.set_rows(self.source())

    def set_rows(self, rows: Rows) -> None:
        self.rows = list(rows)
        behind = sorted(
            (r for r in self.rows if r["messages"] > 0 or r["warning"]),
            key=lambda r: (not r["warning"], -r["messages"], r["topic"], r["partition"]),
        )
        self.table.setRowCount(len(behind))
        for n, row in enumerate(behind):
            self._fill(n, row)
        self.table.setVisible(bool(behind))
        caught_up = len(self.rows) - len(behind)
        if not self.rows:
            self.summary.setText("Consumer lag: no partition read yet.")
        elif behind:
            self.summary.setText(f"{len(behind)} partition(s) behind · {caught_up} caught up")
        else:
            self.summary.setText(f"Consumer lag: all {caught_up} partitions caught up.")
        self._show_banner([r for r in behind if r["warning"]])

    def _fill(self, n: int, row: dict[str, Any]) -> None:
        cells = [
            ("⚠ " if row["warning"] else "") + partition_name(row),
            f"{row['messages']:,}",
            seconds_text(row["seconds"]),
            f"{row['reader']} · {row['group'] or 'no group'}",
        ]
        tip = f"{row['topic']} partition {row['partition']}"
        for col, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(tip)
            if col in (1, 2):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if row["warning"]:
                item.setForeground(QColor(WARN_COLOUR))
            self.table.setItem(n, col, item)

    def _show_banner(self, warnings: Rows) -> None:
        if not warnings:
            self.banner.hide()
            self.banner.setText("")
            return
        first = warnings[0]
        more = f" and {len(warnings) - 1} more" if len(warnings) > 1 else ""
        text = (
            f"⚠ <b>Lagging</b>: {html.escape(partition_name(first))} is {first['messages']:,} records, "
            f"{html.escape(seconds_text(first['seconds']))} behind{more}. This agent reads slower than the group "
            "writes."
        )
        self.banner.setText(f'<span style="color:{WARN_COLOUR}">{text}</span>')
        self.banner.show()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()
        self._timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self._timer.stop()
