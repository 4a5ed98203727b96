"""Shared pieces of the first-run dialog's pages."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QLabel,
    QVBoxLayout,
    QWidget,
)

from core.setup import SetupService

SOURCE_LABELS = {
    "configured": "Shoal's models folder",
    "lmstudio": "LM Studio",
    "gpt4all": "GPT4All",
    "ollama": "Ollama",
    "home": "~/models",
}
CUSTOM_PRESET = "Custom"
TREE_STYLE = "QTreeWidget::item { padding: 3px 2px; }"


def _explain(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setPointSizeF(font.pointSizeF() * 1.2)
    font.setBold(True)
    label.setFont(font)
    return label


class _Page(QWidget):
    """One way to choose a model. Emits `chosen(summary)` after the choice was saved."""

    chosen = Signal(str)

    def __init__(self, setup: SetupService, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setup = setup
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(16, 8, 8, 8)
        self.layout_.addWidget(_heading(title))

    def activated(self) -> None:
        """Called when the page is shown."""


# --- (a) models found on this computer ---------------------------------------------------------
