"""The zones of a closed group and who is in each (docs/groups.md, "Zones"): `public` (everyone who reads the
group), `shared` (every admitted member) and the private zones the founder defined, whose payloads are sealed
for their members alone. The founder gets "New private zone…" (`newZoneRequested`) and "Edit…" on a selected
private zone, or a double-click on it (`editZoneRequested(name)`); the pane opens the zone editor.

Fed `MembershipView.zones` (`Zone.row()` dicts) on every refresh of the group pane.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

HEADERS = ["Zone", "Kind", "Who may see it", "Description"]
EVERYONE = {"public": "everyone who reads the group", "shared": "every admitted member"}
MAX_HEIGHT = 170


def members_text(row: dict[str, Any]) -> str:
    """'alice, bob' for a private zone (an id's start when the name is not known), the rule for the others."""
    if row.get("kind") != "private":
        return EVERYONE.get(str(row.get("kind")), "")
    return ", ".join(m.get("name") or m.get("agentid", "")[:12] for m in row.get("members", [])) or "—"


class ZonesList(QWidget):
    newZoneRequested = Signal()
    editZoneRequested = Signal(str)  # a private zone's name

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict[str, Any]] = []
        title = QLabel("<b>Zones</b>")
        self.new_button = QPushButton("New private zone…")
        self.new_button.setToolTip("A zone only the members you pick can read (sealed end to end)")
        self.new_button.clicked.connect(self.newZoneRequested.emit)
        self.new_button.hide()
        self.edit_button = QPushButton("Edit…")
        self.edit_button.setToolTip("Change who may see the selected private zone, or delete it")
        self.edit_button.clicked.connect(self._edit_selected)
        self.edit_button.hide()
        self.admin = False
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.cellDoubleClicked.connect(lambda row, _col: self._edit_row(row))
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(title, 1)
        bar.addWidget(self.edit_button)
        bar.addWidget(self.new_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.table)

    def set_zones(self, rows: list[dict[str, Any]], *, admin: bool) -> None:
        selected = self.selected_zone()
        self.rows, self.admin = rows, admin
        self.new_button.setVisible(admin)
        self.edit_button.setVisible(admin)
        self.table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            kind = str(row.get("kind", ""))
            who = members_text(row)
            description = "" if row.get("description") == who else str(row.get("description", ""))
            cells = [row.get("zone", ""), kind, who, description]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{row.get('zone', '')} ({kind}): {members_text(row)}")
                self.table.setItem(index, col, item)
            if row.get("zone") == selected:
                self.table.selectRow(index)
        self._fit()
        self._selection_changed()

    def selected_zone(self) -> str:
        """The selected private zone's name ("" for none, or for a built-in zone, which has no members to edit)."""
        rows = {index.row() for index in self.table.selectedIndexes()}
        if len(rows) != 1 or not 0 <= (index := rows.pop()) < len(self.rows):
            return ""
        row = self.rows[index]
        return str(row.get("zone", "")) if row.get("kind") == "private" else ""

    def _selection_changed(self) -> None:
        self.edit_button.setEnabled(bool(self.selected_zone()))

    def _edit_selected(self) -> None:
        if name := self.selected_zone():
            self.editZoneRequested.emit(name)

    def _edit_row(self, row: int) -> None:
        if self.admin and 0 <= row < len(self.rows) and self.rows[row].get("kind") == "private":
            self.editZoneRequested.emit(str(self.rows[row]["zone"]))

    def _fit(self) -> None:
        """As tall as its rows (up to MAX_HEIGHT), so the roster above keeps the room."""
        table = self.table
        rows = sum(table.rowHeight(r) for r in range(table.rowCount())) or table.verticalHeader().defaultSectionSize()
        table.setFixedHeight(
            min(MAX_HEIGHT, table.horizontalHeader().sizeHint().height() + rows + 2 * table.frameWidth())
        )

    def zone_names(self) -> list[str]:
        return [str(row.get("zone", "")) for row in self.rows]

    def members_of(self, zone: str) -> list[str]:
        """The member names shown for `zone` (tests and tooltips)."""
        row = next((r for r in self.rows if r.get("zone") == zone), None)
        return [m.get("name") or m.get("agentid", "")[:12] for m in row.get("members", [])] if row else []
