"""The desktop in remote mode: a `RemoteCore` instead of the embedded core, and what the window shows of it.

With `remote.enabled` the desktop runs no model and opens no database: `build_remote_core` makes the client
of the configured `shoal serve`, and `RemoteDesktop` keeps the window honest about it. The title and the
status bar say "Remote: <url>" and whether the link is up; losing it is shown, and once it is back the thread
list, the timeline and the approvals are reloaded (what happened meanwhile). Things that live on this
computer's disk are not offered: joining a Kafka group (the server's business), indexing document folders
(they are on the server's disk), pausing the server's scheduler.

A server that cannot be used at start (down, wrong token, untrusted certificate) is not fatal, unlike a local
core that cannot start: the window stays, says what is wrong and what to do, and offers Settings and Retry,
because the fix is usually a token pasted in Settings. Saving settings that change the connection reconnects
when there is nothing to lose (not connected yet), and otherwise asks to restart the window, which happens
in the same process (see app/gui.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox

from core.errors import ShoalError
from core.logs import register_secret
from core.secrets import get_token
from core.settings import LoadedSettings, RemoteSettings
from ui.tasks import spawn

if TYPE_CHECKING:
    from app.desktop import DesktopApp
    from app.remote.core import RemoteCore
    from core.approvals import ApprovalBroker
    from core.service import AgentCore

log = logging.getLogger(__name__)
NOT_HERE = "Not available in remote mode: the server at {url} does this."
GROUP_TEXT = (
    "Group mode runs on the server in remote mode. Its members and tasks are the server's: "
    "`shoal group status` on that machine shows them."
)
LOCAL_TABS = frozenset({"Model", "Generation", "Tools && workspace", "Schedule"})  # settings tabs of the local agent
SESSION_KINDS = frozenset({"user.message", "turn.end", "schedule.run"})  # steps that change the thread list


def build_remote_core(loaded: LoadedSettings, broker: ApprovalBroker) -> AgentCore:
    """The client of `remote.url`. Typed as AgentCore: RemoteCore duck-types every part the desktop uses."""
    from app.remote import RemoteCore

    secret = get_token(loaded.settings.remote.key_name)
    register_secret(secret.value if secret else None)  # never in the log file
    return cast("AgentCore", RemoteCore(loaded.settings, broker))


def connection_of(settings: RemoteSettings) -> tuple[Any, ...]:
    """What the running connection was made from: a change here needs a reconnect."""
    secret = get_token(settings.key_name) if settings.enabled else None
    return (
        settings.enabled,
        settings.url.strip().rstrip("/"),
        settings.key_name,
        secret.value if secret else None,
        settings.ca_file.strip(),
        settings.timeout,
    )


class RemoteDesktop:
    def __init__(self, desktop: DesktopApp) -> None:
        self.desktop = desktop
        self.core = cast("RemoteCore", desktop.core)
        self.window = desktop.window
        self.bridge = desktop.bridge
        self.connection = connection_of(desktop.loaded.settings.remote)
        self.error_box: QMessageBox | None = None
        self.started = False  # the panes have loaded from the server once
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.window.statusBar().addPermanentWidget(self.label)
        self.window.setWindowTitle(f"Shoal — Remote: {self.core.url}")
        self._show_link(False, None, connecting=True)
        self.core.on_connection(self._on_connection)
        self.core.on_error(lambda error: self.bridge.errorRaised.emit(error.to_dict()))
        self.core.on_tools_changed(self.bridge.toolsChanged.emit)
        self.bridge.timelineEvent.connect(self._on_timeline)
        self._limit_panes()

    # --- starting and retrying ------------------------------------------------------------------------

    async def connect(self) -> bool:
        """Start the remote core and load the panes; on failure say why and keep the window. True if up."""
        self._limit_tray()
        self._show_link(False, None, connecting=True)
        self.window.setWindowTitle(f"Shoal — Remote: {self.core.url}")
        try:
            await self.core.start()
        except ShoalError as exc:
            log.warning("cannot use %s: %s", self.core.url, exc.describe())
            self._show_link(False, exc)
            self._explain(exc)
            return False
        self._close_error()
        self.connection = connection_of(self.desktop.loaded.settings.remote)
        if not self.started:
            self.started = True
            await self.window.start()
        else:
            self.reload()
        self._show_link(self.core.connected, None)
        self.bridge.load_model()
        return True

    def retry(self) -> None:
        spawn(self.connect())

    def _explain(self, error: ShoalError) -> None:
        """A non-modal box: what is wrong, what to do, and the two ways on (Settings, Retry)."""
        self._close_error()
        box = QMessageBox(QMessageBox.Icon.Warning, "Cannot use the Shoal server", error.message, parent=self.window)
        box.setInformativeText(error.fix)
        settings = box.addButton("Settings…", QMessageBox.ButtonRole.ActionRole)
        retry = box.addButton("Retry", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Close", QMessageBox.ButtonRole.RejectRole)
        box.setWindowModality(Qt.WindowModality.NonModal)

        def clicked(button: Any) -> None:
            if button is settings:
                self.desktop.open_settings()
            elif button is retry:
                self.retry()

        box.buttonClicked.connect(clicked)
        self.error_box = box
        box.show()

    def _close_error(self) -> None:
        box, self.error_box = self.error_box, None
        if box is not None:
            box.hide()
            box.deleteLater()

    # --- settings ---------------------------------------------------------------------------------------

    async def settings_saved(self, loaded: LoadedSettings) -> None:
        """Reconnect if the connection's settings changed: at once when not connected, else after asking."""
        new = connection_of(loaded.settings.remote)
        if new == self.connection:
            return
        if not new[0]:
            ask_restart(self.desktop, "Remote mode is off now. Restart Shoal to use its own agent on this computer?")
        elif not self.core.connected and not self.started:
            await self.core.stop()
            await self.connect()
        else:
            ask_restart(self.desktop, f"Restart Shoal to connect to {new[1]}?")

    # --- reactions ---------------------------------------------------------------------------------------

    def _on_connection(self, connected: bool, error: ShoalError | None) -> None:
        self._show_link(connected, error)
        if connected and self.started:
            self.reload()

    def reload(self) -> None:
        """After a reconnect: what may have changed while the link was down."""
        self.bridge.sessionsChanged.emit()
        self.bridge.toolsChanged.emit()
        self.window.timeline.refresh_button.click()

    def _on_timeline(self, event: Any) -> None:
        """A turn this desktop did not start (another client, a scheduled run) changes the thread list too, and
        the shown thread once it has ended."""
        if event.kind not in SESSION_KINDS or self.bridge.is_busy(event.session_id):
            return
        self.bridge.sessionsChanged.emit()
        chat = self.window.chat
        if event.kind in ("turn.end", "schedule.run") and event.session_id == chat.current_session_id():
            spawn(chat.reload())

    def _show_link(self, connected: bool, error: ShoalError | None, *, connecting: bool = False) -> None:
        url = self.core.url or "(no address set)"
        if connecting:
            symbol, colour, tip = "◌", "#888", f"Connecting to {url}…"
        elif connected:
            symbol, colour, tip = "●", "#2e7d32", f"Connected to the Shoal server at {url}"
        else:
            symbol, colour = "✗", "#c62828"
            tip = error.describe() if error else f"Not connected to {url}; retrying."
        self.label.setText(f'<span style="color:{colour}">{symbol}</span> Remote: {url}')
        self.label.setToolTip(tip)

    def _limit_panes(self) -> None:
        """Offer nothing that would act on this computer instead of the server."""
        tip = NOT_HERE.format(url=self.core.url or "the remote address")
        window = self.window
        window.connect_group_action.setEnabled(False)
        window.connect_group_action.setToolTip(tip)
        window.roster.off_label.setText(GROUP_TEXT)
        window.roster.connect_button.hide()
        documents = window.memory.documents
        for button in (documents.add_button, documents.remove_button, documents.rescan_button):
            button.setEnabled(False)
            button.setToolTip("Document folders are on the server's disk: `shoal memory index <folder>` there.")
        documents.setEnabled(False)

    def _limit_tray(self) -> None:
        tray = self.desktop.tray  # made in DesktopApp.start, after this object
        if tray is not None:
            tray.pause_action.setVisible(False)  # the server's scheduler: `shoal serve` has no pause

    def adjust_settings(self, dialog: Any) -> None:
        """The settings dialog edits this computer's config. The model, its generation options and the tools are
        the server's in remote mode, and so are the schedule and the group: those tabs are greyed out, saying where
        to change them."""
        tip = "In remote mode the server's settings apply: change them there (`shoal config set …`)."
        for index in range(dialog.tabs.count()):
            if dialog.tabs.tabText(index) in LOCAL_TABS:
                dialog.tabs.setTabEnabled(index, False)
                dialog.tabs.setTabToolTip(index, tip)
        dialog.group_button.setEnabled(False)
        dialog.group_hint.setText(GROUP_TEXT)
        dialog.tabs.setCurrentWidget(dialog.remote_tab)


def ask_restart(desktop: DesktopApp, question: str) -> QMessageBox:
    """Ask (without blocking) to restart the window with the saved settings; Later keeps the current one."""
    box = QMessageBox(QMessageBox.Icon.Question, "Restart Shoal", question, parent=desktop.window)
    box.setInformativeText("Running turns are stopped first; what they did so far stays in the timeline.")
    restart = box.addButton("Restart now", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Later", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(restart)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def clicked(button: Any) -> None:
        if button is restart:
            desktop.restart()

    box.buttonClicked.connect(clicked)
    desktop.restart_box = box
    box.open()
    return box


async def wait_connected(remote: RemoteDesktop, timeout: float = 10.0) -> None:
    """For tests and the smoke test: until the live link is up."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not remote.core.connected:
        if loop.time() > end:
            raise TimeoutError(f"not connected to {remote.core.url} within {timeout} s")
        await asyncio.sleep(0.02)
