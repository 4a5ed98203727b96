"""The main window: chat in the middle; the timeline, memory, the tools and the group as docks a person can move,
resize and hide. The group dock shares the tools dock's place as a tab (both are short lists beside the timeline),
the memory dock shares the timeline's (both want height: results and a detail view), the schedule dock is one more
tab beside tools and group, the policy dock (rules, quota usage, checks) one more beside timeline and memory, and
the status bar says whether this agent is in its group, so a dropped connection is seen without opening the pane.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QWidget

from ui.bridge import Bridge
from ui.panes.chat import ChatPane
from ui.panes.group_dashboard import GroupDashboard
from ui.panes.memory import MemoryPane
from ui.panes.policy import PolicyPane
from ui.panes.roster import RosterPane
from ui.panes.schedule import SchedulePane
from ui.panes.timeline import TimelinePane
from ui.panes.tools import ToolsPane
from ui.tasks import spawn
from ui.widgets import group_format

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    settingsRequested = Signal()
    quitRequested = Signal()

    def __init__(self, bridge: Bridge, layout_file: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._layout_file = layout_file  # window geometry and docks, kept beside the user's data
        self.keep_in_tray = False  # set by the app when a tray icon exists
        self.setWindowTitle("Shoal")
        self.resize(1280, 800)
        self.chat = ChatPane(bridge, self)
        self.setCentralWidget(self.chat)
        self.timeline = TimelinePane(bridge, self)
        self.tools = ToolsPane(bridge, self)
        self.roster = RosterPane(bridge, self)
        self.dashboard = GroupDashboard(bridge, self)
        self.memory = MemoryPane(bridge, self)
        self.schedule = SchedulePane(bridge, self)
        self.policy = PolicyPane(bridge, self)
        self.connect_dialog: QWidget | None = None
        self.timeline_dock = self._dock("Timeline", self.timeline, "timeline")
        self.tools_dock = self._dock("Tools", self.tools, "tools")
        self.group_dock = self._dock("Group", self.roster, "group")
        self.dashboard_dock = self._dock("Dashboard", self.dashboard, "dashboard")
        self.memory_dock = self._dock("Memory", self.memory, "memory")
        self.schedule_dock = self._dock("Schedule", self.schedule, "schedule")
        self.policy_dock = self._dock("Policy", self.policy, "policy")
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.timeline_dock)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.tools_dock)
        self.splitDockWidget(self.timeline_dock, self.tools_dock, Qt.Orientation.Vertical)
        self.tabifyDockWidget(self.tools_dock, self.group_dock)
        self.tabifyDockWidget(self.group_dock, self.dashboard_dock)
        self.tabifyDockWidget(self.tools_dock, self.schedule_dock)
        self.tabifyDockWidget(self.timeline_dock, self.memory_dock)
        self.tabifyDockWidget(self.timeline_dock, self.policy_dock)
        self.tools_dock.raise_()
        self.timeline_dock.raise_()
        self.resizeDocks([self.timeline_dock], [460], Qt.Orientation.Horizontal)
        self.resizeDocks([self.timeline_dock, self.tools_dock], [520, 280], Qt.Orientation.Vertical)
        self._status_model = QLabel("starting…")
        self._status_approvals = QLabel("")
        self._status_group = QLabel("")
        self._status_group.setTextFormat(Qt.TextFormat.RichText)
        self._status_group.hide()
        self._group_status = ("off", "")
        self._group_lag = ""  # the lag warning's detail while a partition lags (docs/lag.md)
        self.statusBar().addWidget(self._status_model, 1)
        self.statusBar().addPermanentWidget(self._status_approvals)
        self.statusBar().addPermanentWidget(self._status_group)
        self._build_menus()
        self._connect()
        self._restore_layout()

    def _dock(self, title: str, widget: QWidget, name: str) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{name}")
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetClosable
            | QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        return dock

    def _action(
        self, text: str, slot: Any, shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self._action("New thread", lambda: spawn(self.chat.new_thread()), "Ctrl+N"))
        file_menu.addAction(self._action("Export thread as Markdown…", lambda: self._export("markdown")))
        file_menu.addAction(self._action("Export thread as JSON…", lambda: self._export("json")))
        file_menu.addSeparator()
        self.connect_group_action = self._action("Connect to group…", lambda: self.open_connect_group())
        file_menu.addAction(self.connect_group_action)
        self.replay_action = self._action("Replay group topic…", lambda: self.open_replay())
        file_menu.addAction(self.replay_action)
        file_menu.addAction(
            self._action("Settings…", self.settingsRequested.emit, QKeySequence.StandardKey.Preferences)
        )
        file_menu.addSeparator()
        file_menu.addAction(self._action("Quit", self.quitRequested.emit, QKeySequence.StandardKey.Quit))
        edit_menu = bar.addMenu("&Edit")
        edit_menu.addAction(self._action("Find in thread", self.chat.show_find, QKeySequence.StandardKey.Find))
        edit_menu.addAction(self._action("Search all threads", self.chat.show_search, "Ctrl+Shift+F"))
        view_menu = bar.addMenu("&View")
        docks = (
            (self.timeline_dock, "Ctrl+Shift+T"),
            (self.tools_dock, "Ctrl+Shift+O"),
            (self.group_dock, "Ctrl+Shift+G"),
            (self.dashboard_dock, "Ctrl+Shift+D"),
            (self.memory_dock, "Ctrl+Shift+M"),
            (self.schedule_dock, "Ctrl+Shift+S"),
            (self.policy_dock, "Ctrl+Shift+P"),
        )
        for dock, key in docks:
            toggle = dock.toggleViewAction()
            toggle.setShortcut(QKeySequence(key))
            view_menu.addAction(toggle)
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self._action("About Shoal", self._about))

    def _connect(self) -> None:
        self.chat.sessionSelected.connect(self.timeline.set_session)
        self.tools.pendingCountChanged.connect(self._on_pending)
        self.bridge.modelState.connect(self._on_model_state)
        self.bridge.group.groupState.connect(self._on_group_state)
        self.bridge.group.lagWarning.connect(self._on_group_lag)
        self.roster.connectRequested.connect(self.open_connect_group)
        self.schedule.openSessionRequested.connect(self.open_session)
        self.bridge.errorRaised.connect(
            lambda error: self.statusBar().showMessage(f"{error.get('message', '')} → {error.get('fix', '')}", 15000)
        )

    async def start(self) -> None:
        """Load every pane's data once the core is running."""
        await asyncio.gather(
            self.chat.start(),
            self.timeline.start(),
            self.tools.start(),
            self.roster.start(),
            self.dashboard.start(),
            self.memory.start(),
            self.schedule.start(),
            self.policy.start(),
        )

    # --- reactions ---------------------------------------------------------------------------

    def _on_pending(self, count: int) -> None:
        self._status_approvals.setText(f"⚠ {count} approval{'s' * (count != 1)} waiting" if count else "")
        if count:
            self.tools_dock.show()
            self.tools_dock.raise_()
            if self.isHidden() or self.isMinimized():
                self.show_and_raise()

    def _on_model_state(self, state: str, detail: str) -> None:
        icons = {"loading": "⏳ Loading", "ready": "● Ready:", "error": "✗ Model error:", "none": "○ No model yet:"}
        self._status_model.setText(f"{icons.get(state, state)} {detail}")

    def _on_group_state(self, state: str, detail: str) -> None:
        """A dot and a word in the status bar while group mode is on (and "lagging" while the lag warning is
        on); nothing when it is off."""
        self._group_status = (state, detail)
        symbol, word, colour = group_format.state_style(state)
        lagging = ' · <span style="color:#d97706">⚠ lagging</span>' if self._group_lag else ""
        self._status_group.setText(f'<span style="color:{colour}">{symbol}</span> Group: {word}{lagging}')
        self._status_group.setToolTip(f"{detail}\nLagging: {self._group_lag}" if self._group_lag else detail)
        self._status_group.setVisible(state != "off")

    def _on_group_lag(self, warning: bool, detail: str) -> None:
        self._group_lag = (detail or "behind the lag limits") if warning else ""
        self._on_group_state(*self._group_status)

    def open_connect_group(self, parent: QWidget | None = None) -> None:
        """The Connect-to-group dialog (one at a time); a successful connect shows the group pane. `parent`: the
        dialog it is opened from (a window-modal settings dialog would block a sibling)."""
        from ui.dialogs.connect_group import ConnectGroupDialog

        if self.connect_dialog is not None and self.connect_dialog.isVisible():
            self.connect_dialog.raise_()
            self.connect_dialog.activateWindow()
            return
        dialog = ConnectGroupDialog(self.bridge, parent or self)
        dialog.connected.connect(self._show_group)
        dialog.finished.connect(lambda _result: self._forget_connect_dialog(dialog))
        self.connect_dialog = dialog
        dialog.open()

    def open_replay(self, correlation: str = "") -> QWidget:
        """The replay dialog (docs/replay.md), optionally narrowed to one correlation id."""
        from ui.dialogs.replay import ReplayDialog

        dialog = ReplayDialog(self.bridge, self, correlation=correlation)
        dialog.finished.connect(lambda _result: dialog.deleteLater())
        dialog.open()
        return dialog

    def _forget_connect_dialog(self, dialog: QWidget) -> None:
        if self.connect_dialog is dialog:
            self.connect_dialog = None
        dialog.deleteLater()

    def open_session(self, session_id: str) -> None:
        """Show a thread in the chat (a scheduled job's, from the Schedule pane)."""
        self.show_and_raise()
        spawn(self.chat.open_session(session_id))

    def _show_group(self) -> None:
        self.group_dock.show()
        self.group_dock.raise_()

    def _export(self, fmt: str) -> None:
        if self.chat.current_session_id() is None:
            return
        suffix = "md" if fmt == "markdown" else "json"
        path, _ = QFileDialog.getSaveFileName(self, "Export thread", f"thread.{suffix}", f"*.{suffix}")
        if path:
            spawn(self.chat.export_current(fmt, path))

    def _about(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "About Shoal", "", QMessageBox.StandardButton.Ok, self)
        box.setText("<b>Shoal</b><br>A personal assistant with a local agent core.<br>Offline and private by default.")
        box.open()

    def show_and_raise(self) -> None:
        self.showNormal()
        self.raise_()
        self.activateWindow()

    # --- layout persistence and closing --------------------------------------------------------

    def _stored_layout(self) -> QSettings | None:
        return QSettings(self._layout_file, QSettings.Format.IniFormat) if self._layout_file else None

    def _restore_layout(self) -> None:
        stored = self._stored_layout()
        if stored is None:
            return
        geometry, state = stored.value("geometry"), stored.value("state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def save_layout(self) -> None:
        stored = self._stored_layout()
        if stored is None:
            return
        stored.setValue("geometry", self.saveGeometry())
        stored.setValue("state", self.saveState())

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        if self.keep_in_tray:
            event.ignore()
            self.hide()  # the app keeps running in the tray
            return
        event.accept()
        self.quitRequested.emit()
