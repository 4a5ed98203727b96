"""The group pane: whether this agent is in its Kafka group, who else is there, and a way to send them a task.

The header says the state in a word and a colour, and when the brokers cannot be reached, the last error and
what to do about it, so nobody has to open a log to find out why the group is empty. Everything comes from
`bridge.group`: `groupState` redraws the header, `rosterChanged` the table; a slow timer keeps "last seen"
honest while no announcement arrives (an offline group sends none). With group mode off the pane shows one
thing: the button that opens the Connect-to-group dialog (`connectRequested`; the window owns dialogs).
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QStackedWidget, QVBoxLayout, QWidget

from ui.bridge import Bridge
from ui.widgets import group_format as fmt
from ui.widgets.inline_message import InlineMessage
from ui.widgets.roster_table import RosterTable

OFF_TEXT = "Group mode is off. Join a Kafka group of Shoal agents to see its members and send them tasks."
SEEN_REFRESH_MS = 5000


class RosterPane(QWidget):
    connectRequested = Signal()

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.state = "off"
        self._dialogs: list[QWidget] = []
        self.table = RosterTable(self)
        self._build()
        bridge.group.groupState.connect(self._on_state)
        bridge.group.rosterChanged.connect(self.refresh_members)
        self._seen_timer = QTimer(self)
        self._seen_timer.setInterval(SEEN_REFRESH_MS)
        self._seen_timer.timeout.connect(self.refresh_members)
        self._show_state()

    def _build(self) -> None:
        self.state_label = QLabel()
        self.state_label.setTextFormat(Qt.TextFormat.RichText)
        self.state_label.setWordWrap(True)
        self.error = InlineMessage()
        self.dispatch_button = QPushButton("Dispatch…")
        self.dispatch_button.setToolTip("Send a task to a skill or a member and watch the answer")
        self.dispatch_button.clicked.connect(self.open_dispatch)
        self.settings_button = QPushButton("Connection…")
        self.settings_button.setToolTip("Change the brokers, this agent's skills, or leave the group")
        self.settings_button.clicked.connect(self.connectRequested.emit)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.state_label, 1)
        bar.addWidget(self.dispatch_button)
        bar.addWidget(self.settings_button)
        self.count_label = QLabel()
        self.count_label.setEnabled(False)

        self.empty_page = QWidget()
        empty = QVBoxLayout(self.empty_page)
        self.off_label = QLabel(OFF_TEXT)
        self.off_label.setWordWrap(True)
        self.off_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.connect_button = QPushButton("Connect to a group…")
        self.connect_button.clicked.connect(self.connectRequested.emit)
        empty.addStretch(1)
        empty.addWidget(self.off_label)
        empty.addWidget(self.connect_button, 0, Qt.AlignmentFlag.AlignCenter)
        empty.addStretch(2)
        self.table_page = QWidget()
        listing = QVBoxLayout(self.table_page)
        listing.setContentsMargins(0, 0, 0, 0)
        listing.addWidget(self.table, 1)
        listing.addWidget(self.count_label)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.empty_page)
        self.stack.addWidget(self.table_page)

        self.header = QWidget()
        head = QVBoxLayout(self.header)
        head.setContentsMargins(0, 0, 0, 0)
        head.setSpacing(2)
        head.addLayout(bar)
        head.addWidget(self.error)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.header)
        layout.addWidget(self.stack, 1)

    # --- public API ----------------------------------------------------------------------------

    async def start(self) -> None:
        """The core has started (and may have joined its group): follow its runtime from now on."""
        self.bridge.group.sync()
        self._show_state()
        self.refresh_members()

    def refresh_members(self) -> None:
        cards = self.bridge.group.group_members()
        self.table.set_members(cards)
        others = sum(not card.get("isself") for card in cards)
        self.count_label.setText(
            f"{len(cards)} member{'s' * (len(cards) != 1)} ({others} besides this agent) · hover a row for its skills"
            if cards
            else "No member has announced itself yet (this agent appears once its first heartbeat is read back)."
        )
        self.dispatch_button.setEnabled(self.state != "off" and bool(cards))

    def open_dispatch(self) -> None:
        from ui.dialogs.dispatch import DispatchDialog

        card = self.table.selected_card()
        skills = [s.get("name", "") for s in card.get("skills", [])] if card else []
        dialog = DispatchDialog(self.bridge, self, skill=skills[0] if skills else "")
        self._dialogs.append(dialog)
        dialog.finished.connect(lambda _result: self._dialogs.remove(dialog) if dialog in self._dialogs else None)
        dialog.open()

    def dialogs(self) -> list[QWidget]:
        return list(self._dialogs)

    # --- reactions -----------------------------------------------------------------------------

    def _on_state(self, _state: str, _detail: str) -> None:
        self._show_state()
        self.refresh_members()

    def _show_state(self) -> None:
        status = self.bridge.group.group_state()
        self.state = status.state
        symbol, word, colour = fmt.state_style(status.state)
        where = "" if status.state == "off" else f" · group <b>{html.escape(status.group)}</b>"
        who = f" as {html.escape(status.agent)}" if status.state != "off" else ""
        servers = f" · {html.escape(', '.join(status.servers))}" if status.state in ("connecting", "offline") else ""
        self.state_label.setText(f'<span style="color:{colour}">{symbol} <b>{word}</b></span>{where}{who}{servers}')
        self.state_label.setToolTip(f"agent id {status.agent_id}" if status.agent_id else "")
        if status.message and status.state != "online":
            self.error.show_error(status.message, status.fix)
        else:
            self.error.clear_message()
        off = status.state == "off"
        self.stack.setCurrentWidget(self.empty_page if off else self.table_page)
        self.header.setVisible(not off)
        if off:
            self._seen_timer.stop()
        elif not self._seen_timer.isActive():
            self._seen_timer.start()
