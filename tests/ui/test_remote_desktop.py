"""The desktop in remote mode, driven through its real widgets, against a real `shoal serve` on the same loop.

No model and no database run in the desktop here: every answer, step and question comes from the server
(tests/serve/conftest.py's `served`, a real uvicorn around a real core with a scripted model).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QApplication, QPlainTextEdit

from app.desktop import DesktopApp
from app.remote_wiring import RemoteDesktop, wait_connected
from core import events as ev
from core.config_file import read, write_atomically
from core.providers.base import TextDelta
from core.providers.scripted import tool_call
from core.secrets import get_token, set_token
from core.settings import load_settings
from tests.serve.conftest import Served, served
from tests.serve.test_remote_core import TcpProxy
from tests.ui.conftest import wait_until
from tests.ui.test_desktop_flow import _items


def remote_loaded(url: str, **extra: Any) -> Any:
    """Remote mode as the Settings dialog leaves it: in config.toml (a flag would win over any later change)."""
    config = Path(os.environ["SHOAL_CONFIG"])
    write_atomically(config, {"remote": {"enabled": True, "url": url, "timeout": 5, **extra}})
    return load_settings(config, {})


@asynccontextmanager
async def remote_desktop(server: Served, *, token: str | None = None) -> AsyncIterator[DesktopApp]:
    """A desktop in remote mode, started (window not shown), with the server's token in the keyring."""
    set_token("remote", token if token is not None else server.token or "")
    desktop = DesktopApp(QApplication.instance(), remote_loaded(server.url))  # type: ignore[arg-type]
    try:
        await desktop.start(show=False)
        yield desktop
    finally:
        await desktop.shutdown()


def remote_of(desktop: DesktopApp) -> RemoteDesktop:
    assert isinstance(desktop.remote, RemoteDesktop)
    return desktop.remote


def timeline_kinds(desktop: DesktopApp) -> list[str]:
    tree = desktop.window.timeline.tree
    return [tree.event_at(item).kind for item in _items(tree) if tree.event_at(item) is not None]


async def test_a_message_from_the_chat_pane_is_answered_by_the_server_streamed_and_the_timeline_follows_live() -> None:
    answer = "High water at 18:42, then the tide turns."
    deltas = [TextDelta(word) for word in answer.split(" ")]
    deltas = [TextDelta(d.text + " ") for d in deltas[:-1]] + deltas[-1:]
    async with served([deltas], delay=0.03) as server, remote_desktop(server) as desktop:
        window, bridge = desktop.window, desktop.bridge
        remote = remote_of(desktop)
        assert desktop.core.settings.remote.url == server.url and not hasattr(desktop.core, "db")
        assert window.windowTitle() == f"Shoal — Remote: {server.url}"
        assert f"Remote: {server.url}" in remote.label.text() and "●" in remote.label.text()
        streamed: list[str] = []
        live_kinds: list[str] = []
        ended: list[Any] = []
        bridge.assistantDelta.connect(lambda _sid, text: streamed.append(text))
        bridge.timelineEvent.connect(lambda event: live_kinds.append(event.kind))
        bridge.turnEnded.connect(lambda _sid, final: ended.append((final, list(live_kinds))))
        window.chat.ask("When is high water?")
        await wait_until(lambda: bool(ended), timeout=20, message="the turn did not end")
        final, kinds_before_end = ended[0]
        assert isinstance(final, ev.TurnFinished) and final.status == "ok" and final.text == answer
        assert len(streamed) == len(deltas) and "".join(streamed) == answer  # piece by piece, not at the end
        assert {"user.message", "llm.request"} <= set(kinds_before_end)  # live, during the turn
        # the response step and the turn's end come over two streams: either may be first
        await wait_until(lambda: "llm.response" in live_kinds, message="the response step did not come live")
        await wait_until(lambda: answer in window.chat.view.toPlainText(), message="answer missing from the chat")
        [stored] = await server.core.sessions.recent()  # the thread lives on the server
        assert window.chat.current_session_id() == stored.id and stored.message_count == 2
        await wait_until(lambda: "turn.end" in timeline_kinds(desktop), message="timeline pane missed the turn")
        assert {"user.message", "llm.request", "llm.response", "turn.end"} <= set(timeline_kinds(desktop))
        await wait_until(lambda: "● Ready" in window._status_model.text() and "scripted" in window._status_model.text())


async def test_a_high_risk_tool_is_approved_in_the_desktop_and_the_turn_finishes_on_the_server() -> None:
    steps = [[tool_call("shell", {"command": "touch from-remote-desktop.txt"})], "Made the file."]
    async with served(steps) as server, remote_desktop(server) as desktop:
        window = desktop.window
        ended: list[Any] = []
        desktop.bridge.turnEnded.connect(lambda _sid, final: ended.append(final))
        window.chat.ask("Make me a file")
        await wait_until(lambda: bool(window.tools.queue.cards()), timeout=20, message="no approval card")
        [card] = window.tools.queue.cards()
        assert "touch from-remote-desktop.txt" in card.findChild(QPlainTextEdit).toPlainText()
        assert "1 approval waiting" in window._status_approvals.text()
        assert server.broker.pending and not ended  # the server's turn waits for this desktop
        card.approve_button.click()
        await wait_until(lambda: bool(ended), timeout=20)
        assert isinstance(ended[0], ev.TurnFinished) and ended[0].text == "Made the file."
        assert (server.core.settings.tools.workspace_path() / "from-remote-desktop.txt").exists()
        await wait_until(lambda: not window.tools.queue.cards(), message="the answered card stayed")
        assert not server.broker.pending and window._status_approvals.text() == ""
        await wait_until(lambda: {"approval", "tool.result"} <= set(timeline_kinds(desktop)))


async def test_a_question_answered_on_another_client_leaves_the_desktop_too() -> None:
    steps = [[tool_call("shell", {"command": "echo hi"})], "Skipped it."]
    async with served(steps) as server, remote_desktop(server) as desktop, server.client() as other:
        window = desktop.window
        window.chat.ask("Say hi")
        await wait_until(lambda: bool(window.tools.queue.cards()), timeout=20)
        [remote_id] = server.broker.pending
        assert (await other.post(f"/api/approvals/{remote_id}", json={"decision": "deny"})).status_code == 200
        await wait_until(lambda: not window.tools.queue.cards(), message="the card answered elsewhere stayed")
        await wait_until(lambda: "Skipped it." in window.chat.view.toPlainText(), timeout=20)


async def test_a_wrong_token_is_explained_the_app_keeps_running_and_retry_connects_once_fixed() -> None:
    async with served(["Connected at last."]) as server:
        set_token("remote", "not-the-token")
        desktop = DesktopApp(QApplication.instance(), remote_loaded(server.url))  # type: ignore[arg-type]
        running = asyncio.ensure_future(desktop.run())
        try:
            remote = remote_of(desktop)
            await wait_until(lambda: remote.error_box is not None and remote.error_box.isVisible(), timeout=15)
            box = remote.error_box
            assert box is not None
            assert box.text() == f"The token for {server.url} is wrong; paste it in Settings."
            assert "shoal serve --show-token" in box.informativeText()
            assert "✗" in remote.label.text() and "wrong" in remote.label.toolTip()
            await asyncio.sleep(0.3)
            assert not running.done() and desktop.window.isVisible()  # not fatal: the window stays
            window = desktop.window
            window.chat.ask("Hello?")  # not connected: said in the chat, and the draft is kept
            await wait_until(lambda: "Not connected" in window.chat.status.text(), message="no reason shown")
            assert window.chat.composer.text() == "Hello?"
            set_token("remote", server.token or "")  # what pasting it in Settings does
            retry = next(b for b in box.buttons() if b.text() == "Retry")
            retry.click()
            await wait_connected(remote)  # the feeds are up a few loop turns before the error box is closed
            await wait_until(lambda: remote.error_box is None and "●" in remote.label.text(), timeout=10)
            ended: list[Any] = []
            desktop.bridge.turnEnded.connect(lambda _sid, final: ended.append(final))
            window.chat.composer.submit()
            await wait_until(lambda: bool(ended), timeout=20)
            assert isinstance(ended[0], ev.TurnFinished) and ended[0].text == "Connected at last."
        finally:
            desktop.quit()
            assert await asyncio.wait_for(running, 15) == 0


async def test_an_unreachable_server_is_explained_and_the_app_keeps_running(unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"
    set_token("remote", "some-token")
    desktop = DesktopApp(QApplication.instance(), remote_loaded(url))  # type: ignore[arg-type]
    running = asyncio.ensure_future(desktop.run())
    try:
        remote = remote_of(desktop)
        await wait_until(lambda: remote.error_box is not None and remote.error_box.isVisible(), timeout=15)
        box = remote.error_box
        assert box is not None
        assert box.text().startswith(f"Cannot reach the Shoal server at {url}") and "refused" in box.text()
        assert "shoal serve" in box.informativeText()
        await asyncio.sleep(0.3)
        assert not running.done() and desktop.window.isVisible()
        retry = next(b for b in box.buttons() if b.text() == "Retry")
        retry.click()  # still down: explained again, still running
        await wait_until(lambda: remote.error_box is not None and remote.error_box is not box, timeout=15)
        assert not running.done()
    finally:
        desktop.quit()
        assert await asyncio.wait_for(running, 15) == 0


async def test_local_only_things_say_they_are_the_servers_in_remote_mode() -> None:
    async with served() as server, remote_desktop(server) as desktop:
        window = desktop.window
        assert not window.connect_group_action.isEnabled()
        assert "server" in window.roster.off_label.text() and window.roster.connect_button.isHidden()
        documents = window.memory.documents
        assert not documents.isEnabled() and "server" in documents.add_button.toolTip()
        assert desktop.tray is None or not desktop.tray.pause_action.isVisible()
        desktop.open_settings()
        dialog = desktop._dialogs[-1]
        assert not dialog.group_button.isEnabled()
        enabled = {dialog.tabs.tabText(i): dialog.tabs.isTabEnabled(i) for i in range(dialog.tabs.count())}
        assert enabled == {
            "Model": False,  # the server's model, not this computer's
            "Generation": False,
            "Tools && workspace": False,
            "Schedule": False,  # the server's scheduler
            "Appearance": True,
            "Group": True,
            "Remote": True,
        }
        assert dialog.tabs.currentWidget() is dialog.remote_tab
        dialog.reject()
        assert desktop.bridge.schedule.state()["group"] is None, "the server's group decides a job's claim"


def test_a_new_trusted_certificate_or_time_limit_counts_as_a_new_connection() -> None:
    from app.remote_wiring import connection_of
    from core.settings import RemoteSettings

    base = RemoteSettings(enabled=True, url="https://pi.local:8765/")
    assert connection_of(base) == connection_of(RemoteSettings(enabled=True, url="https://pi.local:8765"))
    assert connection_of(base) != connection_of(base.model_copy(update={"ca_file": "/etc/pi.pem"}))
    assert connection_of(base) != connection_of(base.model_copy(update={"timeout": 90.0}))


async def test_remote_mode_is_switched_on_in_settings_and_the_window_restarts_connected(tmp_path: Path) -> None:
    from app.gui import run_windows

    async with served(["Hello from the server."]) as server:
        config = tmp_path / "config" / "config.toml"
        windows: list[DesktopApp] = []
        app = QApplication.instance()
        running = asyncio.ensure_future(run_windows(app, load_settings(config, {}), on_window=windows.append))
        try:
            await wait_until(lambda: bool(windows) and bool(windows[0]._dialogs), timeout=20)
            local = windows[0]
            assert local.remote is None  # remote mode off: the embedded core (which asks for a model first)
            for first_run in list(local._dialogs):
                first_run.reject()
            local.open_settings()
            dialog = local._dialogs[-1]
            tab = dialog.remote_tab
            dialog.tabs.setCurrentWidget(tab)
            tab.enabled.setChecked(True)
            assert not dialog.apply() and "address" in dialog.errors["remote.enabled"].plain  # no address yet
            tab.url.setText(server.url.removeprefix("http://"))  # no scheme typed: http:// is assumed
            tab.ca_file.setText(str(tmp_path / "server.pem"))
            assert not dialog.apply() and "There is no file" in dialog.errors["remote.ca_file"].plain
            tab.test_button.click()
            await wait_until(lambda: tab.test_status.kind == "error", timeout=10, message="no test result")
            assert "There is no file" in tab.test_status.plain
            tab.ca_file.setText("")
            tab.test_status.clear_message()
            tab.token.setText("wrong")
            tab.test_button.click()
            await wait_until(lambda: tab.test_status.kind == "error", timeout=10, message="no test result")
            assert "is wrong; paste it in Settings" in tab.test_status.plain
            tab.token.setText(server.token or "")
            tab.test_button.click()
            await wait_until(lambda: tab.test_status.kind == "ok", timeout=10)
            assert "✓ Connected: Shoal" in tab.test_status.plain and "scripted" in tab.test_status.plain
            assert dialog.apply()
            assert read(config)["remote"] == {"enabled": True, "url": server.url}
            assert server.token not in config.read_text()  # the token is never in config.toml
            secret = get_token("remote")
            assert secret is not None and secret.value == server.token and secret.origin == "keyring"
            await wait_until(lambda: local.restart_box is not None, message="no restart offered")
            assert local.restart_box.text() == f"Restart Shoal to connect to {server.url}?"
            next(b for b in local.restart_box.buttons() if b.text() == "Restart now").click()
            await wait_until(lambda: len(windows) == 2, timeout=20, message="no new window after the restart")
            remote = remote_of(windows[1])
            await wait_connected(remote)
            assert windows[1].window.windowTitle() == f"Shoal — Remote: {server.url}"
            assert not local.core._started  # the embedded core was released before the new window
            ended: list[Any] = []
            windows[1].bridge.turnEnded.connect(lambda _sid, final: ended.append(final))
            windows[1].window.chat.ask("Anyone there?")
            await wait_until(lambda: bool(ended), timeout=20)
            assert isinstance(ended[0], ev.TurnFinished) and ended[0].text == "Hello from the server."
        finally:
            if windows:
                windows[-1].quit()
            assert await asyncio.wait_for(running, 20) == 0


async def test_a_lost_connection_is_shown_and_the_window_catches_up_when_it_is_back(unused_tcp_port: int) -> None:
    async with served() as server, server.client() as other:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        async with TcpProxy(unused_tcp_port, host, int(port)) as link:
            set_token("remote", server.token or "")
            loaded = remote_loaded(f"http://127.0.0.1:{unused_tcp_port}")
            desktop = DesktopApp(QApplication.instance(), loaded)  # type: ignore[arg-type]
            try:
                await desktop.start(show=False)
                remote, window = remote_of(desktop), desktop.window
                assert "●" in remote.label.text()
                await link.stop()  # the network goes
                await wait_until(lambda: "✗" in remote.label.text(), timeout=10, message="the drop was not shown")
                session = (await other.post("/api/sessions", json={"title": "made elsewhere"})).json()["id"]
                await link.start()  # and comes back
                await wait_connected(remote, timeout=20)
                assert "●" in remote.label.text()
                await wait_until(lambda: session in window.chat.threads.session_ids(), message="threads not reloaded")
            finally:
                await desktop.shutdown()


async def test_switching_remote_mode_off_offers_a_restart_and_later_keeps_the_connection() -> None:
    async with served() as server, remote_desktop(server) as desktop:
        desktop.open_settings()
        dialog = desktop._dialogs[-1]
        dialog.remote_tab.enabled.setChecked(False)
        assert dialog.apply()
        await wait_until(lambda: desktop.restart_box is not None, message="no restart offered")
        box = desktop.restart_box
        assert "Remote mode is off now" in box.text()
        next(b for b in box.buttons() if b.text() == "Later").click()
        await asyncio.sleep(0.2)
        assert not desktop.restart_requested and not desktop.quit_event.is_set()
        assert desktop.core.connected  # type: ignore[attr-defined]


async def test_a_turn_another_client_runs_in_the_shown_thread_appears_in_it() -> None:
    steps = ["First answer.", "Answer to the phone."]
    async with served(steps) as server, server.client() as phone, remote_desktop(server) as desktop:
        window = desktop.window
        ended: list[Any] = []
        desktop.bridge.turnEnded.connect(lambda _sid, final: ended.append(final))
        window.chat.ask("Hello from the desktop")
        await wait_until(lambda: bool(ended), timeout=20)
        session = window.chat.current_session_id()
        body = {"text": "Hi from my phone", "stream": False}
        assert (await phone.post(f"/api/sessions/{session}/messages", json=body)).status_code == 200
        shown = window.chat.view.toPlainText
        await wait_until(lambda: "Answer to the phone." in shown(), message="the shown thread stayed stale")
        assert "Hi from my phone" in shown()
