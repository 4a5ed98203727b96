"""First run: connect to an OpenAI-compatible server (with a Test button)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QWidget,
)
from qasync import asyncSlot
from shiboken6 import isValid

from core.errors import ShoalError
from core.setup import ENDPOINT_PRESETS, SetupService
from ui.dialogs.first_run_common import CUSTOM_PRESET, _explain, _Page
from ui.widgets.inline_message import InlineMessage


class ServerPage(_Page):
    def __init__(self, setup: SetupService, parent: QWidget | None = None) -> None:
        super().__init__(setup, "Connect to a server", parent)
        self.layout_.addWidget(
            _explain(
                "Any OpenAI-compatible server: Ollama, LM Studio or llama.cpp's server on this computer, "
                "or a hosted API. Test lists the models it offers."
            )
        )
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.preset = QComboBox()
        self.preset.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        for name, url in ENDPOINT_PRESETS:
            self.preset.addItem(f"{name}  ({url})", url)
        self.preset.addItem(CUSTOM_PRESET, "")
        self.preset.currentIndexChanged.connect(self._preset_chosen)
        self.base_url = QLineEdit(ENDPOINT_PRESETS[0][1])
        self.base_url.setPlaceholderText("http://localhost:11434/v1")
        self.base_url.textEdited.connect(self._url_edited)
        self.url_error = InlineMessage()
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.model.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        line_edit = self.model.lineEdit()
        if line_edit is not None:
            line_edit.setPlaceholderText("model name, e.g. qwen2.5:1.5b (Test fills this list)")
        self.model.currentTextChanged.connect(lambda _text: self._update_buttons())
        self.model_error = InlineMessage()
        self.api_key = QLineEdit()
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("optional: only hosted APIs need one; stored in the OS keyring")
        self.key_error = InlineMessage()
        form.addRow("Preset", self.preset)
        form.addRow("Server address", self.base_url)
        form.addRow("", self.url_error)
        form.addRow("Model", self.model)
        form.addRow("", self.model_error)
        form.addRow("API key", self.api_key)
        form.addRow("", self.key_error)
        self.layout_.addLayout(form)
        test_row = QHBoxLayout()
        self.test_button = QPushButton("Test")
        self.test_button.clicked.connect(self.test)
        self.test_status = InlineMessage()
        test_row.addWidget(self.test_button, 0, Qt.AlignmentFlag.AlignTop)
        test_row.addWidget(self.test_status, 1)
        self.layout_.addLayout(test_row)
        self.layout_.addStretch(1)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.save_button = QPushButton("Use this server")
        self.save_button.clicked.connect(self.save)
        buttons.addWidget(self.save_button)
        self.layout_.addLayout(buttons)
        self.testing = False
        self.base_url.textChanged.connect(lambda _text: self._update_buttons())
        self._update_buttons()

    def _preset_chosen(self, index: int) -> None:
        url = self.preset.itemData(index)
        if url:
            self.base_url.setText(url)
        self.test_status.clear_message()

    def _url_edited(self, text: str) -> None:
        index = self.preset.findData(text.strip().rstrip("/"))
        self.preset.blockSignals(True)
        self.preset.setCurrentIndex(index if index >= 0 else self.preset.count() - 1)
        self.preset.blockSignals(False)
        self.url_error.clear_message()

    def _update_buttons(self) -> None:
        has_url = bool(self.base_url.text().strip())
        self.test_button.setEnabled(has_url and not self.testing)
        self.save_button.setEnabled(has_url and bool(self.model.currentText().strip()) and not self.testing)

    @asyncSlot()
    async def test(self) -> None:
        if self.testing or not isValid(self):
            return
        self.testing = True
        self._update_buttons()
        self.test_button.setText("Testing…")
        self.test_status.show_info(f"Asking {self.base_url.text().strip()} for its models…")
        try:
            models = await self.setup.test_endpoint(self.base_url.text(), self.model.currentText(), self.api_key.text())
        except Exception as exc:
            if isValid(self):
                self.test_status.show_error(exc)
        else:
            if isValid(self):
                self._show_models(models)
        finally:
            self.testing = False
            if isValid(self):
                self.test_button.setText("Test")
                self._update_buttons()

    def _show_models(self, models: list[str]) -> None:
        typed = self.model.currentText().strip()
        self.model.blockSignals(True)
        self.model.clear()
        self.model.addItems(models)
        self.model.blockSignals(False)
        if typed:
            self.model.setCurrentText(typed)
        elif models:
            self.model.setCurrentIndex(0)
        count = f"{len(models)} model{'s' if len(models) != 1 else ''}"
        if typed and models and typed not in models:
            self.test_status.show_error(
                f"✓ Connected ({count}), but it does not list {typed}.", "Pick a model from the list."
            )
        elif not models:
            self.test_status.show_error("✓ Connected, but it offers no models.", "Load or pull a model on the server.")
        else:
            self.test_status.show_ok(f"✓ {count}")
        self._update_buttons()

    def save(self) -> None:
        for label in (self.url_error, self.model_error, self.key_error):
            label.clear_message()
        key = self.api_key.text().strip() or None
        try:
            self.setup.apply_endpoint(self.base_url.text(), self.model.currentText(), key)
        except ShoalError as exc:
            problems = getattr(exc, "problems", None)
            if problems:
                for dotted, message in problems.items():
                    target = self.model_error if dotted == "model.name" else self.url_error
                    target.show_error(message)
            else:
                self.key_error.show_error(exc)
            return
        self.api_key.clear()
        stored = " The API key is in the OS keyring." if key else ""
        model, url = self.model.currentText().strip(), self.base_url.text().strip()
        self.chosen.emit(f"Shoal will use {model} at {url}.{stored}")


# --- (d) download -------------------------------------------------------------------------------
