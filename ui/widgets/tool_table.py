"""The tool registry as a table: what the agent may call, how risky each tool is, and a switch to turn it off.

The switch is the row's check box; toggling it only emits `toggled` (the pane tells the bridge). A refresh
with the same tools updates the check boxes in place, so a toggle never rebuilds the table under the click.
"""

from __future__ import annotations

import html
from enum import IntEnum

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from core.tools.registry import ToolSpec
from ui.bridge import ToolRow
from ui.widgets.event_format import pretty_json
from ui.widgets.risk import risk_color, risk_help


class ToolCol(IntEnum):
    ENABLED = 0
    NAME = 1
    RISK = 2
    SOURCE = 3
    DESCRIPTION = 4


HEADERS = {
    ToolCol.ENABLED: "On",
    ToolCol.NAME: "Tool",
    ToolCol.RISK: "Risk",
    ToolCol.SOURCE: "Source",
    ToolCol.DESCRIPTION: "Description",
}


def schema_tooltip(spec: ToolSpec) -> str:
    """The description in full, then the JSON schema of the arguments (what the model must send)."""
    schema = html.escape(pretty_json(spec.parameters), quote=False)
    return f"<p><b>{html.escape(spec.name)}</b>: {html.escape(spec.description)}</p><pre>{schema}</pre>"


class ToolTable(QTableWidget):
    toggled = Signal(str, bool)  # tool name, enabled

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(ToolCol), parent)
        self.setHorizontalHeaderLabels([HEADERS[c] for c in ToolCol])
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 10)
        header = self.horizontalHeader()
        for col in (ToolCol.ENABLED, ToolCol.NAME, ToolCol.RISK, ToolCol.SOURCE):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(ToolCol.DESCRIPTION, QHeaderView.ResizeMode.Stretch)
        self.itemChanged.connect(self._on_item_changed)

    def names(self) -> list[str]:
        return [self.item(row, ToolCol.NAME).text() for row in range(self.rowCount())]

    def row_of(self, name: str) -> int:
        return self.names().index(name)

    def set_rows(self, rows: list[ToolRow]) -> None:
        """Show `rows`; same tools as shown → only the switches change, otherwise the table is rebuilt."""
        self.blockSignals(True)
        try:
            if [r.spec.name for r in rows] != self.names():
                self.setRowCount(0)
                self.setRowCount(len(rows))
                for index, row in enumerate(rows):
                    self._fill(index, row.spec)
            for index, row in enumerate(rows):
                state = Qt.CheckState.Checked if row.enabled else Qt.CheckState.Unchecked
                self.item(index, ToolCol.ENABLED).setCheckState(state)
                self._dim(index, not row.enabled)
        finally:
            self.blockSignals(False)

    def _fill(self, index: int, spec: ToolSpec) -> None:
        tip = schema_tooltip(spec)
        switch = QTableWidgetItem()
        switch.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
        switch.setToolTip(f"Let the agent call {spec.name} (for this run; Settings makes it permanent)")
        self.setItem(index, ToolCol.ENABLED, switch)
        name = QTableWidgetItem(spec.name)
        font = QFont(name.font())
        font.setBold(True)
        name.setFont(font)
        name.setToolTip(tip)
        self.setItem(index, ToolCol.NAME, name)
        self.setItem(index, ToolCol.RISK, self._risk_item(spec))
        source = QTableWidgetItem(spec.source)
        self.setItem(index, ToolCol.SOURCE, source)
        description = QTableWidgetItem(spec.description)
        description.setToolTip(tip)
        self.setItem(index, ToolCol.DESCRIPTION, description)

    @staticmethod
    def _risk_item(spec: ToolSpec) -> QTableWidgetItem:
        item = QTableWidgetItem(str(spec.risk.value))
        item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        item.setBackground(QBrush(QColor(risk_color(spec.risk))))
        item.setForeground(QBrush(QColor("white")))
        font = QFont(item.font())
        font.setBold(True)
        item.setFont(font)
        item.setToolTip(risk_help(spec.risk))
        return item

    def _dim(self, index: int, disabled: bool) -> None:
        """A switched-off tool's name and description grey out, so the state reads at a glance."""
        brush = QBrush(QColor("#8a8a8a")) if disabled else QBrush()
        for col in (ToolCol.NAME, ToolCol.SOURCE, ToolCol.DESCRIPTION):
            self.item(index, col).setForeground(brush)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != ToolCol.ENABLED:
            return
        name = self.item(item.row(), ToolCol.NAME).text()
        self.toggled.emit(name, item.checkState() == Qt.CheckState.Checked)
