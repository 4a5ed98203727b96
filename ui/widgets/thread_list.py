"""The sidebar of threads: pinned first (the core's order), a spinner on threads whose turn is running.

Every change goes through the bridge and the list re-reads `bridge.sessions()` on `sessionsChanged`, so
it shows what is stored rather than what it assumed. Rename is an inline edit; Delete asks first with a
message box opened with `open()` (never `exec()`, which would nest an event loop inside the async app).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import QPoint, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QMenu, QMessageBox, QPushButton, QVBoxLayout, QWidget

from core.errors import classify
from core.timeline.sessions import SessionInfo
from ui.bridge import Bridge
from ui.tasks import spawn
from ui.widgets.confirm import confirm

ID, TITLE, PINNED = Qt.ItemDataRole.UserRole, Qt.ItemDataRole.UserRole + 1, Qt.ItemDataRole.UserRole + 2
ICON = 14
SPIN_MS = 90


class ThreadList(QWidget):
    sessionActivated = Signal(str)  # the person picked a thread
    newRequested = Signal()
    sessionDeleted = Signal(str)
    failed = Signal(str)  # a rename/pin/delete failed: what happened and what to do
    refreshed = Signal()  # the list was re-read from the core

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._current: str | None = None
        self._busy: set[str] = set()
        self._populating = False
        self._refreshing = False
        self._again = False
        self._angle = 0
        self._confirm: QMessageBox | None = None
        self._menu: QMenu | None = None
        self.new_button = QPushButton("+  New chat", self)
        self.new_button.setToolTip("Start a new thread")
        self.new_button.clicked.connect(self.newRequested.emit)
        self.list = QListWidget(self)
        self.list.setIconSize(QSize(ICON, ICON))
        self.list.setEditTriggers(QListWidget.EditTrigger.EditKeyPressed)  # F2; the menu also starts an edit
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._on_menu)
        self.list.currentItemChanged.connect(self._on_current)
        self.list.itemChanged.connect(self._on_item_changed)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setUniformItemSizes(True)
        self.list.setStyleSheet(
            "QListWidget { border: none; background: transparent; } QListWidget::item { padding: 5px 4px; }"
        )
        column = QVBoxLayout(self)
        column.setContentsMargins(8, 8, 0, 8)
        column.setSpacing(6)
        column.addWidget(self.new_button)
        column.addWidget(self.list, 1)
        self._spinner = QTimer(self)
        self._spinner.setInterval(SPIN_MS)
        self._spinner.timeout.connect(self._spin)
        bridge.sessionsChanged.connect(self.schedule_refresh)
        bridge.busyChanged.connect(self._on_busy)

    # --- reading -----------------------------------------------------------------------------------

    async def refresh(self) -> list[SessionInfo]:
        sessions = await self.bridge.sessions()
        self._populate(sessions)
        self.refreshed.emit()
        return sessions

    def schedule_refresh(self) -> None:
        """Coalesce bursts of `sessionsChanged` into at most one refresh running and one queued."""
        if self._refreshing:
            self._again = True
            return
        self._refreshing = True
        spawn(self._refresh_until_settled())

    async def _refresh_until_settled(self) -> None:
        try:
            self._again = True
            while self._again:
                self._again = False
                await self.refresh()
        finally:
            self._refreshing = False

    def session_ids(self) -> list[str]:
        return [self.list.item(i).data(ID) for i in range(self.list.count())]

    def item_for(self, session_id: str) -> QListWidgetItem | None:
        items = (self.list.item(row) for row in range(self.list.count()))
        return next((item for item in items if item.data(ID) == session_id), None)

    def title_of(self, session_id: str) -> str:
        item = self.item_for(session_id)
        return str(item.data(TITLE)) if item is not None else ""

    def set_current(self, session_id: str | None) -> None:
        """Select a thread without announcing it (the pane already knows)."""
        self._current = session_id
        item = self.item_for(session_id) if session_id else None
        self._populating = True
        try:
            self.list.setCurrentItem(item)
        finally:
            self._populating = False

    def _populate(self, sessions: list[SessionInfo]) -> None:
        self._populating = True
        try:
            self.list.clear()
            for info in sessions:
                item = QListWidgetItem(info.title)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
                item.setData(ID, info.id)
                item.setData(TITLE, info.title)
                item.setData(PINNED, info.pinned)
                when = info.updated_at[:16].replace("T", " ")
                item.setToolTip(f"{info.title}\n{info.message_count} messages · {when}")
                self.list.addItem(item)
                self._decorate(item)
                if info.id == self._current:
                    self.list.setCurrentItem(item)
        finally:
            self._populating = False

    # --- changing ----------------------------------------------------------------------------------

    async def rename(self, session_id: str, title: str) -> None:
        await self._guarded(self.bridge.rename_session(session_id, title), "rename the thread")

    async def set_pinned(self, session_id: str, pinned: bool) -> None:
        await self._guarded(self.bridge.pin_session(session_id, pinned), "pin the thread")

    async def delete(self, session_id: str) -> None:
        if await self._guarded(self.bridge.delete_session(session_id), "delete the thread"):
            self.sessionDeleted.emit(session_id)

    async def _guarded(self, action: Awaitable[Any], what: str) -> bool:
        try:
            await action
        except Exception as exc:
            self.failed.emit(f"Could not {what}: {classify(exc).describe()}")
            return False
        return True

    def begin_rename(self, session_id: str) -> None:
        item = self.item_for(session_id)
        if item is not None:
            self.list.editItem(item)

    def confirm_delete(self, session_id: str) -> QMessageBox:
        """Ask first, without blocking: the box is opened with open() and answers through a signal."""
        item = self.item_for(session_id)
        title = item.data(TITLE) if item else "this thread"
        self._confirm = confirm(
            self,
            "Delete thread",
            f"Delete “{title}”?",
            "Its messages and timeline are removed for good.",
            "Delete",
            lambda: spawn(self.delete(session_id)),
        )
        return self._confirm

    def context_menu(self, session_id: str) -> QMenu:
        """The thread's actions (built apart from showing it, so it can be driven directly)."""
        item = self.item_for(session_id)
        pinned = bool(item and item.data(PINNED))
        menu = QMenu(self)
        actions: list[tuple[str, Callable[[], object]]] = [
            ("New chat", self.newRequested.emit),
            ("Rename", lambda: self.begin_rename(session_id)),
            ("Unpin" if pinned else "Pin", lambda: spawn(self.set_pinned(session_id, not pinned))),
            ("Delete…", lambda: self.confirm_delete(session_id)),
        ]
        for text, slot in actions:
            menu.addAction(text, slot)
        menu.insertSeparator(menu.actions()[1])
        return menu

    # --- reactions ---------------------------------------------------------------------------------

    def _on_menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            menu = QMenu(self)
            menu.addAction("New chat", self.newRequested.emit)
        else:
            menu = self.context_menu(item.data(ID))
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._menu = menu
        menu.popup(self.list.viewport().mapToGlobal(pos))

    def _on_current(self, item: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if self._populating or item is None or item.data(ID) == self._current:
            return
        self._current = item.data(ID)
        self.sessionActivated.emit(self._current)

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        """An inline edit finished: store the new title (an empty one is put back)."""
        if self._populating:
            return
        title = item.text().strip()
        if title and title != item.data(TITLE):
            spawn(self.rename(item.data(ID), title))
        elif not title:
            self._populating = True
            item.setText(item.data(TITLE))
            self._populating = False

    def _on_busy(self, session_id: str, busy: bool) -> None:
        (self._busy.add if busy else self._busy.discard)(session_id)
        item = self.item_for(session_id)
        if item is not None:
            self._decorate(item)
        if self._busy and not self._spinner.isActive():
            self._spinner.start()
        elif not self._busy:
            self._spinner.stop()

    def _spin(self) -> None:
        self._angle = (self._angle + 30) % 360
        for session_id in self._busy:
            item = self.item_for(session_id)
            if item is not None:
                self._decorate(item)

    def _decorate(self, item: QListWidgetItem) -> None:
        """Spinner while busy, a pin when pinned, else a blank icon so titles stay aligned."""
        accent = self.palette().color(QPalette.ColorRole.Highlight)
        was = self._populating
        self._populating = True
        if item.data(ID) in self._busy:
            item.setIcon(_spinner_icon(accent, self._angle))
        elif item.data(PINNED):
            item.setIcon(_pin_icon(accent))
        else:
            item.setIcon(_blank_icon())
        self._populating = was

    def is_marked_busy(self, session_id: str) -> bool:
        return session_id in self._busy


def _canvas() -> tuple[QPixmap, QPainter]:
    pixmap = QPixmap(ICON * 2, ICON * 2)  # drawn at 2x so it stays crisp on high-DPI screens
    pixmap.setDevicePixelRatio(2)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    return pixmap, painter


def _pen(color: QColor, width: float) -> QPen:
    pen = QPen(color, width)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    return pen


def _pin_icon(color: QColor) -> QIcon:
    pixmap, painter = _canvas()
    painter.setPen(_pen(color, 1.6))
    painter.drawLine(7, 8, 7, 13)  # the needle
    painter.setBrush(color)
    painter.drawEllipse(QRectF(3.5, 1.5, 7, 7))  # the head
    painter.end()
    return QIcon(pixmap)


def _spinner_icon(color: QColor, angle: int) -> QIcon:
    pixmap, painter = _canvas()
    painter.setPen(_pen(color, 2))
    painter.drawArc(QRectF(2, 2, ICON - 4, ICON - 4), -angle * 16, 270 * 16)
    painter.end()
    return QIcon(pixmap)


def _blank_icon() -> QIcon:
    pixmap, painter = _canvas()
    painter.end()
    return QIcon(pixmap)
