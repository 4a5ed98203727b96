"""The group's members as a table: who, what they offer, what they run, how busy, when last heard from.

Rebuilt from the members' cards on every (coalesced) roster change: a group has tens of members, not
thousands, and a rebuild keeps the rows exactly what the roster says. The selected member stays selected.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from ui.widgets import group_format as fmt

CARD_ROLE = Qt.ItemDataRole.UserRole
STATUS_COLORS = {"idle": "#2e9d3a", "busy": "#d97706", "draining": "#8a8a8a"}
ORCHESTRATOR_COLOR = "#7c3aed"  # the orchestrator's row stands out (docs/hierarchy.md)
# membership in a closed group (docs/groups.md); "open": a group without a join secret
MEMBER_COLORS = {"admitted": "#2e9d3a", "pending": "#d97706", "revoked": "#d83b3b", "expired": "#8a8a8a"}


class Col(IntEnum):
    NAME = 0
    SKILLS = 1
    MODEL = 2
    STATUS = 3
    MEMBER = 4
    TASKS = 5
    ZONE = 6
    ZONES = 7
    SEEN = 8
    ID = 9


HEADERS = ["Name", "Skills", "Model", "Status", "Member", "Tasks", "Zone", "In zones", "Last seen", "Agent id"]


class RosterTable(QTableWidget):
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
        header.setSectionResizeMode(Col.SKILLS, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(40)

    def set_members(self, cards: list[dict[str, Any]]) -> None:
        selected = self.selected_card()
        keep = selected["agentid"] if selected else None
        self.setRowCount(len(cards))
        for row, card in enumerate(cards):
            self._fill(row, card)
            if card["agentid"] == keep:
                self.selectRow(row)

    def _fill(self, row: int, card: dict[str, Any]) -> None:
        name = fmt.tree_name(card) + ("  (this agent)" if card.get("isself") else "")
        cells = {
            Col.NAME: name,
            Col.SKILLS: fmt.skills_text(card),
            Col.MODEL: card.get("model") or "—",
            Col.STATUS: card.get("status", ""),
            Col.MEMBER: card.get("membership") or "—",  # merged in by the pane (bridge.group.admin.membership)
            Col.TASKS: str(card.get("activetasks", 0)),
            Col.ZONE: card.get("zone", ""),
            Col.ZONES: ", ".join(z for z in card.get("memberzones", []) if z != "public") or "public",
            Col.SEEN: fmt.last_seen(card.get("lastseen", "")),
            Col.ID: fmt.short_id(card.get("agentid", "")),
        }
        tip = _tooltip(card)
        for col, text in cells.items():
            item = QTableWidgetItem(text)
            item.setToolTip(tip)
            item.setData(CARD_ROLE, card)
            self.setItem(row, col, item)
        if card.get("isself"):
            font = QFont(self.font())
            font.setBold(True)
            self.item(row, Col.NAME).setFont(font)
        if card.get("orchestrator"):
            self.item(row, Col.NAME).setForeground(QColor(ORCHESTRATOR_COLOR))
        colour = STATUS_COLORS.get(card.get("status", ""))
        if colour:
            self.item(row, Col.STATUS).setForeground(QColor(colour))
        if member_colour := MEMBER_COLORS.get(card.get("membership", "")):
            self.item(row, Col.MEMBER).setForeground(QColor(member_colour))
        self.item(row, Col.ZONES).setToolTip("Zones this member may see: " + ", ".join(card.get("memberzones", [])))
        self.item(row, Col.TASKS).setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        self.item(row, Col.SEEN).setToolTip(fmt.local_time(card.get("lastseen", "")))
        self.item(row, Col.ID).setToolTip(card.get("agentid", ""))

    def selected_card(self) -> dict[str, Any] | None:
        items = self.selectedItems()
        return items[0].data(CARD_ROLE) if items else None

    def card_at(self, row: int) -> dict[str, Any] | None:
        item = self.item(row, Col.NAME)
        return item.data(CARD_ROLE) if item else None

    def names(self) -> list[str]:
        return [card["name"] for row in range(self.rowCount()) if (card := self.card_at(row))]


def _tooltip(card: dict[str, Any]) -> str:
    lines = [f"{card.get('name', '')} — {card.get('description') or 'no description'}"]
    for skill in card.get("skills", []):
        lines.append(f"• {skill.get('name', '')}: {skill.get('description') or '(no description)'}")
    if place := fmt.hierarchy_text(card):
        lines.append(place)
    lines.append(f"{card.get('version', '')} · {', '.join(card.get('capabilities', []))}")
    lines.append(f"since {fmt.local_time(card.get('startedat', ''))}")
    return "\n".join(lines)
