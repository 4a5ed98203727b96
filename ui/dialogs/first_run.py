"""First run in the desktop app: pick a model found on this computer, a GGUF file, a server, or download one.

Everything goes through `core.setup.SetupService`; slow work (searching the disk, testing a server,
downloading) runs in `qasync.asyncSlot`s, so the window never freezes. Open it with `.open()`; it emits
`modelChosen` once a choice has been saved, then shows what was set up.
"""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QStyle,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot
from shiboken6 import isValid

from core.errors import ShoalError
from core.models.catalog import CatalogEntry
from core.models.download import DownloadCancelledError, DownloadProgress, format_size
from core.providers.discovery import FoundModel
from core.setup import ENDPOINT_PRESETS, SetupService
from ui.widgets.inline_message import OK_COLOR, InlineMessage

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


class DownloadPage(_Page):
    def __init__(self, setup: SetupService, parent: QWidget | None = None) -> None:
        super().__init__(setup, "Download a recommended model", parent)
        self.entries: list[CatalogEntry] = []
        self.intro = _explain("")
        self.layout_.addWidget(self.intro)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Model", "Parameters", "Download", "Needs"])
        self.tree.setRootIsDecorated(False)
        self.tree.setStyleSheet(TREE_STYLE)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemSelectionChanged.connect(self._selection_changed)
        self.layout_.addWidget(self.tree, 1)
        self.details = _explain("")
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setOpenExternalLinks(True)
        self.layout_.addWidget(self.details)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("%p%")
        self.progress.hide()
        self.layout_.addWidget(self.progress)
        self.status = InlineMessage()
        self.layout_.addWidget(self.status)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self.start)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.download_button)
        self.layout_.addLayout(buttons)
        self.downloading = False
        self.verification = ""
        self._cancel: asyncio.Event | None = None
        self._load()

    def _load(self) -> None:
        self.intro.setText(
            f"A small model that runs on this computer, without a network once downloaded. "
            f"It is saved in {self.setup.models_dir()}; a stopped download resumes where it left off."
        )
        try:
            self.entries = self.setup.catalog()
        except ShoalError as exc:
            self.status.show_error(exc)
            self.download_button.setEnabled(False)
            return
        for entry in self.entries:
            name = entry.name + (" — recommended" if entry.recommended else "")
            size = ("" if entry.verified else "≈ ") + format_size(entry.size_bytes)
            item = QTreeWidgetItem([name, entry.parameters, size, f"{entry.min_ram_gb:g} GB RAM"])
            item.setData(0, Qt.ItemDataRole.UserRole, entry.id)
            for column in (1, 2, 3):
                item.setTextAlignment(column, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if entry.recommended:
                font = item.font(0)
                font.setBold(True)
                item.setFont(0, font)
            self.tree.addTopLevelItem(item)
        default = next((i for i, e in enumerate(self.entries) if e.recommended), 0)
        if self.entries:
            self.tree.setCurrentItem(self.tree.topLevelItem(default))

    def selected(self) -> CatalogEntry | None:
        items = self.tree.selectedItems()
        if not items:
            return None
        model_id = items[0].data(0, Qt.ItemDataRole.UserRole)
        return next((e for e in self.entries if e.id == model_id), None)

    def select(self, model_id: str) -> None:
        for index in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(index)
            if item is not None and item.data(0, Qt.ItemDataRole.UserRole) == model_id:
                self.tree.setCurrentItem(item)

    def _selection_changed(self) -> None:
        entry = self.selected()
        if entry is None:
            self.details.setText("")
            self.download_button.setEnabled(False)
            return
        facts = [
            entry.quantization,
            f"context {entry.context_length:,} tokens",
            f"licence: {entry.license}",
        ]
        check = (
            "Checked against its published SHA-256 after downloading."
            if entry.sha256
            else "Shoal has no published checksum for this file yet: its size and format are checked, "
            "and its SHA-256 is shown."
        )
        link = f' <a href="{html.escape(entry.page)}">Model page</a>' if entry.page else ""
        self.details.setText(
            f"{html.escape(entry.description)}<br><small>{html.escape(' · '.join(f for f in facts if f))}. "
            f"{html.escape(check)}{link}</small>"
        )
        if not self.downloading:
            self._show_idle(entry)

    def _show_idle(self, entry: CatalogEntry) -> None:
        kept = self.setup.partial_download(entry)
        self.download_button.setEnabled(True)
        if self.setup.download_target(entry).exists():
            self.download_button.setText("Use the downloaded file")
        elif kept:
            self.download_button.setText(f"Resume download ({format_size(kept)} kept)")
        else:
            self.download_button.setText("Download")

    @asyncSlot()
    async def start(self) -> None:
        if not isValid(self):
            return
        entry = self.selected()
        if entry is None or self.downloading:
            return
        self.downloading = True
        self._cancel = asyncio.Event()
        self.verification = ""
        self.download_button.setEnabled(False)
        self.cancel_button.show()
        self.cancel_button.setEnabled(True)
        self.progress.show()
        self.progress.setValue(0)
        self.status.show_info(f"Connecting to {entry.url.split('/')[2]}…")
        chosen: Path | None = None
        failure: Exception | None = None
        try:
            chosen = self.setup.apply_local_model(await self.setup.download(entry, self._on_progress, self._cancel))
        except Exception as exc:
            failure = exc
        finally:
            self.downloading = False
            self._cancel = None
        if not isValid(self):
            return  # the dialog was deleted meanwhile
        self.cancel_button.hide()
        self._selection_changed()
        if isinstance(failure, DownloadCancelledError):
            self.status.show_info(f"{failure.message} {failure.fix}")
        elif failure is not None:
            self.status.show_error(failure)
        elif chosen is not None:
            self.progress.setValue(self.progress.maximum())
            self.chosen.emit(f"Downloaded {entry.name} to {chosen.parent}.\n{self.verification}")

    def _on_progress(self, p: DownloadProgress) -> None:
        if not isValid(self):
            return
        if p.phase == "checking":
            self.status.show_info(f"Checking the {format_size(p.done)} already downloaded…")
            return
        if p.phase == "verifying":
            self.status.show_info("Verifying the download…")
            return
        if p.phase == "done":
            self.progress.setValue(self.progress.maximum())
            if p.sha256_checked:
                self.verification = "✓ Verified: the SHA-256 matches the published one."
            else:
                self.verification = (
                    f"✓ Complete ({format_size(p.done)}); no published checksum to compare it with."
                    f"\nSHA-256: {p.sha256}"
                )
            self.status.show_ok(self.verification)
            return
        fraction = p.fraction
        if fraction is None:
            self.progress.setRange(0, 0)  # busy indicator: the server did not say how big
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(fraction * 1000))
        text = format_size(p.done) + (f" of {format_size(p.total)}" if p.total else "")
        if p.speed > 0:
            text += f" · {format_size(p.speed)}/s"
            if p.total:
                left = (p.total - p.done) / p.speed
                text += f" · about {_duration(left)} left"
        if p.resumed_from:
            text += f" · resumed at {format_size(p.resumed_from)}"
        self.status.show_info(text)

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self.cancel_button.setEnabled(False)
            self.status.show_info("Stopping…")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


# --- the dialog ---------------------------------------------------------------------------------


class DonePage(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 24, 8, 8)
        self.title = _heading("✓ Shoal is ready")
        self.title.setStyleSheet(f"color: {OK_COLOR}")
        self.summary = _explain("")
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hint = _explain("You can change the model any time in Settings.")
        self.start_button = QPushButton("Start using Shoal")
        self.start_button.setDefault(True)
        self.back_button = QPushButton("Choose something else")
        layout.addWidget(self.title)
        layout.addWidget(self.summary)
        layout.addWidget(self.hint)
        layout.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.back_button)
        row.addStretch(1)
        row.addWidget(self.start_button)
        layout.addLayout(row)


class FirstRunDialog(QDialog):
    modelChosen = Signal()

    def __init__(self, setup: SetupService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setup = setup
        self.setWindowTitle("Welcome to Shoal")
        self.resize(820, 560)
        self.setMinimumSize(QSize(680, 480))

        title = QLabel("Welcome to Shoal")
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 1.7)
        font.setBold(True)
        title.setFont(font)
        subtitle = _explain(
            "Shoal runs on your computer and needs a language model to think with. "
            "Pick one below; you can change it later in Settings."
        )

        self.found = FoundPage(setup)
        self.file = FilePage(setup)
        self.server = ServerPage(setup)
        self.download = DownloadPage(setup)
        self.done_page = DonePage()
        self.pages = QStackedWidget()
        style = self.style()
        self.choices = QListWidget()
        self.choices.setIconSize(QSize(20, 20))
        self.choices.setSpacing(2)
        entries = [
            (self.found, "On this computer", QStyle.StandardPixmap.SP_ComputerIcon),
            (self.file, "A GGUF file…", QStyle.StandardPixmap.SP_FileIcon),
            (self.server, "A server", QStyle.StandardPixmap.SP_DriveNetIcon),
            (self.download, "Download one", QStyle.StandardPixmap.SP_ArrowDown),
        ]
        for page, label, icon in entries:
            self.pages.addWidget(page)
            self.choices.addItem(QListWidgetItem(style.standardIcon(icon), label))
            page.chosen.connect(self._chosen)
        self.pages.addWidget(self.done_page)
        self.choices.setFixedWidth(190)
        self.choices.setStyleSheet("QListWidget { outline: 0; } QListWidget::item { padding: 7px 4px; }")
        self.choices.currentRowChanged.connect(self._show_page)
        self.done_page.start_button.clicked.connect(self.accept)
        self.done_page.back_button.clicked.connect(self._back)

        later = QPushButton("Set up later")
        later.setAutoDefault(False)
        later.clicked.connect(self.reject)
        self.later_button = later

        root = QVBoxLayout(self)
        root.setContentsMargins(20, 18, 20, 14)
        root.addWidget(title)
        root.addWidget(subtitle)
        root.addSpacing(8)
        body = QHBoxLayout()
        body.addWidget(self.choices)
        body.addWidget(self.pages, 1)
        root.addLayout(body, 1)
        footer = QHBoxLayout()
        footer.addStretch(1)
        footer.addWidget(later)
        root.addLayout(footer)
        self.choices.setCurrentRow(0)

    def page_names(self) -> list[str]:
        return ["found", "file", "server", "download"]

    def show_choice(self, name: str) -> None:
        self.choices.setCurrentRow(self.page_names().index(name))

    def _show_page(self, row: int) -> None:
        if row < 0:
            return
        self.choices.setEnabled(True)
        self.pages.setCurrentIndex(row)
        page = self.pages.currentWidget()
        if isinstance(page, _Page) and self.isVisible():
            page.activated()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        page = self.pages.currentWidget()
        if isinstance(page, _Page):
            page.activated()

    def _chosen(self, summary: str) -> None:
        self.modelChosen.emit()
        self.done_page.summary.setText(summary)
        self.pages.setCurrentWidget(self.done_page)
        self.later_button.hide()

    def _back(self) -> None:
        self.later_button.setText("Close")
        self.later_button.show()
        self._show_page(self.choices.currentRow())

    def done(self, result: int) -> None:
        self.download.cancel()  # a running download stops; its part is kept for next time
        super().done(result)
