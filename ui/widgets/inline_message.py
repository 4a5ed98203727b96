"""A label that shows an error (message, then what to do), a success or a hint right next to what it is about."""

from __future__ import annotations

import html
import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

from core.errors import ShoalError, classify

log = logging.getLogger(__name__)

ERROR_COLOR = "#c62828"
OK_COLOR = "#2e7d32"


class InlineMessage(QLabel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.kind = ""
        self.plain = ""
        self.hide()

    def show_error(self, error: BaseException | str, fix: str = "") -> None:
        if isinstance(error, BaseException):
            if not isinstance(error, ShoalError):
                log.warning("unexpected error shown inline", exc_info=error)
            shoal = classify(error)
            message, fix = shoal.message, shoal.fix
        else:
            message = error
        body = html.escape(message)
        if fix:
            body += f"<br><span>→ {html.escape(fix)}</span>"
        plain = f"{message}\n→ {fix}" if fix else message
        self._set("error", f'<span style="color:{ERROR_COLOR}">{body}</span>', plain)

    def show_ok(self, text: str) -> None:
        self._set("ok", f'<span style="color:{OK_COLOR}">{html.escape(text)}</span>', text)

    def show_info(self, text: str) -> None:
        self._set("info", html.escape(text), text)

    def clear_message(self) -> None:
        self.kind = self.plain = ""
        self.setText("")
        self.hide()

    def _set(self, kind: str, rich: str, plain: str) -> None:
        self.kind, self.plain = kind, plain
        self.setText(rich.replace("\n", "<br>"))
        self.show()
