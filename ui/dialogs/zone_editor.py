"""A private zone, new or changed (the founder only; docs/groups.md, "Zones"): a name, what it is for, and a tick
per admitted member who may see it. Its tasks and memory items are then sealed for those members alone.

Opened on an existing zone it changes the member list and description (the name stays), or deletes the zone
(after asking: what was sealed for it stays sealed, and new envelopes can no longer be sent in it).

Each change is published on the control topic and the dialog closes once it is read back (as every member
reads it); it runs as a task on the qasync loop, so the window never waits, and closing the dialog stops
waiting (the change may still take effect).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid

from ui.bridge import Bridge
from ui.widgets import group_format as fmt
from ui.widgets.form_row import field_row, form_layout
from ui.widgets.inline_message import InlineMessage

ID_ROLE = Qt.ItemDataRole.UserRole


class ZoneDialog(QDialog):
    def __init__(
        self,
        bridge: Bridge,
        members: list[dict[str, str]],
        zone: dict[str, Any] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """`members`: the admitted members (agentid, name); `zone`: a `Zone.row()` to change (None: a new one)."""
        super().__init__(parent)
        self.bridge = bridge
        self.zone = zone
        self.setWindowTitle(f"Private zone {zone['zone']}" if zone else "New private zone")
        self.resize(520, 460)
        self.task: asyncio.Task[None] | None = None
        box = QWidget()
        form = form_layout(box)
        self.name = QLineEdit(zone["zone"] if zone else "")
        self.name.setPlaceholderText("finance")
        self.name.setReadOnly(zone is not None)
        hint = "A zone keeps its name." if zone else "Lowercase letters, digits, - or _."
        _b, self.name_error = field_row(form, "Name", self.name, hint)
        self.description = QLineEdit(str(zone.get("description", "")) if zone else "")
        self.description.setPlaceholderText("what the zone is for")
        field_row(form, "Description", self.description)
        self.members = QListWidget()
        self._fill(members, zone)
        _b, self.members_error = field_row(form, "Members", self.members, "Only they can read what is sent in it.")
        self.status = InlineMessage()
        self.buttons = QDialogButtonBox()
        self.save_button = self.buttons.addButton(
            "Save" if zone else "Create zone", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.delete_button = self.buttons.addButton("Delete zone…", QDialogButtonBox.ButtonRole.DestructiveRole)
        self.delete_button.setVisible(zone is not None)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel).clicked.connect(self.reject)
        self.save_button.clicked.connect(self.save)
        self.delete_button.clicked.connect(self.ask_delete)
        layout = QVBoxLayout(self)
        layout.addWidget(box, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)

    def _fill(self, members: list[dict[str, str]], zone: dict[str, Any] | None) -> None:
        """A row per admitted member, ticked when on the zone; a listed agent no longer admitted shows too (ticked,
        so saving without looking does not drop it unseen)."""
        listed = {m["agentid"]: m.get("name", "") for m in (zone or {}).get("members", [])}
        rows = [(m["agentid"], m.get("name") or "?", "") for m in members]
        known = {agentid for agentid, _name, _note in rows}
        rows += [(a, name or "?", "  not admitted") for a, name in listed.items() if a not in known]
        for agentid, name, note in rows:
            item = QListWidgetItem(f"{name}  ({fmt.short_id(agentid)}){note}")
            item.setData(ID_ROLE, agentid)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if agentid in listed else Qt.CheckState.Unchecked)
            self.members.addItem(item)

    def check(self, agentid: str, checked: bool = True) -> None:
        for row in range(self.members.count()):
            item = self.members.item(row)
            if item.data(ID_ROLE) == agentid:
                item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def chosen(self) -> list[str]:
        items = [self.members.item(row) for row in range(self.members.count())]
        return [item.data(ID_ROLE) for item in items if item.checkState() == Qt.CheckState.Checked]

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def save(self) -> None:
        if self.busy:
            return
        self.name_error.clear_message()
        self.members_error.clear_message()
        name, members, description = self.name.text().strip(), self.chosen(), self.description.text().strip()
        admin = self.bridge.group.admin
        problem = "" if self.zone else admin.zone_problem(name)
        if problem:
            self.name_error.show_error(problem)
        if not members:
            self.members_error.show_error(
                "Tick at least one member." + (" To end the zone, use Delete zone." if self.zone else "")
            )
        if problem or not members:
            return
        if self.zone:
            self._run(f"Saving zone {name}…", admin.change_zone(name, members, description))
        else:
            self._run(f"Defining zone {name}…", admin.define_zone(name, members, description))

    def ask_delete(self) -> QMessageBox:
        """Asks first (Cancel is the default); Yes deletes."""
        name = self.name.text()
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Delete zone",
            f"Delete the private zone {name}?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setInformativeText(
            "Nothing more can be sent in it. What was already sealed for it stays readable only by its members."
        )
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.button(QMessageBox.StandardButton.Yes).setText("Delete zone")
        box.button(QMessageBox.StandardButton.Yes).clicked.connect(
            lambda: self._run(f"Deleting zone {name}…", self.bridge.group.admin.remove_zone(name))
        )
        box.open()
        return box

    def _run(self, doing: str, change: Awaitable[None]) -> None:
        self.save_button.setEnabled(False)
        self.delete_button.setEnabled(False)
        self.status.show_info(doing)
        self.task = asyncio.ensure_future(self._apply(change))

    async def _apply(self, change: Awaitable[None]) -> None:
        try:
            await change
        except Exception as exc:
            if isValid(self):
                self.status.show_error(exc)
                self.save_button.setEnabled(True)
                self.delete_button.setEnabled(True)
        else:
            if isValid(self):
                self.accept()

    def done(self, result: int) -> None:
        if self.busy:
            assert self.task is not None
            self.task.cancel()
        super().done(result)
