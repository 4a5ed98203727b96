"""Closed groups from the desktop (docs/groups.md): create one (this agent becomes its founder and gets the
invite code, shown once) or join one with an invite code someone gave you.

Both run as a task on the qasync loop through `bridge.group.admin`, each step said under the form while it
runs; the buttons and fields are locked meanwhile, and closing the dialog cancels the task (the bridge then
takes back what it had done: the secret leaves the keyring, the group settings are restored). A refusal
(a name in use, the wrong secret, an admin said no, nobody online to answer) is shown with what to do.

The invite code exists only in this dialog: it is not saved anywhere but inside the keyring entry of the
secret, so the dialog says so, offers Copy, and forgets the code when it closes.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication, QTextOption
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid

from ui.bridge import Bridge
from ui.group_form import InvalidGroupSettings
from ui.widgets.form_row import field_row, form_layout
from ui.widgets.inline_message import InlineMessage

CREATE_TEXT = (
    "A closed group lets in only agents that hold its invite code. This agent becomes the founder: it alone "
    "removes members and defines private zones; any member that is online lets newcomers in."
)
JOIN_TEXT = "Paste the invite code the group's founder gave you. A member must be online to let this agent in."
ONCE_TEXT = (
    "<b>Shown once.</b> Copy this invite code now and hand it over through a channel you trust: anyone holding "
    "it can ask to join. Shoal keeps only the secret in the OS keyring and cannot show this code again."
)
ONCE_COLOUR = "#b45309"


class GroupInviteDialog(QDialog):
    entered = Signal(str)  # "created" | "joined": this agent is now in a closed group

    def __init__(self, bridge: Bridge, parent: QWidget | None = None, *, mode: str = "create") -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setWindowTitle("Closed group")
        self.resize(680, 520)
        self.task: asyncio.Task[None] | None = None
        self.busy = False
        self.errors: dict[str, InlineMessage] = {}
        self.outcome = ""  # "created" | "joined" once it worked
        self.tabs = QTabWidget()
        self.tabs.addTab(self._create_page(), "Create a closed group")
        self.tabs.addTab(self._join_page(), "Join with an invite code")
        self.tabs.setCurrentIndex(1 if mode == "join" else 0)
        self.status = InlineMessage()
        buttons = QDialogButtonBox()
        self.close_button = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.close_button.clicked.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.status)
        layout.addWidget(buttons)

    # --- building ------------------------------------------------------------------------------

    def _create_page(self) -> QWidget:
        page = QWidget()
        column = QVBoxLayout(page)
        column.addWidget(_wrapped(CREATE_TEXT))
        box = QWidget()
        form = form_layout(box)
        settings = self.bridge.group.settings()
        self.group_name = QLineEdit()
        self.group_name.setPlaceholderText("research")
        self._row(form, "Group name", self.group_name, "name", "Topics are named group.<name>.*")
        self.servers = QLineEdit(", ".join(settings.bootstrap_servers))
        self.servers.setPlaceholderText("broker.lan:9092")
        self._row(form, "Bootstrap servers", self.servers, "bootstrap_servers", "Put into the invite: host:port, …")
        self.founder_name = QLineEdit(settings.agent_name)
        self.founder_name.setPlaceholderText(settings.display_name())
        self._row(form, "Your name", self.founder_name, "agent_name", "How the members see this agent.")
        column.addWidget(box)
        self.create_button = QPushButton("Create group")
        self.create_button.clicked.connect(self.create)
        column.addWidget(self.create_button)
        self.code_box = self._code_box()
        column.addWidget(self.code_box)
        column.addStretch(1)
        self._create_inputs: list[QWidget] = [self.group_name, self.servers, self.founder_name, self.create_button]
        return page

    def _code_box(self) -> QFrame:
        frame = QFrame()
        frame.setFrameShape(QFrame.Shape.StyledPanel)
        frame.setObjectName("inviteCode")
        frame.setStyleSheet(f"QFrame#inviteCode {{ border: 1px solid {ONCE_COLOUR}; border-radius: 4px; }}")
        self.once_label = _wrapped(f'<span style="color:{ONCE_COLOUR}">{ONCE_TEXT}</span>')
        self.code_field = QLineEdit()
        self.code_field.setReadOnly(True)
        self.code_field.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.copy_button = QPushButton("Copy")
        self.copy_button.clicked.connect(self.copy_code)
        line = QHBoxLayout()
        line.addWidget(self.code_field, 1)
        line.addWidget(self.copy_button)
        column = QVBoxLayout(frame)
        column.addWidget(self.once_label)
        column.addLayout(line)
        frame.hide()
        return frame

    def _join_page(self) -> QWidget:
        page = QWidget()
        column = QVBoxLayout(page)
        column.addWidget(_wrapped(JOIN_TEXT))
        box = QWidget()
        form = form_layout(box)
        self.code_edit = QPlainTextEdit()
        self.code_edit.setPlaceholderText("shoal-invite-1:…")
        self.code_edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.code_edit.setWordWrapMode(QTextOption.WrapMode.WrapAnywhere)
        self.code_edit.setMaximumHeight(90)
        self.code_edit.textChanged.connect(self._describe_code)
        self.about = QLabel()  # what the pasted code says
        self.about.setWordWrap(True)
        self.about.setEnabled(False)
        code_box = QWidget()
        code_column = QVBoxLayout(code_box)
        code_column.setContentsMargins(0, 0, 0, 0)
        code_column.addWidget(self.code_edit)
        code_column.addWidget(self.about)
        self._row(form, "Invite code", code_box, "code")
        settings = self.bridge.group.settings()
        self.joiner_name = QLineEdit(settings.agent_name)
        self.joiner_name.setPlaceholderText(settings.display_name())
        self._row(form, "Your name", self.joiner_name, "join_agent_name", "How the members see this agent.")
        column.addWidget(box)
        self.join_button = QPushButton("Join group")
        self.join_button.setEnabled(False)
        self.join_button.clicked.connect(self.join)
        column.addWidget(self.join_button)
        column.addStretch(1)
        self._join_inputs: list[QWidget] = [self.code_edit, self.joiner_name, self.join_button]
        return page

    def _row(self, form: Any, label: str, widget: QWidget, key: str, hint: str = "", extra: Any = None) -> None:
        _box, error = field_row(form, label, widget, hint, extra)
        self.errors[key] = error

    # --- the invite code -----------------------------------------------------------------------

    def _describe_code(self) -> None:
        """What the pasted code says (group, brokers, founder), or why it is not an invite."""
        code = self.code_edit.toPlainText().strip()
        self.errors["code"].clear_message()
        self.about.clear()
        valid = False
        if code:
            try:
                about = self.bridge.group.admin.read_invite(code)
            except Exception as exc:
                self.errors["code"].show_error(exc)
            else:
                servers = ", ".join(about["servers"]) or "the configured brokers"
                self.about.setText(
                    f"Group <b>{html.escape(about['group'])}</b> at {html.escape(servers)}, "
                    f"founded by {html.escape(about['founder'][:12])}"
                )
                valid = True
        self.join_button.setEnabled(valid and not self.busy and not self.outcome)

    def copy_code(self) -> None:
        QGuiApplication.clipboard().setText(self.code_field.text())
        self.copy_button.setText("Copied")

    # --- running -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def create(self) -> None:
        name = self.group_name.text().strip()
        if not name:
            self.errors["name"].show_error("Give the group a name.")
            return
        admin = self.bridge.group.admin
        self._start(
            lambda: admin.create_closed_group(
                name, self.servers.text(), self.founder_name.text(), progress=self._progress
            ),
            self._created,
        )

    def join(self) -> None:
        code, name = self.code_edit.toPlainText().strip(), self.joiner_name.text()
        admin = self.bridge.group.admin
        self._start(lambda: admin.join_with_invite(code, name, progress=self._progress), self._joined)

    def _start(self, action: Callable[[], Awaitable[str]], done: Callable[[str], None]) -> None:
        if self.running:
            return
        for error in self.errors.values():
            error.clear_message()
        self._set_busy(True)
        self.status.show_info("Starting…")
        self.task = asyncio.ensure_future(self._run(action, done))

    async def _run(self, action: Callable[[], Awaitable[str]], done: Callable[[str], None]) -> None:
        try:
            result = await action()
        except asyncio.CancelledError:
            raise
        except InvalidGroupSettings as exc:
            if isValid(self):
                self._show_problems(exc.problems)
        except Exception as exc:
            if isValid(self):
                self.status.show_error(exc)
        else:
            if isValid(self):
                done(result)
        finally:
            if isValid(self):
                self._set_busy(False)

    def _progress(self, text: str) -> None:
        if isValid(self):
            self.status.show_info(text)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        finished = bool(self.outcome)  # after success the form stays as it was: it did its job
        for widget in self._create_inputs + self._join_inputs:
            widget.setEnabled(not busy and not finished)
        self._describe_code()  # Join only with a valid code
        self.tabs.tabBar().setEnabled(not busy)

    def _show_problems(self, problems: dict[str, str]) -> None:
        """Each message under its field; what the invite dialog has no field for (a SASL password…) below."""
        joining = self.tabs.currentIndex() == 1
        fields = (
            {"agent_name": "join_agent_name"}
            if joining
            else {k: k for k in ("name", "bootstrap_servers", "agent_name")}
        )
        general: list[str] = []
        for key, message in problems.items():
            if key in fields:
                self.errors[fields[key]].show_error(message)
            else:
                general.append(f"{key}: {message}")
        if general:
            self.status.show_error("; ".join(general), "Fix it in File › Connect to group…, then try again.")
        else:
            self.status.clear_message()

    def _created(self, code: str) -> None:
        self.outcome = "created"
        self.code_field.setText(code)
        self.code_field.setCursorPosition(0)
        self.code_box.show()
        self.copy_button.setFocus()
        group = self.bridge.group.settings().name
        self.status.show_ok(f"Group {group} founded: this agent is its founder. Keep a member online to let others in.")
        self.entered.emit("created")

    def _joined(self, name: str) -> None:
        self.outcome = "joined"
        group = self.bridge.group.settings().name
        self.status.show_ok(f"Admitted to group {group} as {name}.")
        self.entered.emit("joined")

    def done(self, result: int) -> None:
        """Closing cancels a running create or join (the bridge undoes it) and forgets the invite code."""
        if self.running:
            assert self.task is not None
            self.task.cancel()
        self.code_field.clear()
        super().done(result)


def _wrapped(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label
