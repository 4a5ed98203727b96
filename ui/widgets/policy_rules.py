"""The rules in force, in the order they are tried (as `shoal policy show`): yours, then the built-in defaults,
then the classify rules, quotas and rate limits. Numbered across both groups, because the first rule that
matches decides and the number says which comes first.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTreeWidget, QTreeWidgetItem, QWidget

from ui.policy_bridge import RuleRow
from ui.widgets.policy_format import effect_color

COLUMNS = ("#", "Rule", "Effect", "Action", "Applies to", "Where")
YOURS, BUILTIN, OTHERS = "Your rules — tried first", "Built-in defaults — tried after yours", "Labels and limits"


class PolicyRules(QTreeWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setColumnCount(len(COLUMNS))
        self.setHeaderLabels(list(COLUMNS))
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setAccessibleName("Policy rules in the order they are tried")
        header = self.header()
        header.setStretchLastSection(False)
        for col in range(len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)

    def show_rules(self, rows: list[RuleRow], others: list[str], file_name: str = "policy.toml") -> None:
        self.clear()
        yours = [r for r in rows if not r.builtin]
        groups = [
            (f"{YOURS} ({file_name})" if yours else f"{YOURS}: none ({file_name} has no [[rules]])", yours),
            (BUILTIN, [r for r in rows if r.builtin]),
        ]
        number = 0
        for title, members in groups:
            self._group(title)
            for row in members:
                number += 1
                self.addTopLevelItem(self._rule_item(number, row))
        if others:
            self._group(OTHERS)
            for line in others:
                item = QTreeWidgetItem([line])
                item.setToolTip(0, line)
                self.addTopLevelItem(item)
                self.setFirstColumnSpanned(self.indexOfTopLevelItem(item), self.rootIndex(), True)

    def selected_text(self) -> str:
        """The selected row in full (its tooltip: name, where it is written, what it does, its description)."""
        item = self.currentItem()
        return item.toolTip(0) if item is not None else ""

    def rule_names(self) -> list[str]:
        """The rules in the order shown (tests, and what the screen reader reads)."""
        names = []
        for i in range(self.topLevelItemCount()):
            item = self.topLevelItem(i)
            if item.text(0).isdigit():
                names.append(item.text(1))
        return names

    def _group(self, title: str) -> None:
        item = QTreeWidgetItem([title])
        font = QFont(self.font())
        font.setWeight(QFont.Weight.DemiBold)
        item.setFont(0, font)
        item.setFlags(Qt.ItemFlag.ItemIsEnabled)
        self.addTopLevelItem(item)
        self.setFirstColumnSpanned(self.indexOfTopLevelItem(item), self.rootIndex(), True)

    def _rule_item(self, number: int, row: RuleRow) -> QTreeWidgetItem:
        item = QTreeWidgetItem([str(number), row.name, row.effect, row.action, row.conditions, row.origin])
        item.setTextAlignment(0, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        item.setForeground(2, QBrush(QColor(effect_color(row.effect.split(" ")[0]))))
        tip = f"{row.name} ({row.origin}): {row.effect} {row.action} — {row.conditions}"
        if row.description:
            tip += f"\n{row.description}"
        for col in range(len(COLUMNS)):
            item.setToolTip(col, tip)
        if row.builtin:
            item.setForeground(1, QBrush(self.palette().placeholderText()))
        return item
