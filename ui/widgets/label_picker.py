"""The sensitivity label of what a person sends: auto, public, internal, confidential or secret, per thread.

A choice sticks to the thread it was made in (a conversation about payroll stays confidential message after
message, as the policy treats the whole conversation at its highest label anyway), and every other thread
keeps its own: a new thread starts at auto, and switching threads shows that thread's choice. Auto sends no
label, so the policy's `[[classify]]` rules label the text, else `policy.default_label` applies.

Keyboard: the composer's "Label:" buddy (Alt+L) focuses it; arrows or the first letter pick a label.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QComboBox, QSizePolicy, QWidget

from core.policy.labels import NAMES
from ui.widgets.policy_format import AUTO, LABEL_HELP, PICKER_HELP, label_color

REMOTE_HELP = (
    "The message's sensitivity label, sent with it to the server. Auto: the server's policy labels it (its "
    "classifier rules, then its default label)."
)


def label_icon(label: str | None) -> QIcon:
    """A filled dot in the label's colour; a hollow ring for auto (nothing chosen)."""
    pixmap = QPixmap(12, 12)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    if label is None:
        painter.setPen(QPen(QColor("#8a8a8a"), 1.5))
        painter.setBrush(Qt.BrushStyle.NoBrush)
    else:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(label_color(label)))
    painter.drawEllipse(2, 2, 8, 8)
    painter.end()
    return QIcon(pixmap)


class LabelPicker(QComboBox):
    labelChanged = Signal(object)  # str | None: the label now chosen for the shown thread (None: auto)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._session: str | None = None
        self._chosen: dict[str | None, str] = {}  # thread -> its label; absent: auto
        self.setObjectName("labelPicker")
        self.setAccessibleName("Sensitivity label of the message")
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.addItem(label_icon(None), AUTO, None)
        self.setItemData(0, "the policy's classifier rules, else the default label", Qt.ItemDataRole.ToolTipRole)
        for name in NAMES:
            self.addItem(label_icon(name), name, name)
            self.setItemData(self.count() - 1, LABEL_HELP[name], Qt.ItemDataRole.ToolTipRole)
        self.set_default_label("internal")
        self.currentIndexChanged.connect(self._on_changed)

    # --- what the composer and the chat pane call ----------------------------------------------------

    def label(self) -> str | None:
        """The chosen label, None for auto (and always None while disabled: remote mode sends no label)."""
        if not self.isEnabled():
            return None
        value = self.currentData()
        return value if isinstance(value, str) else None

    def set_label(self, label: str | None) -> None:
        """Choose `label` (None: auto) for the shown thread."""
        index = self.findData(label) if label else 0
        self.setCurrentIndex(max(index, 0))

    def show_session(self, session_id: str | None) -> None:
        """Show the choice of thread `session_id` (auto if none was made there)."""
        self._session = session_id
        self.blockSignals(True)
        try:
            label = self._chosen.get(session_id)
            self.setCurrentIndex(max(self.findData(label), 0) if label else 0)
        finally:
            self.blockSignals(False)
        self.labelChanged.emit(self.label())

    def set_default_label(self, default: str) -> None:
        """The tooltip names `policy.default_label`, which is what auto comes to when no rule matches."""
        self.setToolTip(PICKER_HELP.format(default=default))

    def set_managed_remotely(self, remote: bool) -> None:
        """Remote mode: a chosen label travels with the message; auto leaves it to the server's policy."""
        if remote:
            self.setToolTip(REMOTE_HELP)

    def _on_changed(self, _index: int) -> None:
        label = self.label()
        if label is None:
            self._chosen.pop(self._session, None)
        else:
            self._chosen[self._session] = label
        self.labelChanged.emit(label)
