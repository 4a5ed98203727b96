"""Where a question is typed: Enter sends, Shift+Enter breaks the line, Send turns into Stop during a turn.

Attachments are pasted into the message as fenced blocks, and only from the workspace: the model's file
tools are confined there too, so a person cannot accidentally send something the agent could not see.
The label picker beside Send sets the message's sensitivity label (ui/widgets/label_picker.py); the chat pane
reads it when the message is handed over, so `sendRequested` stays the text alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ui.widgets.label_picker import LabelPicker

MAX_ATTACHMENT = 200 * 1024
PLACEHOLDER = "Ask Shoal… (Enter to send, Shift+Enter for a new line)"
MIN_LINES, MAX_LINES = 2, 10


class Composer(QWidget):
    sendRequested = Signal(str)
    stopRequested = Signal()

    def __init__(self, workspace: Path | Callable[[], Path], parent: QWidget | None = None) -> None:
        """`workspace` may be a callable so a workspace changed in the settings applies at once."""
        super().__init__(parent)
        self._workspace = workspace
        self._busy = False
        self.input = QPlainTextEdit(self)
        self.input.setPlaceholderText(PLACEHOLDER)
        self.input.setTabChangesFocus(True)
        self.input.installEventFilter(self)
        self.input.document().contentsChanged.connect(self._fit_height)
        self.attach_button = QPushButton("Attach…", self)
        self.attach_button.setToolTip("Add a text file from the workspace to the message")
        self.attach_button.clicked.connect(self._pick_file)
        self.send_button = QPushButton("Send", self)
        self.send_button.setDefault(False)
        self.send_button.setAutoDefault(False)
        self.send_button.clicked.connect(self._on_send_clicked)
        self.labels = LabelPicker(self)
        self.labels_caption = QLabel("&Label:", self)  # Alt+L focuses the picker
        self.labels_caption.setBuddy(self.labels)
        self.labels_caption.setToolTip(self.labels.toolTip())
        self.notice = QLabel(self)
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("color: palette(placeholder-text);")
        self.notice.hide()
        self._layout()
        self._fit_height()
        self._update_button()

    def _layout(self) -> None:
        buttons = QHBoxLayout()
        buttons.setSpacing(6)
        buttons.addWidget(self.attach_button)
        buttons.addStretch(1)
        buttons.addWidget(self.notice, 10)
        buttons.addWidget(self.labels_caption)
        buttons.addWidget(self.labels)
        buttons.addSpacing(4)
        buttons.addWidget(self.send_button)
        column = QVBoxLayout(self)
        column.setContentsMargins(12, 6, 12, 10)
        column.setSpacing(6)
        column.addWidget(self.input)
        column.addLayout(buttons)
        self.input.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    # --- public -----------------------------------------------------------------------------------

    @property
    def workspace(self) -> Path:
        return self._workspace() if callable(self._workspace) else self._workspace

    def text(self) -> str:
        return self.input.toPlainText()

    def label(self) -> str | None:
        """The sensitivity label chosen for what is sent now (None: auto, the policy decides)."""
        return self.labels.label()

    def set_label_policy(self, default_label: str, *, remote: bool = False) -> None:
        """What auto comes to (named in the tooltip); in remote mode auto is the server's policy."""
        self.labels.set_default_label(default_label)
        self.labels.set_managed_remotely(remote)
        self.labels_caption.setToolTip(self.labels.toolTip())

    def set_text(self, text: str) -> None:
        self.input.setPlainText(text)
        self.input.moveCursor(self.input.textCursor().MoveOperation.End)

    def set_busy(self, busy: bool) -> None:
        """While a turn runs the button stops it; Enter does nothing so a draft is never lost."""
        self._busy = busy
        self._update_button()

    @property
    def busy(self) -> bool:
        return self._busy

    def submit(self) -> bool:
        """Send the typed text (if any and no turn is running); the box is cleared once it is handed over."""
        text = self.text().strip()
        if self._busy or not text:
            return False
        self.input.clear()
        self.show_notice("")
        self.sendRequested.emit(text)
        return True

    def show_notice(self, text: str, error: bool = False) -> None:
        """A short inline message next to the buttons (why an attachment was refused, for example)."""
        self.notice.setText(text)
        self.notice.setStyleSheet("color: #c62828;" if error else "color: palette(placeholder-text);")
        self.notice.setVisible(bool(text))

    def attach_file(self, path: str | Path) -> bool:
        """Add a workspace text file to the draft as a fenced block; refuse (with a reason) anything else."""
        problem, text = self._read_attachment(Path(path))
        if problem:
            self.show_notice(problem, error=True)
            return False
        path = Path(path) if Path(path).is_absolute() else self.workspace / path
        name = path.resolve().relative_to(self.workspace.resolve()).as_posix()
        fence = "`" * max(3, _longest_backtick_run(text) + 1)
        block = f"`{name}`:\n\n{fence}{_language(name)}\n{text.rstrip()}\n{fence}\n"
        draft = self.text().rstrip()
        self.set_text(f"{draft}\n\n{block}" if draft else block)
        self.show_notice(f"Attached {name}")
        self.input.setFocus()
        return True

    # --- internals --------------------------------------------------------------------------------

    def _read_attachment(self, path: Path) -> tuple[str, str]:
        """("", text) when the file may be attached, else (reason, "")."""
        root = self.workspace.resolve()
        if not path.is_absolute():
            path = root / path
        try:
            resolved = path.resolve()
        except OSError as exc:
            return f"Cannot open {path.name}: {exc.strerror or exc}", ""
        if not resolved.is_relative_to(root):
            return f"{path.name} is outside the workspace ({root}); only workspace files can be attached.", ""
        if not resolved.is_file():
            return f"{path.name} is not a file.", ""
        size = resolved.stat().st_size
        if size > MAX_ATTACHMENT:
            return f"{path.name} is {size // 1024} kB; attachments are limited to {MAX_ATTACHMENT // 1024} kB.", ""
        try:
            return "", resolved.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            return f"{path.name} is not a UTF-8 text file.", ""
        except OSError as exc:
            return f"Cannot read {path.name}: {exc.strerror or exc}", ""

    def _pick_file(self) -> None:
        """A normal (non-async) slot, so the static file dialog's own event loop is safe here."""
        self.workspace.mkdir(parents=True, exist_ok=True)
        path, _ = QFileDialog.getOpenFileName(self, "Attach a workspace file", str(self.workspace))
        if path:
            self.attach_file(path)

    def _on_send_clicked(self) -> None:
        if self._busy:
            self.stopRequested.emit()
        else:
            self.submit()

    def _update_button(self) -> None:
        self.send_button.setText("Stop" if self._busy else "Send")
        self.send_button.setToolTip("Stop the answer" if self._busy else "Send (Enter)")

    def _fit_height(self) -> None:
        """Grow with the draft from two to ten lines, then scroll: the transcript keeps most of the room."""
        lines = max(MIN_LINES, min(MAX_LINES, self.input.document().size().height()))
        line = self.input.fontMetrics().lineSpacing()
        margins = self.input.contentsMargins()
        frame = 2 * self.input.frameWidth() + 2 * int(self.input.document().documentMargin())
        self.input.setFixedHeight(int(lines * line) + frame + margins.top() + margins.bottom())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Enter sends; Shift+Enter (or Ctrl+Enter) inserts a newline as usual."""
        if watched is self.input and event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            plain = not event.modifiers() & (Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier)
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and plain:
                self.submit()
                return True
        return super().eventFilter(watched, event)


def _longest_backtick_run(text: str) -> int:
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return longest


def _language(name: str) -> str:
    """A fence info string from the extension, so the model (and the Markdown view) know the language."""
    known = {".py": "python", ".js": "javascript", ".ts": "typescript", ".json": "json", ".md": "markdown"}
    known |= {".sh": "bash", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".html": "html", ".css": "css"}
    known |= {".rs": "rust", ".go": "go", ".c": "c", ".cpp": "cpp", ".java": "java", ".sql": "sql"}
    return known.get(Path(name).suffix.lower(), "")
