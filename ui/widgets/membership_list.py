"""Who is not (or no longer) in a closed group, under the roster: agents waiting to be let in (their cards are
held back until an admission is read: asked to join, waiting for an admin, or never admitted) and agents the
founder removed, with when, by whom and why. Hidden while there are none.

Fed `MembershipView.pending` and `.removed`; the founder can remove a waiting agent from its row's context
menu (`removeRequested`; the pane asks to confirm).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QMenu,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ui.widgets import group_format as fmt

HEADERS = ["Name", "Agent id", "Member", "Note"]
COLOURS = {"pending": "#d97706", "revoked": "#d83b3b"}
ROW_ROLE = Qt.ItemDataRole.UserRole
MAX_HEIGHT = 150


class MembershipList(QWidget):
    removeRequested = Signal(str, str)  # agent id, name

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.admin = False
        self.title = QLabel("<b>Join requests and removed members</b>")
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._menu_at)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.table)
        self.hide()

    def set_rows(self, pending: list[dict[str, Any]], removed: list[dict[str, Any]], *, admin: bool) -> None:
        self.admin = admin
        rows = [{**row, "member": "pending"} for row in pending] + [{**row, "member": "revoked"} for row in removed]
        self.table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            cells = [row.get("name") or "?", fmt.short_id(row["agentid"]), row["member"], _note(row)]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(ROW_ROLE, row)
                item.setToolTip(row["agentid"] if col == 1 else _note(row))
                self.table.setItem(index, col, item)
            self.table.item(index, 2).setForeground(QColor(COLOURS[row["member"]]))
        self._fit()
        self.setVisible(bool(rows))

    def _fit(self) -> None:
        """As tall as its rows (up to MAX_HEIGHT), so the roster above keeps the room."""
        table = self.table
        rows = sum(table.rowHeight(r) for r in range(table.rowCount())) or table.verticalHeader().defaultSectionSize()
        table.setFixedHeight(
            min(MAX_HEIGHT, table.horizontalHeader().sizeHint().height() + rows + 2 * table.frameWidth())
        )

    def entries(self) -> list[tuple[str, str]]:
        """(name, member status) per row, top to bottom (tests)."""
        return [(self.table.item(r, 0).text(), self.table.item(r, 2).text()) for r in range(self.table.rowCount())]

    def menu_for(self, row: int) -> QMenu | None:
        """The context menu of a row: the founder may remove an agent still waiting (None otherwise)."""
        item = self.table.item(row, 0)
        entry = item.data(ROW_ROLE) if item else None
        if not self.admin or not entry or entry["member"] != "pending":
            return None
        menu = QMenu(self)
        action = menu.addAction("Remove from group…")
        action.triggered.connect(lambda: self.removeRequested.emit(entry["agentid"], entry.get("name", "")))
        return menu

    def _menu_at(self, pos: QPoint) -> None:
        menu = self.menu_for(self.table.rowAt(pos.y()))
        if menu is not None:
            menu.popup(self.table.viewport().mapToGlobal(pos))  # popup, never exec: no nested event loop


def _note(row: dict[str, Any]) -> str:
    if row["member"] == "pending":
        return "waiting to be let in (or never admitted)"
    reason = f": {row['reason']}" if row.get("reason") else ""
    by = row.get("byname") or fmt.short_id(row.get("by", ""))
    return f"removed {fmt.local_time(row.get('at', ''))} by {by}{reason}"
