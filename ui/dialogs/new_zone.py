"""New private zone (the founder only; docs/groups.md, "Zones"): a name, what it is for, and a tick per admitted
member who may see it. Its tasks and memory items are then sealed for those members alone.

The definition is published on the control topic and the dialog closes once it is read back (as every member
reads it); it runs as a task on the qasync loop, so the window never waits, and closing the dialog stops
waiting (the definition may still take effect).
"""

from __future__ import annotations

import asyncio

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid

from ui.bridge import Bridge
from ui.widgets import group_format as fmt
from ui.widgets.form_row import field_row, form_layout
from ui.widgets.inline_message import InlineMessage

ID_ROLE = Qt.ItemDataRole.UserRole


class NewZoneDialog(QDialog):
    def __init__(self, bridge: Bridge, members: list[dict[str, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setWindowTitle("New private zone")
        self.resize(520, 460)
        self.task: asyncio.Task[None] | None = None
        box = QWidget()
        form = form_layout(box)
        self.name = QLineEdit()
        self.name.setPlaceholderText("finance")
        _b, self.name_error = field_row(form, "Name", self.name, "Lowercase letters, digits, - or _.")
        self.description = QLineEdit()
        self.description.setPlaceholderText("what the zone is for")
        field_row(form, "Description", self.description)
        self.members = QListWidget()
        for member in members:
            item = QListWidgetItem(f"{member.get('name') or '?'}  ({fmt.short_id(member['agentid'])})")
            item.setData(ID_ROLE, member["agentid"])
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.members.addItem(item)
        _b, self.members_error = field_row(form, "Members", self.members, "Only they can read what is sent in it.")
        self.status = InlineMessage()
        self.buttons = QDialogButtonBox()
        self.create_button = self.buttons.addButton("Create zone", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel).clicked.connect(self.reject)
        self.create_button.clicked.connect(self.create)
        layout = QVBoxLayout(self)
        layout.addWidget(box, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)

    def check(self, agentid: str, checked: bool = True) -> None:
        for row in range(self.members.count()):
            item = self.members.item(row)
            if item.data(ID_ROLE) == agentid:
                item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def chosen(self) -> list[str]:
        items = [self.members.item(row) for row in range(self.members.count())]
        return [item.data(ID_ROLE) for item in items if item.checkState() == Qt.CheckState.Checked]

    def create(self) -> None:
        if self.task is not None and not self.task.done():
            return
        self.name_error.clear_message()
        self.members_error.clear_message()
        name, members = self.name.text().strip(), self.chosen()
        problem = self.bridge.group.admin.zone_problem(name)
        if problem:
            self.name_error.show_error(problem)
        if not members:
            self.members_error.show_error("Tick at least one member.")
        if problem or not members:
            return
        self.create_button.setEnabled(False)
        self.status.show_info(f"Defining zone {name}…")
        self.task = asyncio.ensure_future(self._define(name, members, self.description.text().strip()))

    async def _define(self, name: str, members: list[str], description: str) -> None:
        try:
            await self.bridge.group.admin.define_zone(name, members, description)
        except Exception as exc:
            if isValid(self):
                self.status.show_error(exc)
                self.create_button.setEnabled(True)
        else:
            if isValid(self):
                self.accept()

    def done(self, result: int) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        super().done(result)
