"""First run in the desktop app: pick a model found on this computer, a GGUF file, a server, or download one.

Everything goes through `core.setup.SetupService`; slow work (searching the disk, testing a server,
downloading) runs in `qasync.asyncSlot`s, so the window never freezes. Open it with `.open()`; it emits
`modelChosen` once a choice has been saved, then shows what was set up.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QShowEvent
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QStackedWidget,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from core.setup import SetupService
from ui.dialogs.first_run_common import _explain, _heading, _Page
from ui.dialogs.first_run_download import DownloadPage
from ui.dialogs.first_run_file import FilePage
from ui.dialogs.first_run_found import FoundPage
from ui.dialogs.first_run_server import ServerPage
from ui.widgets.inline_message import OK_COLOR


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
