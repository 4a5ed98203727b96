"""The whole desktop app over a real llama.cpp model: first run, chat, timeline, approval from the tools pane."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QApplication

from app.desktop import DesktopApp
from core.providers.llama_local import LlamaCppProvider
from core.settings import load_settings
from tests.fixtures.gguf_models import write_scripted_model
from tests.ui.conftest import wait_until

SHELL_REPLY = '<tool_call>{"name": "shell", "arguments": {"command": "touch from-desktop.txt"}}</tool_call>'


async def test_a_new_user_gets_the_first_run_dialog() -> None:
    app = QApplication.instance()
    desktop = DesktopApp(app, load_settings(None, {}))  # type: ignore[arg-type]
    try:
        await desktop.start(show=False)
        from ui.dialogs.first_run import FirstRunDialog

        assert any(isinstance(d, FirstRunDialog) for d in desktop._dialogs)
    finally:
        for dialog in list(desktop._dialogs):
            dialog.reject()
        await desktop.shutdown()


async def test_chat_timeline_and_an_approved_tool_call_through_a_real_model(tmp_path: Path) -> None:
    model = write_scripted_model(tmp_path / "shell.gguf", SHELL_REPLY)
    loaded = load_settings(None, {"agent": {"max_iterations": 1}, "model": {"temperature": 0.0}})
    provider = LlamaCppProvider(str(model), n_ctx=4096, n_threads=2)
    app = QApplication.instance()
    desktop = DesktopApp(app, loaded, provider=provider)  # type: ignore[arg-type]
    window = desktop.window
    try:
        await desktop.start(show=False)
        ended: list[object] = []
        desktop.bridge.turnEnded.connect(lambda *_: ended.append(1))
        window.chat.ask("Make me a file")
        await wait_until(lambda: bool(window.tools.queue.cards()), timeout=30, message="no approval card")
        [card] = window.tools.queue.cards()
        from PySide6.QtWidgets import QPlainTextEdit

        assert "touch from-desktop.txt" in card.findChild(QPlainTextEdit).toPlainText()
        card.approve_button.click()
        await wait_until(lambda: bool(ended), timeout=30)
        workspace = loaded.settings.tools.workspace_path()
        assert (workspace / "from-desktop.txt").exists()
        kinds = {window.timeline.tree.event_at(item).kind for item in _items(window.timeline.tree)}
        assert {"user.message", "llm.request", "llm.response", "tool.call", "approval", "tool.result"} <= kinds
        await wait_until(lambda: "shell" in window.chat.view.toPlainText(), message="tool line missing from the chat")
    finally:
        await desktop.shutdown()


def _items(tree):  # type: ignore[no-untyped-def]
    stack = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
    while stack:
        item = stack.pop()
        yield item
        stack.extend(item.child(i) for i in range(item.childCount()))


async def test_closing_the_window_without_a_tray_stops_the_turn_and_releases_everything() -> None:
    import asyncio

    from core import events as ev
    from core.providers.base import TextDelta
    from core.providers.scripted import ScriptedProvider

    provider = ScriptedProvider([[TextDelta("word ") for _ in range(2000)]], delay=0.005)
    app = QApplication.instance()
    desktop = DesktopApp(app, load_settings(None, {}), provider=provider)  # type: ignore[arg-type]
    running = asyncio.ensure_future(desktop.run())
    await wait_until(lambda: desktop.window.chat.current_session_id() is not None, timeout=10)
    ended: list[object] = []
    deltas: list[str] = []
    desktop.bridge.turnEnded.connect(lambda _sid, final: ended.append(final))
    desktop.bridge.assistantDelta.connect(lambda _sid, text: deltas.append(text))
    desktop.window.chat.ask("talk for a long time")
    await wait_until(lambda: len(deltas) > 3, timeout=10)  # mid-answer
    assert not app.quitOnLastWindowClosed()
    desktop.window.close()  # no tray offscreen: closing quits
    assert await asyncio.wait_for(running, 10) == 0
    assert not desktop.core.db.running
    assert isinstance(ended[-1], ev.TurnFinished) and ended[-1].status == "cancelled"


async def test_a_core_that_cannot_start_explains_why_and_waits_to_be_read(tmp_path: Path) -> None:
    import asyncio

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    loaded = load_settings(None, {"paths": {"data_dir": str(blocker / "data")}})
    app = QApplication.instance()
    desktop = DesktopApp(app, loaded)  # type: ignore[arg-type]
    running = asyncio.ensure_future(desktop.run())
    await wait_until(lambda: desktop._fatal_box is not None, timeout=10)
    await asyncio.sleep(0.2)
    assert not running.done() and desktop._fatal_box.isVisible()
    assert "database" in desktop._fatal_box.text().lower() or "write" in desktop._fatal_box.text().lower()
    desktop._fatal_box.accept()
    assert await asyncio.wait_for(running, 10) == 2  # a storage problem is the user's to fix
