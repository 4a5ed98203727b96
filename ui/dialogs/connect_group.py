"""The Connect-to-group dialog: where the brokers are, how to log in, who this agent is to its peers.

Everything goes through `bridge.group`: `validate` marks each wrong field with its message (nothing is
written while one is wrong), `connect_group` keeps the password in the OS keyring, writes the rest to
config.toml and joins, `test_group_connection` streams one check at a time into the report under the form.
The test runs as a task the Stop button (or closing the dialog) cancels, so the window never waits on a
broker that does not answer. Login fields appear only for SASL protocols and certificate files only for TLS
ones, so a PLAINTEXT set-up on a home network shows nothing it does not need.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot
from shiboken6 import isValid

from ui.bridge import Bridge
from ui.group_form import SASL_PROTOCOLS, SSL_PROTOCOLS, InvalidGroupSettings
from ui.widgets.check_list import CheckList
from ui.widgets.form_row import field_row, form_layout
from ui.widgets.group_format import check_style
from ui.widgets.inline_message import InlineMessage
from ui.widgets.skills_editor import SkillsEditor

log = logging.getLogger(__name__)
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PEM_FILTER = "Certificates and keys (*.pem *.crt *.cer *.key);;All files (*)"
VERDICTS = {
    "ok": "Every step works: Connect to join the group.",
    "warn": "It works, with warnings: read them above before connecting.",
    "fail": "Not connected: fix the first failed step above, then test again.",
}


class ConnectGroupDialog(QDialog):
    connected = Signal()
    disconnected = Signal()

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setWindowTitle("Connect to a group")
        self.resize(940, 840)
        self.errors: dict[str, InlineMessage] = {}
        self.busy = False
        self._test_task: asyncio.Task[None] | None = None
        intro = QLabel(
            "Join a Kafka group of Shoal agents: peers see this agent in their roster and can send it tasks "
            "for the skills it offers. Chat keeps working whatever the brokers do."
        )
        intro.setWordWrap(True)
        columns = QHBoxLayout()
        columns.addWidget(self._connection_box(), 1)
        columns.addWidget(self._agent_box(), 1)
        skills_box = QGroupBox("Skills this agent offers")
        skills_form = form_layout(skills_box)
        self.skills = SkillsEditor()
        self.skills.changed.connect(self._fit_later)
        hint = "Each skill is a task queue peers send work to. With none, this agent only asks, never answers."
        self._row(skills_form, "", self.skills, "skills", hint)
        self.checks = CheckList(self)
        self.checks.setMinimumHeight(140)
        self.test_button = QPushButton("Test connection")
        self.test_button.setToolTip("Check each step to the brokers with these settings (nothing is saved)")
        self.test_button.clicked.connect(self.toggle_test)
        test_bar = QHBoxLayout()
        test_bar.addWidget(self.test_button)
        test_bar.addStretch(1)
        self.general_error = InlineMessage()
        self.buttons = QDialogButtonBox()
        self.connect_button = self.buttons.addButton("Connect", QDialogButtonBox.ButtonRole.AcceptRole)
        self.connect_button.setDefault(True)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.disconnect_button = QPushButton("Disconnect")  # apart from Connect: it undoes, it does not confirm
        self.disconnect_button.setToolTip("Leave the group and keep group mode off")
        self.invite_button = QPushButton("Closed group…")  # ui/dialogs/group_invite.py
        self.invite_button.setToolTip("Create a group only invited agents can join, or join one with an invite code")
        self.invite_button.clicked.connect(lambda: self.open_invite())
        bottom = QHBoxLayout()
        bottom.addWidget(self.disconnect_button)
        bottom.addWidget(self.invite_button)
        bottom.addWidget(self.buttons, 1)
        self.connect_button.clicked.connect(self.connect_group)
        self.disconnect_button.clicked.connect(self.disconnect_group)
        self.cancel_button.clicked.connect(self.reject)
        form_page = QWidget()
        page = QVBoxLayout(form_page)
        page.setContentsMargins(0, 0, 0, 0)
        page.addLayout(columns)
        page.addWidget(skills_box)
        page.addStretch(1)
        # SASL + TLS fields with their messages outgrow a small screen: the form scrolls, nothing is squeezed.
        self.form_scroll = QScrollArea()
        self.form_scroll.setWidgetResizable(True)
        self.form_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.form_scroll.setWidget(form_page)
        root = QVBoxLayout(self)
        root.addWidget(intro)
        root.addWidget(self.form_scroll, 3)
        root.addLayout(test_bar)
        root.addWidget(self.checks, 1)
        root.addWidget(self.general_error)
        root.addLayout(bottom)
        self._load()

    # --- building ------------------------------------------------------------------------------

    def _row(
        self, form: QFormLayout, label: str, widget: QWidget, key: str, hint: str = "", extra: Any = None
    ) -> QWidget:
        box, error = field_row(form, label, widget, hint, extra)
        self.errors[key] = error
        if isinstance(widget, QLineEdit):
            widget.textEdited.connect(lambda _text: error.clear_message())
        return box

    def _line(self, placeholder: str = "", *, password: bool = False) -> QLineEdit:
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        if password:
            edit.setEchoMode(QLineEdit.EchoMode.Password)
        return edit

    def _connection_box(self) -> QGroupBox:
        box = QGroupBox("Brokers")
        form = form_layout(box)
        self.servers = self._line("kafka-1.example.com:9092, kafka-2.example.com:9092")
        self._row(form, "Bootstrap servers", self.servers, "bootstrap_servers", "host:port, separated by commas.")
        self.protocol = QComboBox()
        self.protocol.addItems(PROTOCOLS)
        self.protocol.currentTextChanged.connect(self._protocol_changed)
        self._row(form, "Security", self.protocol, "security_protocol", "SSL encrypts; SASL logs in with a user.")
        # One form, so every label lines up; the rows a protocol does not use are hidden, label and all.
        self.mechanism = QComboBox()
        self.mechanism.addItems(MECHANISMS)
        self.username = self._line("your Kafka user")
        self.password = self._line(password=True)
        self._sasl_rows = [
            self._row(form, "Mechanism", self.mechanism, "sasl_mechanism"),
            self._row(form, "User name", self.username, "sasl_username"),
            self._row(form, "Password", self.password, "password", "Kept in the OS keyring, never in the config file."),
        ]
        self.cafile, ca_row = self._file_row(form, "CA certificate", "ssl_cafile", "Empty: the system's CAs.")
        self.certfile, cert_row = self._file_row(form, "Client certificate", "ssl_certfile", "Only for mutual TLS.")
        self.keyfile, key_row = self._file_row(form, "Client key", "ssl_keyfile")
        self._tls_rows = [ca_row, cert_row, key_row]
        self._connection_form = form
        return box

    def _file_row(self, form: QFormLayout, label: str, key: str, hint: str = "") -> tuple[QLineEdit, QWidget]:
        edit = self._line("/path/to/file.pem")
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda: self._browse(edit, label, key))
        setattr(self, f"browse_{key}", browse)
        return edit, self._row(form, label, edit, key, hint, browse)

    def _agent_box(self) -> QGroupBox:
        box = QGroupBox("This agent")
        form = form_layout(box)
        self.group_name = self._line("team")
        self._row(
            form, "Group name", self.group_name, "name", "Every member uses the same name (topics group.<name>.*)."
        )
        self.agent_name = self._line()
        self._row(form, "Agent name", self.agent_name, "agent_name", "How peers see this agent.")
        self.description = self._line("what this agent is good at")
        self._row(form, "Description", self.description, "description")
        self.zone = self._line("public")
        self._row(form, "Zone", self.zone, "zone", "Carried on every message this agent sends.")
        return box

    # --- values --------------------------------------------------------------------------------

    def _load(self) -> None:
        group = self.bridge.group
        settings = group.settings()
        self.servers.setText(", ".join(settings.bootstrap_servers))
        self.protocol.setCurrentText(settings.security_protocol)
        self.mechanism.setCurrentText(settings.sasl_mechanism)
        self.username.setText(settings.sasl_username)
        for edit, value in ((self.cafile, settings.ssl_cafile), (self.certfile, settings.ssl_certfile),
                            (self.keyfile, settings.ssl_keyfile)):  # fmt: skip
            edit.setText(value)
        self.group_name.setText(settings.name)
        self.agent_name.setText(settings.agent_name)
        self.agent_name.setPlaceholderText(settings.display_name())
        self.description.setText(settings.description)
        self.zone.setText(settings.zone)
        self.skills.set_skills(list(settings.skills))
        stored = group.password_stored()
        self.password.setPlaceholderText("stored: leave empty to keep it" if stored else "")
        self.disconnect_button.setEnabled(group.group_state().state != "off")
        self._protocol_changed(self.protocol.currentText())

    def values(self) -> dict[str, Any]:
        """What the form says, keyed like `GroupSettings` (plus the password)."""
        return {
            "bootstrap_servers": self.servers.text(),
            "security_protocol": self.protocol.currentText(),
            "sasl_mechanism": self.mechanism.currentText(),
            "sasl_username": self.username.text(),
            "password": self.password.text(),
            "ssl_cafile": self.cafile.text(),
            "ssl_certfile": self.certfile.text(),
            "ssl_keyfile": self.keyfile.text(),
            "name": self.group_name.text(),
            "agent_name": self.agent_name.text(),
            "description": self.description.text(),
            "zone": self.zone.text(),
            "skills": self.skills.value(),
        }

    def _protocol_changed(self, protocol: str) -> None:
        for rows, shown in ((self._sasl_rows, protocol in SASL_PROTOCOLS), (self._tls_rows, protocol in SSL_PROTOCOLS)):
            for row in rows:
                self._connection_form.setRowVisible(row, shown)
        self._fit_later()

    def _fit_later(self) -> None:
        QTimer.singleShot(0, self._fit_form)  # once the shown and hidden rows are laid out

    def _fit_form(self) -> None:
        """The form takes the height it needs (it scrolls when the window has less), the report the rest."""
        if isValid(self):
            page = self.form_scroll.widget()
            self.form_scroll.setMaximumHeight(page.sizeHint().height() + 2 * self.form_scroll.frameWidth())

    def _browse(self, edit: QLineEdit, label: str, key: str) -> None:
        path, _filter = QFileDialog.getOpenFileName(self, f"Choose the {label.lower()}", edit.text(), PEM_FILTER)
        if path:
            edit.setText(path)
            self.errors[key].clear_message()

    # --- problems ------------------------------------------------------------------------------

    def _clear_problems(self) -> None:
        for error in self.errors.values():
            error.clear_message()
        self.skills.show_problems({})
        self.general_error.clear_message()
        self._fit_later()

    def show_problems(self, problems: dict[str, str]) -> None:
        """Each message next to its field (a skill's on its row); anything else under the form."""
        rows: dict[int, str] = {}
        for key, message in problems.items():
            parts = key.split(".")
            if parts[0] == "skills" and len(parts) > 1 and parts[1].isdigit():
                rows.setdefault(int(parts[1]), message)
            elif key in self.errors:
                self.errors[key].show_error(message)
            else:
                self.general_error.show_error(f"{key}: {message}")
        self.skills.show_problems(rows)
        first = next((e for e in self.errors.values() if e.kind == "error"), None)
        first = first or next((r.error for r in self.skills.rows if r.error.kind == "error"), None)
        if first is not None:
            self.form_scroll.ensureWidgetVisible(first)
        self._fit_later()

    def _checked_values(self, *, need_password: bool) -> dict[str, Any] | None:
        self._clear_problems()
        values = self.values()
        problems = self.bridge.group.validate(values, need_password=need_password)
        if problems:
            self.show_problems(problems)
            return None
        return values

    # --- connecting ----------------------------------------------------------------------------

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        for button in (self.connect_button, self.disconnect_button):
            button.setEnabled(not busy)

    async def _run(self, action: Callable[[], Any], busy_text: str, done: Signal) -> None:
        if self.busy:
            return
        self._set_busy(True)
        self.general_error.show_info(busy_text)
        try:
            await action()
        except InvalidGroupSettings as exc:
            if isValid(self):
                self.general_error.clear_message()
                self.show_problems(exc.problems)
        except Exception as exc:
            if isValid(self):
                self.general_error.show_error(exc)
        else:
            if isValid(self):
                done.emit()
                self.accept()
        finally:
            if isValid(self):
                self._set_busy(False)
                self.disconnect_button.setEnabled(self.bridge.group.group_state().state != "off")

    @asyncSlot()
    async def connect_group(self) -> None:
        values = self._checked_values(need_password=True)
        if values is not None:
            await self._run(lambda: self.bridge.group.connect_group(values), "Connecting…", self.connected)

    @asyncSlot()
    async def disconnect_group(self) -> None:
        self._clear_problems()
        await self._run(self.bridge.group.disconnect_group, "Leaving the group…", self.disconnected)

    def open_invite(self, mode: str = "create") -> QDialog:
        """Create or join a closed group. Once in one this form is out of date, so it closes with that dialog."""
        from ui.dialogs.group_invite import GroupInviteDialog

        dialog = GroupInviteDialog(self.bridge, self, mode=mode)
        dialog.entered.connect(lambda _how: self.connected.emit())
        dialog.finished.connect(lambda _result: self.accept() if isValid(self) and dialog.outcome else None)
        dialog.open()
        return dialog

    # --- testing -------------------------------------------------------------------------------

    @property
    def testing(self) -> bool:
        return self._test_task is not None and not self._test_task.done()

    def toggle_test(self) -> None:
        """Start the test, or stop the one running."""
        if self.testing:
            assert self._test_task is not None
            self._test_task.cancel()
            return
        values = self._checked_values(need_password=False)
        if values is None:
            return
        self.checks.clear()
        self.test_button.setText("Stop test")
        self.checks.set_status("Testing…")
        self._test_task = asyncio.ensure_future(self._test(values))

    async def _test(self, values: dict[str, Any]) -> None:
        try:
            async for check in self.bridge.group.test_group_connection(values):
                if not isValid(self):
                    return
                self.checks.add_check(check)
        except asyncio.CancelledError:
            if isValid(self):
                self.checks.set_status("Stopped.")
        except Exception as exc:
            if isValid(self):
                self.checks.set_status("")
                self.general_error.show_error(exc)
        else:
            verdict = self.bridge.group.test_verdict(self.checks.checks)
            symbol, colour = check_style(verdict)
            self.checks.set_status(f"{symbol} {VERDICTS.get(verdict, verdict)}", colour)
        finally:
            if isValid(self):
                self.test_button.setText("Test connection")

    def done(self, result: int) -> None:
        """Closing the dialog stops a running test (its Kafka clients close with it)."""
        if self.testing:
            assert self._test_task is not None
            self._test_task.cancel()
        super().done(result)
