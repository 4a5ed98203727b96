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
