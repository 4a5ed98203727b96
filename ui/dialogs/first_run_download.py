"""First run: download a recommended model (progress, resume, verification)."""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)
from qasync import asyncSlot
from shiboken6 import isValid

from core.errors import ShoalError
from core.models.catalog import CatalogEntry
from core.models.download import DownloadCancelledError, DownloadProgress, format_size
from core.setup import SetupService
from ui.dialogs.first_run_common import TREE_STYLE, _explain, _Page
from ui.widgets.inline_message import InlineMessage


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
