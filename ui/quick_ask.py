"""The quick-ask box: a small always-on-top window to ask one thing without opening the main window.

It keeps one session of its own ("Quick ask", created on first use and reused after), so follow-up
questions have context and everything is in the timeline like any other session. "Open in main
window" hands that session over to the main window.

Keys: Enter asks, Esc hides (an answer keeps streaming), Ctrl+O opens the session in the main window,
Ctrl+N starts a fresh quick-ask session, Ctrl+. stops the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QCursor,
    QGuiApplication,
    QKeyEvent,
    QPalette,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from core import events as ev
from core.errors import classify
from ui.bridge import Bridge

log = logging.getLogger(__name__)

SESSION_TITLE = "Quick ask"
ACCENT = "#0d9488"
# (light palette, dark palette)
LINK = ("#0f766e", "#5eead4")
ERROR = ("#b42318", "#f97066")
ERROR_HOVER_BG = ("#fdecea", "#3b1d1b")


def _is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def stylesheet(dark: bool) -> str:
    i = int(dark)
    return f"""
#QuickAskPanel {{
    background: palette(base);
    border: 1px solid palette(mid);
}}
#QuickAskInput {{
    border: none;
    background: transparent;
    font-size: 16px;
    padding: 4px 2px;
}}
#QuickAskAnswer {{
    border: none;
    background: transparent;
    font-size: 14px;
}}
#QuickAskRule {{
    color: palette(midlight);
    background: palette(midlight);
    max-height: 1px;
    border: none;
}}
#QuickAskStatus {{
    font-size: 11px;
}}
QPushButton#QuickAskAsk {{
    background: {ACCENT};
    color: white;
    border: none;
    border-radius: 6px;
    padding: 6px 16px;
    font-weight: 600;
}}
QPushButton#QuickAskAsk:hover {{ background: {LINK[0]}; }}
QPushButton#QuickAskAsk:disabled {{ background: palette(midlight); color: palette(mid); }}
QPushButton#QuickAskStop {{
    background: transparent;
    color: {ERROR[i]};
    border: 1px solid {ERROR[i]};
    border-radius: 6px;
    padding: 5px 14px;
    font-weight: 600;
}}
QPushButton#QuickAskStop:hover {{ background: {ERROR_HOVER_BG[i]}; }}
QPushButton#QuickAskOpen {{
    background: transparent;
    color: {LINK[i]};
    border: none;
    padding: 2px 0px;
    font-size: 12px;
}}
QPushButton#QuickAskOpen:hover {{ text-decoration: underline; }}
QPushButton#QuickAskOpen:disabled {{ color: palette(mid); }}
"""


class QuickAskBox(QWidget):
    """Ask, watch the answer stream in place, hand the session to the main window."""

    openInMainWindow = Signal(str)  # the quick-ask session's id

    WIDTH = 520
    ANSWER_MIN_HEIGHT = 40
    ANSWER_MAX_HEIGHT = 380

    def __init__(self, bridge: Bridge, parent: QWidget | None = None, *, frameless: bool = True) -> None:
        flags = Qt.WindowType.Tool | Qt.WindowType.WindowStaysOnTopHint
        if frameless:
            flags |= Qt.WindowType.FramelessWindowHint
        super().__init__(parent, flags)
        self.bridge = bridge
        self.session_id: str | None = None
        self.question = ""
        self._answer = ""
        self._busy = False
        self._following = False  # a turn this box started is running
        self._asking = False  # between Enter and the turn starting (the session may be being created)
        self._started_at = 0.0
        self._model = ""
        self._dark = False
        self._status_error = False
        self._tool = ""  # the tool the answer is running, if any
        self._tasks: set[asyncio.Task[Any]] = set()

        self.setWindowTitle("Quick ask — Shoal")
        self.setObjectName("QuickAskBox")
        self.setFixedWidth(self.WIDTH)
        self._dark = _is_dark(self.palette())
        self.setStyleSheet(stylesheet(self._dark))
        self._build()

        bridge.assistantDelta.connect(self._on_delta)
        bridge.agentEvent.connect(self._on_event)
        bridge.busyChanged.connect(self._on_busy)
        bridge.turnEnded.connect(self._on_turn_ended)
        bridge.approvalsChanged.connect(self._on_approvals)

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        panel = self._panel = QFrame(self)
        panel.setObjectName("QuickAskPanel")
        outer.addWidget(panel)
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(14, 12, 14, 10)
        layout.setSpacing(8)

        row = QHBoxLayout()
        row.setSpacing(10)
        mark = QLabel(panel)
        mark.setObjectName("QuickAskMark")
        try:
            from ui.icons import app_icon

            mark.setPixmap(app_icon().pixmap(26, 26))
        except Exception:  # an icon is decoration; never fail the box for it
            log.debug("no icon for the quick-ask box", exc_info=True)
        row.addWidget(mark)
        self.input = QLineEdit(panel)
        self.input.setObjectName("QuickAskInput")
        self.input.setPlaceholderText("Ask Shoal anything…")
        self.input.setClearButtonEnabled(False)
        self.input.returnPressed.connect(self.ask)
        self.input.textChanged.connect(lambda _text: self._update_controls())
        row.addWidget(self.input, 1)
        self.ask_button = QPushButton("Ask", panel)
        self.ask_button.setObjectName("QuickAskAsk")
        self.ask_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.ask_button.setToolTip("Ask (Enter)")
        self.ask_button.clicked.connect(lambda _checked=False: self.ask())
        row.addWidget(self.ask_button)
        self.stop_button = QPushButton("Stop", panel)
        self.stop_button.setObjectName("QuickAskStop")
        self.stop_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.stop_button.setToolTip("Stop the answer (Ctrl+.)")
        self.stop_button.clicked.connect(lambda _checked=False: self.stop())
        self.stop_button.hide()
        row.addWidget(self.stop_button)
        layout.addLayout(row)

        self.rule = QFrame(panel)
        self.rule.setObjectName("QuickAskRule")
        self.rule.setFrameShape(QFrame.Shape.HLine)
        self.rule.hide()
        layout.addWidget(self.rule)

        self.answer_view = QTextBrowser(panel)
        self.answer_view.setObjectName("QuickAskAnswer")
        self.answer_view.setOpenExternalLinks(True)
        self.answer_view.setFrameShape(QFrame.Shape.NoFrame)
        self.answer_view.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.answer_view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.answer_view.document().setDocumentMargin(2)
        self.answer_view.document().setIndentWidth(18)
        self.answer_view.hide()
        layout.addWidget(self.answer_view)

        footer = QHBoxLayout()
        footer.setSpacing(8)
        self.status = QLabel(panel)
        self.status.setObjectName("QuickAskStatus")
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        footer.addWidget(self.status, 1)
        self.open_button = QPushButton("Open in main window  ›", panel)
        self.open_button.setObjectName("QuickAskOpen")
        self.open_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.open_button.setToolTip("Continue this conversation in the main window (Ctrl+O)")
        self.open_button.clicked.connect(lambda _checked=False: self.open_in_main_window())
        footer.addWidget(self.open_button)
        layout.addLayout(footer)

        self._set_status("Enter to ask · Esc to hide")
        self._update_controls()

    # --- public ------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """An answer is streaming (or the question is on its way)."""
        return self._busy or self._asking

    @property
    def answer_text(self) -> str:
        """The answer so far, as streamed (Markdown source)."""
        return self._answer

    def popup(self) -> None:
        """Show the box centred on the screen with the mouse cursor, in front, ready to type."""
        screen = QGuiApplication.screenAt(QCursor.pos()) or QGuiApplication.primaryScreen()
        self._fit()
        if screen is not None:
            area = screen.availableGeometry()
            x = area.x() + (area.width() - self.width()) // 2
            # the optical centre (a third down): the box grows downwards as the answer streams in
            y = area.y() + max(0, (area.height() - max(self.height(), 240)) // 3)
            self.move(x, y)
        self.show()
        self.raise_()
        self.activateWindow()
        self.input.setFocus(Qt.FocusReason.ActiveWindowFocusReason)
        self.input.selectAll()

    def ask(self, text: str | None = None) -> asyncio.Task[None] | None:
        """Ask `text` (default: what is typed); None if there is nothing to ask or an answer is running."""
        question = (self.input.text() if text is None else text).strip()
        if not question or self.busy:
            return None
        if text is not None:
            self.input.setText(question)
        self._asking = True
        self._update_controls()
        task = asyncio.ensure_future(self._ask(question))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def stop(self) -> None:
        if self.session_id is not None and self._busy:
            self.bridge.stop(self.session_id)
            self._set_status("Stopping…")

    def open_in_main_window(self) -> None:
        if self.session_id is None:
            return
        self.openInMainWindow.emit(self.session_id)
        self.hide()

    def new_conversation(self) -> None:
        """Forget the current quick-ask session; the next question starts a new one."""
        if self.busy:
            return
        self.session_id = None
        self.question = ""
        self._answer = ""
        self.answer_view.clear()
        self.answer_view.hide()
        self.rule.hide()
        self.input.clear()
        self._set_status("New conversation · Enter to ask")
        self._update_controls()
        self._fit()

    # --- asking ------------------------------------------------------------------------------

    async def _ask(self, question: str) -> None:
        try:
            if self.session_id is not None and self.session_id not in {s.id for s in await self.bridge.sessions()}:
                self.session_id = None  # deleted in the main window meanwhile
            if self.session_id is None:
                info = await self.bridge.new_session(SESSION_TITLE)
                self.session_id = info.id
            if self.bridge.is_busy(self.session_id):  # e.g. a turn sent from the main window: keep the answer shown
                self._set_status("Still answering the last question…")
                return
            self.question = question
            self._answer = ""
            self._tool = ""
            self._model = self.bridge.model_name
            self._started_at = time.monotonic()
            self._render()
            self._set_status(f"Thinking… · {self._model}")
            self.input.end(False)  # the question stays, cursor after it
            self._following = True  # before send: its first signals arrive synchronously
            if self.bridge.send(self.session_id, question) is None:
                self._following = False
                self._set_status("Still answering the last question…")
        except Exception as exc:
            error = classify(exc)
            log.warning("quick ask failed: %s", error.message)
            self._set_status(f"Couldn't ask: {error.message}", error=True)
        finally:
            self._asking = False
            self._update_controls()

    # --- bridge signals ----------------------------------------------------------------------

    def _mine(self, session_id: str) -> bool:
        """Only the turn this box started: turns sent to the same session from the main window are not ours."""
        return self._following and self.session_id is not None and session_id == self.session_id

    def _on_delta(self, session_id: str, text: str) -> None:
        if not self._mine(session_id):
            return
        self._tool = ""
        self._answer += text
        self._render()
        self._set_status(f"Answering… · {self._model}")

    def _on_event(self, session_id: str, event: object) -> None:
        if not self._mine(session_id):
            return
        if isinstance(event, ev.LlmCallStarted):
            self._tool = ""
            self._model = event.model or self._model
            if not self._answer:
                self._set_status(f"Thinking… · {self._model}")
        elif isinstance(event, ev.ToolCallStarted):
            self._tool = event.name
            self._on_approvals()

    def _on_busy(self, session_id: str, busy: bool) -> None:
        if self._mine(session_id):
            self._busy = busy
            self._update_controls()

    def _on_approvals(self) -> None:
        """A tool of this turn waits for approval (answered in the main window), or has just been answered."""
        if self.session_id is None or not self._busy:
            return
        waiting = [p for p in self.bridge.pending_approvals() if p.request.session_id == self.session_id]
        if waiting:
            self._set_status(f"Needs your approval in the main window: {waiting[0].request.summary}")
        elif self._tool:
            self._set_status(f"Using {self._tool}…")

    def _on_turn_ended(self, session_id: str, final: object) -> None:
        if not self._mine(session_id):
            return
        self._following = False
        self._busy = False
        seconds = time.monotonic() - self._started_at if self._started_at else 0.0
        if isinstance(final, ev.TurnFinished):
            if not self._answer and final.text:
                self._answer = final.text
                self._render()
            figures = f"{self._model} · {final.input_tokens:,} in · {final.output_tokens:,} out · {seconds:.1f} s"
            if final.status == "cancelled":
                self._set_status(f"Stopped · {figures}")
            elif final.status == "max_iterations":
                self._set_status(f"Stopped after {final.iterations} steps · {figures}", error=True)
            else:
                self._set_status(figures)
        elif isinstance(final, ev.TurnFailed):
            message = final.error.get("message", "The answer failed.")
            fix = final.error.get("fix", "")
            self._set_status(f"Failed: {message}", error=True)
            if not self._answer:
                self._answer = f"**Couldn't answer:** {message}" + (f"\n\n{fix}" if fix else "")
                self._render()
        else:
            self._set_status("Stopped")
        self._update_controls()

    # --- view --------------------------------------------------------------------------------

    def _render(self) -> None:
        view = self.answer_view
        bar = view.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        view.setMarkdown(self._answer or "…")
        _space_blocks(view.document())
        view.setVisible(True)
        self.rule.setVisible(True)
        document = view.document()
        width = view.viewport().width() if view.isVisible() and view.viewport().width() > 100 else self.WIDTH - 40
        document.setTextWidth(width)
        height = int(document.size().height()) + 6
        view.setFixedHeight(max(self.ANSWER_MIN_HEIGHT, min(height, self.ANSWER_MAX_HEIGHT)))
        self._fit()
        if at_bottom:
            bar.setValue(bar.maximum())

    def _fit(self) -> None:
        """Resize the window to its content now (it grows as the answer streams, shrinks when cleared)."""
        self._panel.layout().activate()
        self.layout().activate()
        self.resize(self.WIDTH, self.sizeHint().height())

    def _set_status(self, text: str, *, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setToolTip(text)
        palette = self.status.palette()
        color = QColor(ERROR[int(self._dark)]) if error else self.palette().color(QPalette.ColorRole.PlaceholderText)
        self._status_error = error
        palette.setColor(QPalette.ColorRole.WindowText, color)
        self.status.setPalette(palette)

    def _update_controls(self) -> None:
        streaming = self._busy
        self.stop_button.setVisible(streaming)
        self.ask_button.setVisible(not streaming)
        self.ask_button.setEnabled(not self._asking and bool(self.input.text().strip()))
        self.open_button.setEnabled(self.session_id is not None)

    def changeEvent(self, event: QEvent) -> None:
        """Follow the app switching between light and dark."""
        super().changeEvent(event)
        if event.type() in (QEvent.Type.ApplicationPaletteChange, QEvent.Type.ThemeChange):
            dark = _is_dark(QGuiApplication.palette())
            if dark != self._dark:
                self._dark = dark
                self.setStyleSheet(stylesheet(dark))
                self._set_status(self.status.text(), error=self._status_error)

    # --- keys --------------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        ctrl = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
        if key == Qt.Key.Key_Escape:
            self.hide()
        elif ctrl and key == Qt.Key.Key_O:
            self.open_in_main_window()
        elif ctrl and key == Qt.Key.Key_N:
            self.new_conversation()
        elif ctrl and key == Qt.Key.Key_Period:
            self.stop()
        else:
            super().keyPressEvent(event)
            return
        event.accept()


def _space_blocks(document: QTextDocument) -> None:
    """Paragraph and list spacing for Markdown (QTextDocument's own leaves paragraphs touching)."""
    block = document.begin()
    while block.isValid():
        following = block.next()
        in_list = block.textList() is not None
        list_continues = in_list and following.isValid() and following.textList() is block.textList()
        fmt = block.blockFormat()
        fmt.setTopMargin(0)
        fmt.setBottomMargin(2 if list_continues else 8)
        cursor = QTextCursor(block)
        cursor.setBlockFormat(fmt)
        block = following
