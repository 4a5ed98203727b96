"""First run: use a GGUF model already on this computer."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)
from qasync import asyncSlot
from shiboken6 import isValid

from core.errors import ShoalError
from core.models.download import format_size
from core.providers.discovery import FoundModel
from core.setup import SetupService
from ui.dialogs.first_run_common import SOURCE_LABELS, TREE_STYLE, _explain, _Page
from ui.widgets.inline_message import InlineMessage


class FoundPage(_Page):
    def __init__(self, setup: SetupService, parent: QWidget | None = None) -> None:
        super().__init__(setup, "Use a model found on this computer", parent)
        self.layout_.addWidget(
            _explain("GGUF models that LM Studio, GPT4All or Ollama downloaded, or that sit in ~/models.")
        )
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Model", "Size", "Found in"])
        self.tree.setRootIsDecorated(False)
        self.tree.setStyleSheet(TREE_STYLE)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemSelectionChanged.connect(self._selection_changed)
        self.tree.itemDoubleClicked.connect(lambda *_: self.use_selected())
        self.layout_.addWidget(self.tree, 1)
        self.status = InlineMessage()
        self.layout_.addWidget(self.status)
        buttons = QHBoxLayout()
        self.refresh_button = QPushButton("Search again")
        self.refresh_button.clicked.connect(self.refresh)
        self.use_button = QPushButton("Use this model")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self.use_selected)
        buttons.addWidget(self.refresh_button)
        buttons.addStretch(1)
        buttons.addWidget(self.use_button)
        self.layout_.addLayout(buttons)
        self.searching = False
        self.searched = False

    def activated(self) -> None:
        if not self.searched and not self.searching:
            self.refresh()

    @asyncSlot()
    async def refresh(self) -> None:
        if self.searching or not isValid(self):
            return
        self.searching = True
        self.refresh_button.setEnabled(False)
        self.status.show_info("Searching this computer for GGUF models…")
        try:
            found = await self.setup.find_models()
        except Exception as exc:
            if not isValid(self):
                return
            self.status.show_error(exc)
        else:
            if not isValid(self):
                return  # the dialog was closed and deleted meanwhile
            self._fill(found)
        finally:
            self.searching = False
            self.searched = True
            self.refresh_button.setEnabled(True)

    def _fill(self, found: list[FoundModel]) -> None:
        self.tree.clear()
        for model in sorted(found, key=lambda m: (m.source != "configured", m.name.lower())):
            item = QTreeWidgetItem([model.name, format_size(model.size), SOURCE_LABELS.get(model.source, model.source)])
            item.setData(0, Qt.ItemDataRole.UserRole, str(model.path))
            item.setToolTip(0, str(model.path))
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.tree.addTopLevelItem(item)
        if found:
            self.tree.setCurrentItem(self.tree.topLevelItem(0))
            self.status.clear_message()
        else:
            self.status.show_info(
                "No GGUF models were found. Choose a file, connect to a server, or download a recommended model."
            )

    def _selection_changed(self) -> None:
        self.use_button.setEnabled(bool(self.tree.selectedItems()))

    def use_selected(self) -> None:
        items = self.tree.selectedItems()
        if not items:
            return
        path = items[0].data(0, Qt.ItemDataRole.UserRole)
        try:
            chosen = self.setup.apply_local_model(path)
        except ShoalError as exc:
            self.status.show_error(exc)
            return
        self.chosen.emit(f"Shoal will use {chosen.name}, found at {chosen.parent}.")


# --- (b) a GGUF file ------------------------------------------------------------------------
