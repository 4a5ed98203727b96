"""The group pane: whether this agent is in its Kafka group, who else is there, and a way to send them a task.

The header says the state in a word and a colour, and when the brokers cannot be reached, the last error and
what to do about it, so nobody has to open a log to find out why the group is empty. Everything comes from
`bridge.group`: `groupState` redraws the header, `rosterChanged` the table; a slow timer keeps "last seen"
honest while no announcement arrives (an offline group sends none). With group mode off the pane shows one
thing: the button that opens the Connect-to-group dialog (`connectRequested`; the window owns dialogs), and one
that creates or joins a closed group. In a closed group (docs/groups.md) each row also says its membership and
zones, join requests and removed members are listed under the roster with the zones, and the founder removes
members (a row's context menu, asked first) and defines private zones (`bridge.group.admin`).
"""

from __future__ import annotations

import asyncio
import html
from typing import Any

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMenu, QPushButton, QStackedWidget, QVBoxLayout, QWidget
from shiboken6 import isValid

from ui.bridge import Bridge
from ui.group_admin import MembershipView
from ui.widgets import group_format as fmt
from ui.widgets.confirm import confirm
from ui.widgets.inline_message import InlineMessage
from ui.widgets.lag_view import LagView
from ui.widgets.membership_list import MembershipList
from ui.widgets.roster_table import RosterTable
from ui.widgets.zones_list import ZonesList

OFF_TEXT = "Group mode is off. Join a Kafka group of Shoal agents to see its members and send them tasks."
SEEN_REFRESH_MS = 5000


class RosterPane(QWidget):
    connectRequested = Signal()

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.state = "off"
        self._dialogs: list[QWidget] = []
        self.view = MembershipView()  # closed-group membership and zones (docs/groups.md), refreshed with the roster
        self._removals: set[asyncio.Task[None]] = set()
        self.table = RosterTable(self)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._table_menu_at)
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
        self.invite_button = QPushButton("Create or join a closed group…")
        self.invite_button.setToolTip("Found a group only invited agents can join, or join one with an invite code")
        self.invite_button.clicked.connect(lambda: self.open_invite())
        empty.addStretch(1)
        empty.addWidget(self.off_label)
        empty.addWidget(self.connect_button, 0, Qt.AlignmentFlag.AlignCenter)
        empty.addWidget(self.invite_button, 0, Qt.AlignmentFlag.AlignCenter)
        empty.addStretch(2)
        self.table_page = QWidget()
        listing = QVBoxLayout(self.table_page)
        listing.setContentsMargins(0, 0, 0, 0)
        listing.addWidget(self.table, 1)
        listing.addWidget(self.count_label)
        self.notice = InlineMessage()  # the outcome of removing a member
        self.membership_list = MembershipList()
        self.membership_list.removeRequested.connect(self.ask_remove)
        self.zones_list = ZonesList()
        self.zones_list.newZoneRequested.connect(self.open_zone)
        self.zones_list.editZoneRequested.connect(self.open_zone)
        closed = QHBoxLayout()
        closed.setContentsMargins(0, 0, 0, 0)
        closed.addWidget(self.membership_list, 1, Qt.AlignmentFlag.AlignTop)
        closed.addWidget(self.zones_list, 1, Qt.AlignmentFlag.AlignTop)
        listing.addWidget(self.notice)
        listing.addLayout(closed)
        self.lag = LagView(self.bridge.group.lag_rows)  # consumer lag and its warning (docs/lag.md)
        listing.addWidget(self.lag)
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
        self.view = view = self.bridge.group.admin.membership()
        cards = [
            {**c, "membership": view.status.get(c["agentid"], ""), "memberzones": view.zones_of.get(c["agentid"], [])}
            for c in self.bridge.group.group_members()
        ]
        self.table.set_members(cards)
        self.membership_list.set_rows(view.pending, view.removed, admin=view.admin)
        self.membership_list.setVisible(view.closed and bool(view.pending or view.removed))
        self.zones_list.set_zones(view.zones, admin=view.admin)
        self.zones_list.setVisible(view.closed)
        others = sum(not card.get("isself") for card in cards)
        leads = [card["name"] for card in cards if card.get("orchestrator")]  # docs/hierarchy.md
        led = f" · orchestrator: {', '.join(leads)}" if leads else ""
        self.count_label.setText(
            f"{len(cards)} member{'s' * (len(cards) != 1)} ({others} besides this agent){led} · hover a row for "
            "its skills"
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

    def _keep(self, dialog: QWidget) -> QWidget:
        self._dialogs.append(dialog)
        dialog.finished.connect(lambda _result: self._dialogs.remove(dialog) if dialog in self._dialogs else None)
        dialog.open()
        return dialog

    def open_invite(self, mode: str = "create") -> QWidget:
        """Create a closed group, or join one with an invite code (ui/dialogs/group_invite.py)."""
        from ui.dialogs.group_invite import GroupInviteDialog

        return self._keep(GroupInviteDialog(self.bridge, self, mode=mode))

    def open_zone(self, name: str = "") -> QWidget:
        """The zone editor: a new private zone, or the one called `name` (its members and description)."""
        from ui.dialogs.zone_editor import ZoneDialog

        zone = next((row for row in self.view.zones if row.get("zone") == name), None) if name else None
        return self._keep(ZoneDialog(self.bridge, self.view.members, zone, self))

    # --- removing a member (the founder) ---------------------------------------------------------

    def member_menu(self, card: dict[str, Any] | None) -> QMenu | None:
        """A row's context menu: "Remove from group…" for the founder, on anyone but itself (None: no menu)."""
        if card is None or not self.view.admin or card.get("isself") or card.get("membership") == "revoked":
            return None
        menu = QMenu(self)
        action = menu.addAction("Remove from group…")
        action.triggered.connect(lambda: self.ask_remove(card["agentid"], card.get("name", "")))
        return menu

    def _table_menu_at(self, pos: QPoint) -> None:
        menu = self.member_menu(self.table.card_at(self.table.rowAt(pos.y())))
        if menu is not None:
            menu.popup(self.table.viewport().mapToGlobal(pos))  # popup, never exec: no nested event loop

    def ask_remove(self, agentid: str, name: str) -> QWidget:
        who = f"{name or '?'} ({fmt.short_id(agentid)})"
        return confirm(
            self,
            "Remove from group",
            f"Remove {who} from the group?",
            "Every member drops it at once and ignores what it sends from then on. This is final for its key: "
            "to come back it needs a new identity and a fresh invite.",
            "Remove",
            lambda: self._start_removal(agentid, who),
        )

    def _start_removal(self, agentid: str, who: str) -> None:
        self.notice.show_info(f"Removing {who}…")
        task = asyncio.ensure_future(self._remove(agentid, who))
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def _remove(self, agentid: str, who: str) -> None:
        try:
            await self.bridge.group.admin.remove_member(agentid, "removed from the desktop app")
        except Exception as exc:
            if isValid(self):
                self.notice.show_error(exc)
        else:
            if isValid(self):
                self.notice.show_ok(f"Removed {who} from the group.")

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
