"""Token quotas as `shoal policy usage` reports them: used / limit in the current period, and when it resets.

One row per quota and target counted (`scope = "peer"`, `target = "*"` gives every peer its own row). The
share is coloured as the risk tiers are: green while there is room, amber from 80 %, red once used up (the
next model call against it will be refused until it resets).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTreeWidget, QTreeWidgetItem, QWidget

from core.policy.quotas import QuotaUsage
from core.tools.registry import RiskTier
from ui.widgets.risk import RISK_COLORS

COLUMNS = ("Quota", "Counted for", "Used / limit", "Resets")
WARN_SHARE = 0.8


def share_color(used: int, limit: int) -> str:
    share = used / limit if limit else 1.0
    tier = RiskTier.HIGH if share >= 1 else RiskTier.WRITE if share >= WARN_SHARE else RiskTier.READ
    return RISK_COLORS[tier]


def used_text(row: QuotaUsage) -> str:
    share = f" ({row.used / row.limit:.0%})" if row.limit else ""
    return f"{row.used:,} / {row.limit:,}{share}"


class QuotaTable(QTreeWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setColumnCount(len(COLUMNS))
        self.setHeaderLabels(list(COLUMNS))
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setAccessibleName("Token quotas: used, limit and reset time")
        header = self.header()
        for col in range(len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)

    def show_usage(self, rows: list[QuotaUsage]) -> None:
        self.clear()
        for row in rows:
            per = "today" if row.period == "day" else "this month"
            item = QTreeWidgetItem([row.name, row.target, used_text(row), row.resets])
            item.setForeground(2, QBrush(QColor(share_color(row.used, row.limit))))
            item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            tip = (f"{row.name} ({row.origin}): {row.scope} {row.target}: {row.used:,} of {row.limit:,} tokens "
                   f"{per}; resets at {row.resets}")  # fmt: skip
            for col in range(len(COLUMNS)):
                item.setToolTip(col, tip)
            self.addTopLevelItem(item)

    def cells(self) -> list[list[str]]:
        """Every row's text (tests)."""
        return [[self.topLevelItem(i).text(c) for c in range(len(COLUMNS))] for i in range(self.topLevelItemCount())]
