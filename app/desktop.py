"""The desktop app: builds the core and the window, and wires tray, quick-ask, dialogs and shutdown.

The window is shown before the core starts, so the first paint does not wait for the database, MCP
servers or the model; the panes fill in once `core.start()` returns. The model loads in the background.
With `remote.enabled` the core is the client of a remote `shoal serve` instead (app/remote_wiring.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from PySide6.QtWidgets import QApplication, QMessageBox

from core.approvals import ApprovalBroker
from core.errors import ShoalError, classify
from core.providers.base import Provider
from core.service import AgentCore
from core.settings import LoadedSettings, load_settings
from ui.bridge import Bridge
from ui.main_window import MainWindow
from ui.tasks import settle, spawn
from ui.theme import apply_theme

log = logging.getLogger(__name__)


class DesktopApp:
    def __init__(self, qapp: QApplication, loaded: LoadedSettings, *, provider: Provider | None = None) -> None:
        self.qapp = qapp
        self.loaded = loaded
        self.broker = ApprovalBroker()
        self.remote: Any = None  # app.remote_wiring.RemoteDesktop when remote.enabled
        self.restart_requested = False  # app/gui.py opens a new window with the saved settings
        self.restart_box: Any = None
        if loaded.settings.remote.enabled:  # the client of a remote `shoal serve`: no model, no database here
            from app.remote_wiring import build_remote_core

            self.core = build_remote_core(loaded, self.broker)
        else:
            self.core = AgentCore(
                loaded.settings, provider=provider, approve=self.broker.ask, config_file=loaded.config_file
            )
        self.bridge = Bridge(self.core, self.broker, loaded=loaded)
        self.bridge.group.settingsApplied.connect(self._group_settings_applied)
        layout = loaded.settings.paths.data_path() / "desktop-layout.ini"
        self.window = MainWindow(self.bridge, str(layout))
        self.quit_event = asyncio.Event()
        self.tray: Any = None
        self._quick_ask: Any = None
        self._dialogs: list[Any] = []
        self._notified_session: str | None = None  # the thread of the last scheduled run the tray announced
        self.window.quitRequested.connect(self.quit)
        self.window.settingsRequested.connect(self.open_settings)
        qapp.aboutToQuit.connect(self.quit)
        # Quitting is ours to do (after turns stop and the core is released), never Qt's on the last close.
        qapp.setQuitOnLastWindowClosed(False)
        self._fatal_box: QMessageBox | None = None
        if loaded.settings.remote.enabled:
            from app.remote_wiring import RemoteDesktop

            self.remote = RemoteDesktop(self)

    # --- running ----------------------------------------------------------------------------

    async def start(self, *, quick_ask: bool = False, show: bool = True) -> None:
        apply_theme(self.qapp, self.loaded.settings.appearance.theme)
        self._setup_tray()
        if show and not quick_ask:
            self.window.show()
        if self.remote is not None:
            await self.remote.connect()  # never fatal: the window says what is wrong, offers Settings and Retry
        else:
            await self.core.start()
            await self.window.start()
        await self._start_scheduler()
        log.info("desktop ready (pid %d)", os.getpid())
        if self._needs_model():
            self.bridge.modelState.emit("none", "choose one in the welcome dialog, or later in Settings")
            self.open_first_run()
        elif self.remote is None:
            self.bridge.load_model()
        if quick_ask:
            self.show_quick_ask()

    async def run(self, *, quick_ask: bool = False) -> int:
        try:
            await self.start(quick_ask=quick_ask)
        except Exception as exc:  # a ShoalError says what to do; anything else is classified as a bug
            error = classify(exc)
            self._fatal(error)
            await self.quit_event.wait()  # until the person has read why
            await self.shutdown()
            return error.exit_code
        await self.quit_event.wait()
        await self.shutdown()
        return 0

    def quit(self) -> None:
        self.quit_event.set()

    def restart(self) -> None:
        """Close this window and open a new one with the saved settings, in this process (app/gui.py)."""
        self.restart_requested = True
        self.quit()

    def dispose(self) -> None:
        """After `shutdown`, before a restart: let the window and the tray icon go."""
        self.qapp.aboutToQuit.disconnect(self.quit)
        if self.tray is not None:
            self.tray.deleteLater()
        self.window.deleteLater()

    async def shutdown(self) -> None:
        """Stop turns (each records its stop), let the panes finish their last reloads, then release the core."""
        self.window.save_layout()
        self.window.hide()
        self.bridge.stop_all()
        await self.bridge.drain()
        await settle()
        await self.core.stop()
        if self.tray is not None:
            self.tray.hide()

    def _fatal(self, exc: ShoalError) -> None:
        log.error("desktop start failed: %s", exc.describe())
        box = QMessageBox(QMessageBox.Icon.Critical, "Shoal cannot start", exc.message, QMessageBox.StandardButton.Ok)
        box.setInformativeText(exc.fix)
        box.finished.connect(self.quit)
        self._fatal_box = box  # kept, or it would vanish before anyone reads it
        box.open()

    # --- handling messages from a second `shoal` process ------------------------------------

    def handle_message(self, message: dict[str, Any]) -> None:
        """A second `shoal` process forwarded its request here (see ui.single_instance)."""
        action = message.get("action")
        log.info("request from another shoal process: %s", action)
        if action == "quick-ask":
            self.show_quick_ask()
        elif action == "quit":
            self.quit()
        else:
            self.window.show_and_raise()

    # --- tray and quick-ask ------------------------------------------------------------------

    def _setup_tray(self) -> None:
        from ui.icons import app_icon
        from ui.tray import Tray

        self.qapp.setWindowIcon(app_icon())
        self.tray = Tray(app_icon(), self.window)
        self.tray.quickAskRequested.connect(self.show_quick_ask)
        self.tray.showRequested.connect(self.window.show_and_raise)
        self.tray.quitRequested.connect(self.quit)
        self.tray.pauseToggled.connect(self.bridge.schedule.set_paused)
        self.tray.messageClicked.connect(self._notification_clicked)
        self.window.keep_in_tray = self.tray.available
        if self.tray.available:
            self.tray.show()

    # --- the scheduler -----------------------------------------------------------------------

    async def _start_scheduler(self) -> None:
        """Run scheduled prompts while the app runs; a run that ends can say so from the tray."""
        schedule = self.bridge.schedule
        schedule.runFinished.connect(self._notify_run)
        schedule.stateChanged.connect(self._scheduler_state)
        await self.core.start_scheduler()
        schedule.sync()
        schedule.stateChanged.emit()

    def _scheduler_state(self) -> None:
        if self.tray is None:
            return
        state = self.bridge.schedule.state()
        self.tray.set_scheduler_available(state["running"])
        self.tray.pause_action.blockSignals(True)
        self.tray.pause_action.setChecked(state["paused"])
        self.tray.pause_action.blockSignals(False)

    def _notify_run(self, run: Any, job: Any) -> None:
        """A tray notification when a run ends, if the job and the setting schedule.notify both want one."""
        from ui.widgets.schedule_format import notification

        if self.tray is None or not self.bridge.schedule.should_notify(job):
            return
        title, text = notification(job, run)
        if self.tray.notify(title, text):
            self._notified_session = run.session_id or job.session_id

    def _notification_clicked(self) -> None:
        if self._notified_session:
            self.window.open_session(self._notified_session)
        else:
            self.window.show_and_raise()

    @property
    def quick_ask(self) -> Any:
        if self._quick_ask is None:
            from ui.quick_ask import QuickAskBox

            self._quick_ask = QuickAskBox(self.bridge)
            self._quick_ask.openInMainWindow.connect(self._open_in_main_window)
        return self._quick_ask

    def show_quick_ask(self) -> None:
        self.quick_ask.popup()

    def _open_in_main_window(self, session_id: str) -> None:
        self.window.show_and_raise()
        spawn(self.window.chat.open_session(session_id))

    # --- settings and first run --------------------------------------------------------------

    def _needs_model(self) -> bool:
        from app.first_run import needs_model

        return not self.core._provider_given and needs_model(self.core.settings)

    def _setup_service(self) -> Any:
        from core.setup import SetupService

        return SetupService(self.loaded)

    def open_first_run(self) -> None:
        from ui.dialogs.first_run import FirstRunDialog

        dialog = FirstRunDialog(self._setup_service(), self.window)
        dialog.modelChosen.connect(lambda: spawn(self.settings_saved()))
        self._keep(dialog)
        dialog.open()

    def open_settings(self) -> None:
        from ui.dialogs.settings import SettingsDialog

        dialog = SettingsDialog(self._setup_service(), self.window)
        dialog.saved.connect(lambda: spawn(self.settings_saved()))
        dialog.connectGroupRequested.connect(lambda: self.window.open_connect_group(dialog))
        if self.remote is not None:
            self.remote.adjust_settings(dialog)
        self._keep(dialog)
        dialog.open()

    def _keep(self, dialog: Any) -> None:
        self._dialogs.append(dialog)
        dialog.finished.connect(lambda _result: self._dialogs.remove(dialog) if dialog in self._dialogs else None)

    def _group_settings_applied(self, loaded: LoadedSettings) -> None:
        """The Connect-to-group dialog wrote config.toml and applied it: later reloads start from there."""
        self.loaded = loaded

    async def settings_saved(self) -> None:
        """Reload settings from every layer and hand them to the core; reload the model if it changed."""
        try:
            self.loaded = load_settings(self.loaded.config_file, self.loaded.cli)  # flags still win
        except ShoalError as exc:
            self.bridge.errorRaised.emit(exc.to_dict())
            return
        self.bridge.group.loaded = self.loaded
        await self.core.apply_settings(self.loaded.settings, reconnect=True)
        self.bridge.policy.changed.emit()  # [policy] may have changed: the label picker and the Policy pane follow
        self.bridge.group.sync()  # the group settings may have changed too (rejoined or left)
        self.bridge.schedule.stateChanged.emit()  # schedule.enabled may have started or stopped the runner
        apply_theme(self.qapp, self.loaded.settings.appearance.theme)
        self.bridge.toolsChanged.emit()
        if self.remote is not None:
            await self.remote.settings_saved(self.loaded)
        elif self.loaded.settings.remote.enabled:
            from app.remote_wiring import ask_restart

            ask_restart(self, f"Restart Shoal to connect to {self.loaded.settings.remote.url}?")
        elif not self._needs_model():
            self.bridge.load_model()
