"""The settings dialog: model, generation, tools and workspace, appearance, group, remote server.

Every change goes through `core.setup.SetupService`: OK/Apply checks each changed field, shows the exact
validation message next to a field that is wrong and keeps the dialog open; only when every field is
valid are the changes written, in one atomic write (and an API key only ever to the OS keyring).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot
from shiboken6 import isValid

from core.errors import ShoalError
from core.setup import InvalidSettingsError, SetupService
from ui.dialogs.settings_fields import _Field, _float, _int, _number_text, _optional_int, _ParseError
from ui.dialogs.settings_remote import RemoteTab
from ui.dialogs.settings_schedule import ScheduleTab
from ui.widgets.inline_message import InlineMessage

THEMES = [("System", "system"), ("Light", "light"), ("Dark", "dark")]
THEME_KEY = "appearance.theme"
QWIDGETSIZE_MAX = 16777215


class SettingsDialog(QDialog):
    saved = Signal()
    connectGroupRequested = Signal()

    def __init__(self, setup: SetupService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setup = setup
        self.setWindowTitle("Settings")
        self.resize(700, 580)
        self.fields: dict[str, _Field] = {}
        self.errors: dict[str, InlineMessage] = {}
        self.testing = False

        self.tabs = QTabWidget()
        self.tabs.addTab(self._model_tab(), "Model")
        self.tabs.addTab(self._generation_tab(), "Generation")
        self.tabs.addTab(self._tools_tab(), "Tools && workspace")
        self.schedule_tab = ScheduleTab(self)
        self.tabs.addTab(self.schedule_tab, "Schedule")
        self.tabs.addTab(self._appearance_tab(), "Appearance")
        self.tabs.addTab(self._group_tab(), "Group")
        self.remote_tab = RemoteTab(self)
        self.tabs.addTab(self.remote_tab, "Remote")

        self.general_error = InlineMessage()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Apply
            | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.apply_button = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.buttons.accepted.connect(self._ok)
        self.buttons.rejected.connect(self.reject)
        self.apply_button.clicked.connect(self.apply)

        root = QVBoxLayout(self)
        root.addWidget(self.tabs, 1)
        root.addWidget(self.general_error)
        root.addWidget(self.buttons)
        self._load()

    # --- building ------------------------------------------------------------------------------

    def _row(
        self,
        form: QFormLayout,
        label: str,
        widget: QWidget,
        key: str,
        hint: str = "",
        extra: QWidget | None = None,
    ) -> InlineMessage:
        """A form row: the field (plus an optional button), its hint, and its inline error under it."""
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        line = QHBoxLayout()
        narrow = widget.maximumWidth() < QWIDGETSIZE_MAX
        line.addWidget(widget, 0 if narrow else 1)
        if extra is not None:
            line.addWidget(extra)
        if narrow:
            line.addStretch(1)
        column.addLayout(line)
        override = self.setup.overridden_by(key)
        if override:
            hint = (hint + " " if hint else "") + f"Currently set by {override}, which wins over this setting."
        if hint:
            note = QLabel(hint)
            note.setWordWrap(True)
            note.setEnabled(False)  # the palette's dimmed text
            column.addWidget(note)
        error = InlineMessage()
        column.addWidget(error)
        self.errors[key] = error
        form.addRow(label, box)
        return error

    def _line_field(
        self,
        form: QFormLayout,
        label: str,
        key: str,
        parse: Callable[[str], Any] = str,
        *,
        hint: str = "",
        placeholder: str = "",
        extra: QWidget | None = None,
        width: int = 0,
    ) -> QLineEdit:
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        if width:
            edit.setMaximumWidth(width)
        error = self._row(form, label, edit, key, hint, extra)
        edit.textEdited.connect(lambda _text: error.clear_message())
        self.fields[key] = _Field(
            key,
            lambda: parse(edit.text()),
            lambda value: edit.setText(_number_text(value)),
            error,
        )
        return edit

    @staticmethod
    def _form(parent: QWidget) -> QFormLayout:
        form = QFormLayout(parent)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        return form

    def _model_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)

        source = QHBoxLayout()
        self.local_radio = QRadioButton("A GGUF file on this computer")
        self.server_radio = QRadioButton("An OpenAI-compatible server")
        self.provider_group = QButtonGroup(self)
        self.provider_group.addButton(self.local_radio)
        self.provider_group.addButton(self.server_radio)
        self.provider_group.buttonToggled.connect(self._provider_toggled)
        source.addWidget(QLabel("Use:"))
        source.addWidget(self.local_radio)
        source.addWidget(self.server_radio)
        source.addStretch(1)
        layout.addLayout(source)
        self.fields["model.provider"] = _Field(
            "model.provider",
            lambda: "openai" if self.server_radio.isChecked() else "llama_cpp",
            lambda value: (self.server_radio if value == "openai" else self.local_radio).setChecked(True),
            InlineMessage(),
        )

        self.local_box = QGroupBox("Local model")
        local_form = self._form(self.local_box)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_model)
        self.model_path = self._line_field(
            local_form, "GGUF file", "model.path", placeholder="/path/to/model.gguf", extra=browse
        )
        self.browse_model_button = browse
        self.n_ctx = self._line_field(
            local_form, "Context window", "model.n_ctx", _int, hint="Tokens the model sees at once.", width=120
        )
        self.n_threads = self._line_field(
            local_form, "CPU threads", "model.n_threads", _int, hint="0 picks the number of cores.", width=120
        )
        layout.addWidget(self.local_box)

        self.server_box = QGroupBox("Server")
        server_form = self._form(self.server_box)
        self.base_url = self._line_field(
            server_form, "Address", "model.base_url", placeholder="http://localhost:11434/v1"
        )
        self.model_name = QComboBox()
        self.model_name.setEditable(True)
        self.model_name.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.model_name.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.test_button = QPushButton("Test")
        self.test_button.clicked.connect(self.test_endpoint)
        name_error = self._row(server_form, "Model name", self.model_name, "model.name", extra=self.test_button)
        self.fields["model.name"] = _Field(
            "model.name", lambda: self.model_name.currentText().strip(), self.model_name.setCurrentText, name_error
        )
        self.test_status = InlineMessage()
        server_form.addRow("", self.test_status)
        self.api_key = QLineEdit()
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.forget_key_button = QPushButton("Forget key")
        self.forget_key_button.clicked.connect(self._forget_key)
        self._row(server_form, "API key", self.api_key, "api_key", extra=self.forget_key_button)
        self.key_status = QLabel()
        server_form.addRow("", self.key_status)
        layout.addWidget(self.server_box)
        layout.addStretch(1)
        return tab

    def _generation_tab(self) -> QWidget:
        tab = QWidget()
        form = self._form(tab)
        self.temperature = self._line_field(
            form, "Temperature", "model.temperature", _float, hint="0 = focused, 2 = very random.", width=120
        )
        self.top_p = self._line_field(form, "Top p", "model.top_p", _float, hint="Between 0 and 1.", width=120)
        self.max_tokens = self._line_field(
            form, "Longest answer", "model.max_tokens", _int, hint="Tokens per model call.", width=120
        )
        self.seed = self._line_field(
            form, "Seed", "model.seed", _optional_int, placeholder="random", hint="Empty = random.", width=120
        )
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setMinimumHeight(140)
        error = self._row(form, "System prompt", self.system_prompt, "agent.system_prompt")
        self.system_prompt.textChanged.connect(error.clear_message)
        self.fields["agent.system_prompt"] = _Field(
            "agent.system_prompt", self.system_prompt.toPlainText, self.system_prompt.setPlainText, error
        )
        return tab

    def _tools_tab(self) -> QWidget:
        tab = QWidget()
        form = self._form(tab)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_workspace)
        self.browse_workspace_button = browse
        self.workspace = self._line_field(
            form,
            "Workspace folder",
            "tools.workspace",
            hint="File and shell tools cannot leave this folder.",
            placeholder="~/Shoal",
            extra=browse,
        )
        self.shell_auto = QCheckBox("Run programs (the shell tool) without asking each time")
        error = self._row(form, "High-risk tools", self.shell_auto, "tools.auto_approve")
        self.fields["tools.auto_approve"] = _Field("tools.auto_approve", self._auto_approve, self._show_auto, error)
        self.tool_timeout = self._line_field(form, "Tool time limit (s)", "tools.timeout", _float, width=120)
        self.shell_timeout = self._line_field(form, "Shell time limit (s)", "tools.shell_timeout", _float, width=120)
        self.web_timeout = self._line_field(form, "Web time limit (s)", "tools.web_timeout", _float, width=120)
        self.web_private = QCheckBox("Let web_fetch reach this computer and the local network")
        error = self._row(
            form, "Private addresses", self.web_private, "tools.web_allow_private", hint="Off unless you need it."
        )
        self.fields["tools.web_allow_private"] = _Field(
            "tools.web_allow_private", self.web_private.isChecked, self.web_private.setChecked, error
        )
        return tab

    def _appearance_tab(self) -> QWidget:
        tab = QWidget()
        form = self._form(tab)
        self.theme = QComboBox()
        for label, value in THEMES:
            self.theme.addItem(label, value)
        self.theme.setMaximumWidth(200)
        available = self.setup.has_setting(THEME_KEY)
        hint = "" if available else "Choosing a theme arrives in a later version; Shoal follows the system for now."
        error = self._row(form, "Theme", self.theme, THEME_KEY, hint=hint)
        self.theme.setEnabled(available)
        if available:
            self.fields[THEME_KEY] = _Field(
                THEME_KEY,
                lambda: self.theme.currentData(),
                lambda value: self.theme.setCurrentIndex(max(0, self.theme.findData(value))),
                error,
            )
        return tab

    def _group_tab(self) -> QWidget:
        """Group settings live in their own dialog, which tests each step to the brokers before it saves."""
        tab = QWidget()
        layout = QVBoxLayout(tab)
        self.group_hint = QLabel("Brokers, login, this agent's name and skills are set in the Connect-to-group dialog.")
        self.group_hint.setWordWrap(True)
        self.group_button = QPushButton("Connect to group…")
        self.group_button.clicked.connect(self.connectGroupRequested.emit)
        layout.addWidget(self.group_hint)
        layout.addWidget(self.group_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addStretch(1)
        return tab

    # --- values ----------------------------------------------------------------------------

    def _load(self) -> None:
        """Show the current settings; remember them to find what changed."""
        settings = self.setup.settings
        for key, field in self.fields.items():
            value: Any = settings
            for part in key.split("."):
                value = getattr(value, part)
            field.initial = list(value) if isinstance(value, list) else value
            field.write(value)
        self.api_key.clear()
        self.remote_tab.reset()
        self._show_key_status()
        self._provider_toggled()

    def _auto_approve(self) -> list[str]:
        initial = self.fields["tools.auto_approve"].initial or []
        others = [name for name in initial if name != "shell"]
        return others + (["shell"] if self.shell_auto.isChecked() else [])

    def _show_auto(self, value: list[str]) -> None:
        self.shell_auto.setChecked("shell" in value)

    def _show_key_status(self) -> None:
        stored = self.setup.has_stored_key()
        self.key_status.setText(self.setup.api_key_status())
        self.forget_key_button.setEnabled(stored)
        self.api_key.setPlaceholderText(
            "leave empty to keep the stored key" if stored else "optional: only hosted APIs need one"
        )

    def _provider_toggled(self, *_args: Any) -> None:
        server = self.server_radio.isChecked()
        self.local_box.setEnabled(not server)
        self.server_box.setEnabled(server)

    def changes(self) -> tuple[dict[str, Any], dict[str, str]]:
        """(changed values by key, messages for fields whose text is not a valid value)."""
        changed: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for key, field in self.fields.items():
            try:
                value = field.read()
            except _ParseError as exc:
                problems[key] = str(exc)
                continue
            if value != field.initial:
                changed[key] = value
        return changed, problems

    # --- actions ---------------------------------------------------------------------------

    def apply(self) -> bool:
        """Check every changed field; write them all, or nothing. True when saved (or nothing changed)."""
        for error in self.errors.values():
            error.clear_message()
        self.general_error.clear_message()
        changed, problems = self.changes()
        provider = changed.get("model.provider", self.fields["model.provider"].initial)
        if provider == "llama_cpp" and {"model.path", "model.provider"} & changed.keys():
            try:
                changed["model.path"] = str(self.setup.check_model_file(self.model_path.text()))
            except ShoalError as exc:
                self._show_problem("model.path", exc)
        if provider == "openai" and {"model.base_url", "model.provider"} & changed.keys():
            try:
                changed["model.base_url"] = self.setup.check_base_url(self.base_url.text())
            except ShoalError as exc:
                self._show_problem("model.base_url", exc)
        needs_name = {"model.provider", "model.name"} & changed.keys()
        if provider == "openai" and needs_name and not self.model_name.currentText().strip():
            problems["model.name"] = "Enter the model's name (Test lists what the server offers)."
        problems.update({k: v for k, v in self.setup.validate(changed).items() if k not in problems})
        for key, message in problems.items():
            self._show_problem(key, message)
        if any(error.kind == "error" for error in self.errors.values()):
            self._focus_first_error()
            return False
        key = self.api_key.text().strip()
        if key:
            try:
                self.setup.store_api_key(key)  # first: without a keyring nothing else is written either
            except ShoalError as exc:
                self.errors["api_key"].show_error(exc)
                self._focus_first_error()
                return False
        if not self.remote_tab.store_token():  # to the keyring, never config.toml
            self._focus_first_error()
            return False
        try:
            self.setup.save_many(changed)
        except InvalidSettingsError as exc:
            for name, message in exc.problems.items():
                self._show_problem(name, message)
            self._focus_first_error()
            return False
        except ShoalError as exc:
            self.general_error.show_error(exc)
            return False
        self._load()
        self.saved.emit()
        return True

    def _show_problem(self, key: str, problem: ShoalError | str) -> None:
        target = self.errors.get(key, self.general_error)
        if isinstance(problem, ShoalError):
            target.show_error(problem)
        else:
            target.show_error(problem if target is not self.general_error else f"{key}: {problem}")

    def _focus_first_error(self) -> None:
        for error in self.errors.values():
            if error.kind == "error":
                page = error
                while page is not None and self.tabs.indexOf(page) < 0:
                    page = page.parentWidget()
                if page is not None:
                    self.tabs.setCurrentWidget(page)
                return

    def _ok(self) -> None:
        if self.apply():
            self.accept()

    def _browse_model(self) -> None:
        start = self.model_path.text().strip() or str(self.setup.models_dir())
        path, _filter = QFileDialog.getOpenFileName(
            self, "Choose a GGUF model", start, "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.model_path.setText(path)
            self.errors["model.path"].clear_message()

    def _browse_workspace(self) -> None:
        start = self.workspace.text().strip() or str(self.setup.settings.tools.workspace_path())
        folder = QFileDialog.getExistingDirectory(self, "Choose the workspace folder", start)
        if folder:
            self.workspace.setText(folder)
            self.errors["tools.workspace"].clear_message()

    def _forget_key(self) -> None:
        try:
            self.setup.forget_api_key()
        except ShoalError as exc:
            self.errors["api_key"].show_error(exc)
        self._show_key_status()

    @asyncSlot()
    async def test_endpoint(self) -> None:
        if self.testing or not isValid(self):
            return
        self.testing = True
        self.test_button.setEnabled(False)
        self.test_status.show_info("Testing…")
        try:
            models = await self.setup.test_endpoint(
                self.base_url.text(), self.model_name.currentText(), self.api_key.text()
            )
        except Exception as exc:
            if isValid(self):
                self.test_status.show_error(exc)
        else:
            if isValid(self):
                typed = self.model_name.currentText()
                self.model_name.clear()
                self.model_name.addItems(models)
                self.model_name.setCurrentText(typed or (models[0] if models else ""))
                self.test_status.show_ok(f"✓ {len(models)} model{'s' if len(models) != 1 else ''}")
        finally:
            self.testing = False
            if isValid(self):
                self.test_button.setEnabled(True)
