"""Replayed envelopes as a table: where each was, when, what, who sent it, its conversation, checked or not.

Rows are `ReplayEntry.row()` dicts (core/group/replay.py) handed over by the group bridge; the table only shows
them. A status other than `verified` is coloured, so a forged or unknown sender stands out in a long list.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

ROW_ROLE = Qt.ItemDataRole.UserRole
STATUS_COLORS = {"verified": "#2e7d32", "unknown-sender": "#d97706", "wrong-group": "#d97706"}
BAD_COLOR = "#c62828"


class Col(IntEnum):
    WHERE = 0
    TIME = 1
    TYPE = 2
    SENDER = 3
    CORRELATION = 4
    CAUSATION = 5
    STATUS = 6
    SUMMARY = 7


HEADERS = ["Partition:offset", "Time", "Type", "Sender", "Correlation", "Causation", "Status", "Summary"]


class EnvelopeTable(QTableWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(Col), parent)
        self.setHorizontalHeaderLabels(HEADERS)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().hide()
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(Col.SUMMARY, QHeaderView.ResizeMode.Stretch)

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.setRowCount(len(rows))
        for number, row in enumerate(rows):
            self._fill(number, row)

    def row_data(self, number: int) -> dict[str, Any]:
        item = self.item(number, 0)
        return item.data(ROW_ROLE) if item is not None else {}

    def _fill(self, number: int, row: dict[str, Any]) -> None:
        sender = row.get("sender") or "?"
        cells = {
            Col.WHERE: f"{row.get('partition')}:{row.get('offset')}",
            Col.TIME: str(row.get("time", ""))[11:23],
            Col.TYPE: str(row.get("type", "")).removeprefix("shoal.") or "?",
            Col.SENDER: f"{sender} ({str(row.get('agentid', ''))[:8]})" if row.get("agentid") else sender,
            Col.CORRELATION: str(row.get("correlationid", ""))[:12],
            Col.CAUSATION: str(row.get("causationid", ""))[:12],
            Col.STATUS: str(row.get("status", "")),
            Col.SUMMARY: str(row.get("summary", "")),
        }
        tip = "\n".join(f"{k}: {v}" for k, v in row.items() if v not in ("", None))
        for col, text in cells.items():
            item = QTableWidgetItem(text)
            item.setToolTip(tip)
            item.setData(ROW_ROLE, row)
            self.setItem(number, col, item)
        status = self.item(number, Col.STATUS)
        status.setForeground(QColor(STATUS_COLORS.get(cells[Col.STATUS], BAD_COLOR)))
