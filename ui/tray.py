"""The system tray icon and its menu. It only emits signals; the app decides what they do.

Where there is no tray (bare X servers, some Wayland desktops) nothing is shown and `available` is
False: the app must then keep a window reachable (don't hide to the tray, quit on last window closed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import SIGNAL, QObject, Signal
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

log = logging.getLogger(__name__)

SCHEDULER_PENDING_TIP = "The scheduler is not running (Settings: schedule.enabled)"


class Tray(QObject):
    quickAskRequested = Signal()  # "Quick ask" in the menu, or a middle click on the icon
    showRequested = Signal()  # "Show Shoal" in the menu, or a double click
    toggleRequested = Signal()  # a left click: show the main window, or hide it if it is in front
    # (with nothing connected to toggleRequested, a left click emits showRequested instead)
    quitRequested = Signal()
    pauseToggled = Signal(bool)  # "Pause scheduler" (enabled by set_scheduler_available)
    messageClicked = Signal()  # the last notification was clicked

    def __init__(self, icon: QIcon, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._icon = icon
        self.menu = QMenu()  # a QMenu can't have a QObject parent: it lives as long as this object
        self.menu.setToolTipsVisible(True)

        self.quick_ask_action = self._add("Quick ask", self.quickAskRequested.emit)
        self.show_action = self._add("Show Shoal", self.showRequested.emit)
        self.menu.addSeparator()
        self.pause_action = QAction("Pause scheduler", self.menu)
        self.pause_action.setCheckable(True)
        self.pause_action.toggled.connect(self.pauseToggled.emit)
        self.menu.addAction(self.pause_action)
        self.set_scheduler_available(False)
        self.menu.addSeparator()
        self.quit_action = self._add("Quit", self.quitRequested.emit)

        self._tray: QSystemTrayIcon | None = None

    def _add(self, text: str, slot: Callable[[], object]) -> QAction:
        action = QAction(text, self.menu)
        action.triggered.connect(lambda _checked=False: slot())
        self.menu.addAction(action)
        return action

    # --- state -------------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """A system tray exists to put the icon in (asked live: a panel can start after Shoal)."""
        return QSystemTrayIcon.isSystemTrayAvailable()

    @property
    def visible(self) -> bool:
        return self._tray is not None and self._tray.isVisible()

    def show(self) -> bool:
        """Show the icon if there is a tray; False (and nothing shown) if there is none."""
        if not self.available:
            log.info("no system tray on this desktop; Shoal runs without a tray icon")
            return False
        if self._tray is None:
            self._tray = QSystemTrayIcon(self._icon, self)
            self._tray.setToolTip("Shoal")
            self._tray.setContextMenu(self.menu)
            self._tray.activated.connect(self._on_activated)
            self._tray.messageClicked.connect(self.messageClicked.emit)
        self._tray.show()
        return True

    def hide(self) -> None:
        if self._tray is not None:
            self._tray.hide()

    def set_icon(self, icon: QIcon) -> None:
        self._icon = icon
        if self._tray is not None:
            self._tray.setIcon(icon)

    def set_tooltip(self, text: str) -> None:
        """E.g. "Shoal — answering…"; shown when hovering the icon."""
        if self._tray is not None:
            self._tray.setToolTip(text)

    def set_scheduler_available(self, available: bool) -> None:
        self.pause_action.setEnabled(available)
        self.pause_action.setToolTip("Pause or resume scheduled jobs" if available else SCHEDULER_PENDING_TIP)

    def notify(self, title: str, text: str, msecs: int = 8000) -> bool:
        """A desktop notification from the tray icon; False when there is no icon to show it from."""
        if self._tray is None or not self._tray.isVisible() or not QSystemTrayIcon.supportsMessages():
            return False
        self._tray.showMessage(title, text, self._icon, msecs)
        return True

    # --- clicks ------------------------------------------------------------------------------

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        Reason = QSystemTrayIcon.ActivationReason
        if reason == Reason.Trigger:
            if self.receivers(SIGNAL("toggleRequested()")) > 0:
                self.toggleRequested.emit()
            else:
                self.showRequested.emit()
        elif reason == Reason.DoubleClick:
            self.showRequested.emit()
        elif reason == Reason.MiddleClick:
            self.quickAskRequested.emit()
