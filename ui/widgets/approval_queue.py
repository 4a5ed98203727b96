"""The approvals waiting for a person, oldest first and newest at the bottom, one card each.

`sync` diffs the shown cards against the broker's pending list: answered cards leave, new ones are added
at the bottom, and a card someone is reading never jumps or is rebuilt under the cursor.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from core.approvals import PendingApproval
from ui.widgets.approval_card import ApprovalCard

EMPTY_TEXT = "Nothing is waiting for approval.\nHigh-risk tool calls (like shell) will ask here."


class ApprovalQueue(QScrollArea):
    decided = Signal(str, object)  # approval id, ApprovalDecision

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._cards: dict[str, ApprovalCard] = {}
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget(self)
        self._layout = QVBoxLayout(body)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(8)
        self.empty_label = QLabel(EMPTY_TEXT, body)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setEnabled(False)  # the palette's muted text colour, in light and dark themes
        self._layout.addWidget(self.empty_label)
        self._layout.addStretch(1)
        self.setWidget(body)

    def cards(self) -> list[ApprovalCard]:
        return list(self._cards.values())

    def sync(self, pending: list[PendingApproval]) -> list[ApprovalCard]:
        """Match the cards to `pending` (oldest first); returns the cards that were added."""
        wanted = {item.id for item in pending}
        for approval_id in [a for a in self._cards if a not in wanted]:
            card = self._cards.pop(approval_id)
            self._layout.removeWidget(card)
            card.hide()
            card.deleteLater()
        added = [self._add(item) for item in pending if item.id not in self._cards]
        self.empty_label.setVisible(not self._cards)
        if added:
            self.ensureWidgetVisible(added[-1])
        return added

    def _add(self, pending: PendingApproval) -> ApprovalCard:
        card = ApprovalCard(pending, self.widget())
        card.decided.connect(self.decided)
        self._layout.insertWidget(self._layout.count() - 1, card)  # above the stretch: newest at the bottom
        self._cards[pending.id] = card
        return card

    def set_session_titles(self, titles: dict[str, str]) -> None:
        for card in self._cards.values():
            title = titles.get(card.pending.request.session_id)
            if title:
                card.set_session_title(title)
