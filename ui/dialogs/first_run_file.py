"""First run: choose a GGUF file."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

from core.errors import ShoalError
from core.setup import SetupService
from ui.dialogs.first_run_common import _explain, _Page
from ui.widgets.inline_message import InlineMessage


class FilePage(_Page):
    def __init__(self, setup: SetupService, parent: QWidget | None = None) -> None:
        super().__init__(setup, "Choose a GGUF file", parent)
        self.layout_.addWidget(
            _explain(
                "Pick a model file in GGUF format (…/model-name.Q4_K_M.gguf). Other formats need converting first."
            )
        )
        row = QHBoxLayout()
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("/path/to/model.gguf")
        self.path_edit.textChanged.connect(lambda _text: self.error.clear_message())
        self.browse_button = QPushButton("Choose a GGUF file…")
        self.browse_button.clicked.connect(self.browse)
        row.addWidget(self.path_edit, 1)
        row.addWidget(self.browse_button)
        self.layout_.addLayout(row)
        self.error = InlineMessage()
        self.layout_.addWidget(self.error)
        self.layout_.addStretch(1)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.use_button = QPushButton("Use this file")
        self.use_button.clicked.connect(self.use_file)
        buttons.addWidget(self.use_button)
        self.layout_.addLayout(buttons)

    def browse(self) -> None:
        start = self.path_edit.text().strip() or str(self.setup.models_dir())
        path, _filter = QFileDialog.getOpenFileName(
            self, "Choose a GGUF model", start, "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.path_edit.setText(path)
            self.use_file()

    def use_file(self) -> None:
        try:
            chosen = self.setup.apply_local_model(self.path_edit.text())
        except ShoalError as exc:
            self.error.show_error(exc)
            return
        self.chosen.emit(f"Shoal will use {chosen.name} from {chosen.parent}.")


# --- (c) a server ---------------------------------------------------------------------------
