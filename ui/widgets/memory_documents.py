"""The Memory pane's Documents section: the folders whose files the agent may recall, and their scans.

Folders are added, removed and rescanned here; a scan runs in the background (`MemoryBridge.scanProgress`)
and the progress bar follows it file by file, hidden when no scan runs. Files that could not be indexed are
listed with the reason (binary, too large, unreadable…) behind a toggle, so "why does it not know my file?"
has an answer without opening a log.
"""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ui.memory_bridge import MemoryBridge
from ui.tasks import spawn
from ui.widgets import memory_format as fmt
from ui.widgets.confirm import confirm
from ui.widgets.inline_message import InlineMessage

FOLDER_ROLE = Qt.ItemDataRole.UserRole + 1


class MemoryDocuments(QWidget):
    def __init__(self, memory: MemoryBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.memory = memory
        self.progress: Any = None  # the last ScanProgress seen
        self.peak = (0, 0)  # (done, total) of the furthest the current or last scan got
        self._tasks: set[asyncio.Task[Any]] = set()
        self._confirm: QMessageBox | None = None
        self._build()
        memory.scanProgress.connect(self.show_progress)

    def _build(self) -> None:
        self.title = QLabel("<b>Documents</b>")
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip("Index the text files in a folder (and its subfolders) so the agent can recall them")
        self.add_button.clicked.connect(self.choose_folder)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Stop indexing the selected folder and forget its documents")
        self.remove_button.clicked.connect(self.confirm_remove)
        self.rescan_button = QPushButton("Rescan")
        self.rescan_button.setToolTip("Look for new, changed and deleted files in every folder now")
        self.rescan_button.clicked.connect(lambda: self._run(self.memory.rescan()))
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.title, 1)
        for button in (self.add_button, self.remove_button, self.rescan_button):
            bar.addWidget(button)
        self.folders = QTreeWidget()
        self.folders.setHeaderLabels(["Folder", "Files", "Skipped", "Last scan"])
        self.folders.setRootIsDecorated(False)
        self.folders.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.folders.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.folders.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.folders.itemSelectionChanged.connect(self._update_buttons)
        self.empty = QLabel("No folder is indexed. Add one to let the agent recall what your files say.")
        self.empty.setWordWrap(True)
        self.empty.setEnabled(False)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.bar.hide()
        self.scan_error = InlineMessage()
        self.skipped_toggle = QToolButton()
        self.skipped_toggle.setCheckable(True)
        self.skipped_toggle.setAutoRaise(True)
        self.skipped_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.skipped_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.skipped_toggle.toggled.connect(self._toggle_skipped)
        self.skipped = QTreeWidget()
        self.skipped.setHeaderLabels(["File", "Why it was skipped"])
        self.skipped.setRootIsDecorated(False)
        self.skipped.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.skipped.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.skipped.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.skipped.header().setStretchLastSection(False)
        self.skipped.hide()
        self.skipped_toggle.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(bar)
        layout.addWidget(self.empty)
        layout.addWidget(self.folders, 1)
        layout.addWidget(self.bar)
        layout.addWidget(self.scan_error)
        layout.addWidget(self.skipped_toggle, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.skipped, 1)
        layout.addStretch(0)
        self._update_buttons()

    # --- data --------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Re-read the folders and the skipped files from the index."""
        status = await self.memory.status()
        self.set_folders(status.get("folders") or [])
        self.set_skipped([(str(path), str(reason)) for path, reason in status.get("skipped") or []])
        indexed = int(status.get("documents") or 0)
        self.title.setText(f"<b>Documents</b> · {indexed} file{'s' * (indexed != 1)} indexed")

    def set_folders(self, folders: list[dict[str, Any]]) -> None:
        keep = self.selected_folder()
        self.folders.clear()
        for folder in folders:
            scanned = folder.get("scanned_at")
            item = QTreeWidgetItem(self.folders)
            item.setText(0, str(folder.get("path", "")))
            item.setText(1, str(folder.get("files", 0)))
            item.setText(2, str(folder.get("skipped", 0)))
            item.setText(3, fmt.date_text(str(scanned), long=True) if scanned else "not yet")
            item.setToolTip(0, str(folder.get("path", "")))
            for col in (1, 2):
                item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setData(0, FOLDER_ROLE, folder)
            if keep is not None and keep.get("id") == folder.get("id"):
                self.folders.setCurrentItem(item)
        self.empty.setVisible(not folders)
        self.folders.setVisible(bool(folders))
        self._update_buttons()

    def set_skipped(self, skipped: list[tuple[str, str]]) -> None:
        self.skipped.clear()
        for path, reason in skipped:
            item = QTreeWidgetItem(self.skipped, [path, reason])
            item.setToolTip(0, path)
            item.setToolTip(1, reason)
        self.skipped_toggle.setText(f"Skipped files ({len(skipped)})")
        self.skipped_toggle.setVisible(bool(skipped))
        self.skipped.setVisible(bool(skipped) and self.skipped_toggle.isChecked())

    def folder_rows(self) -> list[dict[str, Any]]:
        return [self.folders.topLevelItem(i).data(0, FOLDER_ROLE) for i in range(self.folders.topLevelItemCount())]

    def skipped_rows(self) -> list[tuple[str, str]]:
        items = (self.skipped.topLevelItem(i) for i in range(self.skipped.topLevelItemCount()))
        return [(item.text(0), item.text(1)) for item in items]

    def selected_folder(self) -> dict[str, Any] | None:
        items = self.folders.selectedItems()
        return items[0].data(0, FOLDER_ROLE) if items else None

    # --- scans -------------------------------------------------------------------------------------

    def show_progress(self, progress: Any) -> None:
        """Follow a scan: a busy bar while files are listed, then done / total with the current file's name."""
        first = self.progress is None or self.progress.state in ("done", "failed")
        self.progress = progress
        if progress.state == "scanning":
            self.peak = (0, 0) if first else self.peak
            self.bar.setRange(0, 0)
            self.bar.setFormat(f"Looking for files in {fmt.file_name(progress.folder)}…")
            self.bar.show()
            self.scan_error.clear_message()
        elif progress.state == "indexing":
            self.bar.setRange(0, max(progress.total, 1))
            self.bar.setValue(progress.done)
            name = fmt.file_name(progress.current) if progress.current else ""
            room = max(60, self.bar.width() - QFontMetrics(self.bar.font()).horizontalAdvance("0000 / 0000 · ") - 24)
            elided = QFontMetrics(self.bar.font()).elidedText(name, Qt.TextElideMode.ElideMiddle, room)
            self.bar.setFormat(f"%v / %m · {elided}" if elided else "%v / %m")
            self.bar.setToolTip(progress.current)
            self.bar.show()
            self.peak = max(self.peak, (progress.done, progress.total))
        else:
            self.bar.hide()
            if progress.state == "failed":
                self.scan_error.show_error(progress.error or "The scan failed.", "Check the folder, then Rescan.")
            self._run(self.refresh())
        self._update_buttons()

    # --- commands ----------------------------------------------------------------------------------

    def choose_folder(self) -> None:
        """A normal (non-async) slot, so the static folder dialog may run its own event loop here."""
        path = QFileDialog.getExistingDirectory(self, "Choose a folder to index")
        if path:
            self._run(self._add(path))

    async def _add(self, path: str) -> None:
        if await self.memory.add_folder(path) is not None:
            await self.refresh()

    def confirm_remove(self) -> QMessageBox | None:
        """Ask first, without blocking (opened with open(); the answer arrives as a signal)."""
        folder = self.selected_folder()
        if folder is None:
            return None
        self._confirm = confirm(
            self,
            "Remove folder",
            f"Stop indexing {folder['path']}?",
            "Its documents are forgotten by the agent. The files themselves are not touched.",
            "Remove",
            lambda: self._run(self._remove(str(folder["id"]))),
        )
        return self._confirm

    async def _remove(self, folder_id: str) -> None:
        await self.memory.remove_folder(folder_id)
        await self.refresh()

    # --- plumbing ----------------------------------------------------------------------------------

    def _toggle_skipped(self, shown: bool) -> None:
        self.skipped_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.skipped.setVisible(shown and self.skipped.topLevelItemCount() > 0)

    def _update_buttons(self) -> None:
        scanning = self.memory.scanning()
        self.remove_button.setEnabled(self.selected_folder() is not None and not scanning)
        self.rescan_button.setEnabled(self.folders.topLevelItemCount() > 0 and not scanning)

    def _run(self, coro: Any) -> None:
        task = spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for refreshes and commands started here (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
