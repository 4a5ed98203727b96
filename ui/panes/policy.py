"""The Policy pane: which file the rules come from, the rules in force in the order they are tried, token
quota usage, and “Check…” (what the rules would decide for one request).

A dock beside the timeline (rather than a Settings tab) because it is about what happens, not about a
setting: a person edits policy.toml in their editor ("Open file"), presses Reload, and sees either the new
rules or the file's mistake with its line, right here and without closing anything; the rules in force stay
as they were until the file is good. Quota usage follows each finished turn.

In remote mode the server's policy decides, so the pane says "Managed on the server" and asks nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.errors import ShoalError
from ui.bridge import Bridge
from ui.tasks import spawn
from ui.widgets.inline_message import InlineMessage
from ui.widgets.policy_check import PolicyCheck
from ui.widgets.policy_rules import PolicyRules
from ui.widgets.quota_table import QuotaTable

log = logging.getLogger(__name__)
REMOTE_TEXT = (
    "<b>Managed on the server.</b><br><br>In remote mode the server's policy decides what its model, tools "
    "and peers may see, and labels what you send. On that machine, <code>shoal policy show</code> lists its "
    "rules and <code>shoal policy usage</code> its token quotas."
)
NO_QUOTAS = "No quotas in the policy. Add [[quotas]] tables to the policy file to cap tokens per day or month."


class PolicyPane(QWidget):
    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.policy = bridge.policy
        self.open_url = QDesktopServices.openUrl  # replaced in tests: nothing is launched there
        self.file_label = QLabel(self)
        self.file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.file_label.setWordWrap(True)
        self.open_button = QPushButton("Open file", self)
        self.reload_button = QPushButton("&Reload", self)
        self.reload_button.setToolTip("Read the policy file again; the new rules apply from the next turn")
        self.message = InlineMessage(self)
        self.state = QLabel(self)
        self.state.setWordWrap(True)
        self.state.setStyleSheet("color: palette(placeholder-text);")
        self.rules = PolicyRules(self)
        self.rule_detail = QLabel(self)
        self.rule_detail.setWordWrap(True)
        self.rule_detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.rule_detail.setStyleSheet("color: palette(placeholder-text);")
        self.quotas = QuotaTable(self)
        self.quota_note = QLabel(self)
        self.quota_note.setWordWrap(True)
        self.usage_button = QPushButton("Refresh", self)
        self.check = PolicyCheck(self.policy, self)
        self.tabs = QTabWidget(self)
        self.remote_note = QLabel(REMOTE_TEXT, self)
        self.stack = QStackedWidget(self)
        self._build()
        self.open_button.clicked.connect(self.open_file)
        self.reload_button.clicked.connect(self.reload)
        self.usage_button.clicked.connect(lambda: spawn(self.refresh_usage()))
        self.rules.currentItemChanged.connect(lambda *_: self.rule_detail.setText(self.rules.selected_text()))
        self.policy.changed.connect(self._on_changed)
        bridge.turnEnded.connect(self._on_turn_ended)

    def _build(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.file_label, 1)
        top.addWidget(self.open_button)
        top.addWidget(self.reload_button)
        rules_tab = QWidget(self)
        rules_column = QVBoxLayout(rules_tab)
        rules_column.setContentsMargins(0, 4, 0, 0)
        rules_column.addWidget(self.rules, 1)
        rules_column.addWidget(self.rule_detail)
        usage_tab = QWidget(self)
        usage_column = QVBoxLayout(usage_tab)
        usage_column.setContentsMargins(0, 4, 0, 0)
        usage_column.addWidget(self.quotas, 1)
        usage_bar = QHBoxLayout()
        usage_bar.addWidget(self.quota_note, 1)
        usage_bar.addWidget(self.usage_button)
        usage_column.addLayout(usage_bar)
        self.tabs.addTab(rules_tab, "Rules")
        self.tabs.addTab(usage_tab, "Usage")
        self.tabs.addTab(self.check, "Check…")
        self.tabs.currentChanged.connect(self._on_tab)
        content = QWidget(self)
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(top)
        column.addWidget(self.message)
        column.addWidget(self.state)
        column.addWidget(self.tabs, 1)
        self.remote_note.setWordWrap(True)
        self.remote_note.setTextFormat(Qt.TextFormat.RichText)
        self.remote_note.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.remote_note.setContentsMargins(8, 8, 8, 8)
        self.stack.addWidget(content)
        self.stack.addWidget(self.remote_note)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.stack)

    # --- public API ------------------------------------------------------------------------------------

    @property
    def managed_remotely(self) -> bool:
        return self.stack.currentWidget() is self.remote_note

    async def start(self) -> None:
        self.refresh()
        await self.refresh_usage()

    def refresh(self) -> None:
        """Show the file and the rules in force (the server's note in remote mode)."""
        if not self.policy.available:
            self.stack.setCurrentWidget(self.remote_note)
            return
        self.stack.setCurrentWidget(self.stack.widget(0))
        path = self.policy.file_path()
        in_use = self.policy.file_in_use()
        where = str(path).replace(str(Path.home()), "~", 1)
        if not self.policy.enabled:
            self.file_label.setText(f"Policy file: {where} (not read: policy.enabled = false)")
        elif in_use is None:
            self.file_label.setText(f"Policy file: {where} (none yet: only the built-in defaults apply)")
        else:
            self.file_label.setText(f"Policy file: {where}")
        self.file_label.setToolTip(str(path))
        exists = path.is_file()
        self.open_button.setText("Open file" if exists else "Create file…")
        self.open_button.setToolTip(
            "Open the policy file in your editor, then Reload"
            if exists else "Write a commented example policy there (as `shoal policy init`) and open it"
        )  # fmt: skip
        rows = self.policy.rules()
        yours = sum(1 for r in rows if not r.builtin)
        state = f"Default label: {self.policy.default_label} · {yours} rule{'s' * (yours != 1)} of yours, "
        state += f"{len(rows) - yours} built-in · the first rule that matches decides"
        if not self.policy.enabled:
            state = "policy.enabled = false: everything is allowed as before policies (high-risk tools still ask)"
        self.state.setText(state)
        self.rules.show_rules(rows, self.policy.other_tables(), path.name)
        self.rule_detail.setText("")
        self.check.refresh()

    async def refresh_usage(self) -> None:
        if not self.policy.available:
            return
        try:
            rows = await self.policy.usage()
        except ShoalError as exc:
            self.quota_note.setText(f"Could not read usage: {exc.message}")
            return
        self.quotas.show_usage(rows)
        self.quota_note.setText("" if rows else NO_QUOTAS)
        self.quotas.setVisible(bool(rows))

    def reload(self) -> bool:
        """Re-read the file: the new rules, or the file's mistake (with its line) under the buttons."""
        if not self.policy.available:
            return False
        try:
            self.policy.reload()  # emits changed: the rules and usage are shown again
        except Exception as exc:
            self.message.show_error(exc)
            self.state.setText("The file has a mistake: the rules below are still the ones in force.")
            return False
        yours = sum(1 for r in self.policy.rules() if not r.builtin)
        self.message.show_ok(f"Reloaded: {yours} rule{'s' * (yours != 1)} of yours; they apply from the next turn.")
        return True

    def open_file(self) -> None:
        """Open the policy file in the system's editor (writing the commented example first when there is none)."""
        if not self.policy.available:
            return
        try:
            path = self.policy.file_path()
            if not path.is_file():
                path = self.policy.create_file()
                self.message.show_ok(f"Wrote an example policy to {path}: edit it, then Reload.")
        except Exception as exc:
            self.message.show_error(exc)
            return
        if not self.open_url(QUrl.fromLocalFile(str(path))):
            self.message.show_error(f"No application opened {path}.", "Open it in a text editor, then Reload.")

    # --- reactions -------------------------------------------------------------------------------------

    def _on_changed(self) -> None:
        self.message.clear_message()  # an old mistake or "Reloaded" no longer applies
        self.refresh()
        spawn(self.refresh_usage())

    def _on_turn_ended(self, _session_id: str, _final: object) -> None:
        spawn(self.refresh_usage())  # the turn's model calls were counted against the quotas

    def _on_tab(self, index: int) -> None:
        if self.tabs.widget(index) is not None and self.tabs.tabText(index) == "Usage":
            spawn(self.refresh_usage())

    def showEvent(self, event: QShowEvent) -> None:
        """Shown again (its dock raised): the rules may have changed with the settings meanwhile."""
        super().showEvent(event)
        if self.policy.available:
            self.refresh()
