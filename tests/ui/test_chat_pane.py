"""The chat pane over a real core: streaming, stop, regenerate, threads, search, export, find, attach."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QContextMenuEvent, QGuiApplication
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

from core import events as ev
from core.errors import ModelFileError
from core.providers.scripted import Step, tool_call
from core.timeline.sessions import SessionInfo
from tests.ui.conftest import running_bridge, scripted_bridge, wait_until
from ui import tasks
from ui.bridge import Bridge
from ui.panes.chat import ChatPane

LONG = "The tide turns at six. " * 12  # 276 characters: 69 streamed chunks


@asynccontextmanager
async def pane_over(bridge: Bridge) -> AsyncIterator[tuple[ChatPane, Bridge, list[object]]]:
    """A started, shown pane; yields it, its bridge and every turn's final event (in order)."""
    pane = ChatPane(bridge)
    pane.resize(960, 640)
    pane.show()
    finals: list[object] = []
    bridge.turnEnded.connect(lambda _sid, final: finals.append(final))
    try:
        await pane.start()
        yield pane, bridge, finals
    finally:
        bridge.stop_all()
        await bridge.drain()
        await settle()
        pane.hide()  # not close(): closing the last window would quit the app, and with it the test's loop
        pane.deleteLater()


@asynccontextmanager
async def chat_pane(
    steps: Sequence[Step] = (), *, delay: float = 0.0
) -> AsyncIterator[tuple[ChatPane, Bridge, list[object]]]:
    """`pane_over` a real core whose model plays `steps`."""
    async with scripted_bridge(steps, delay=delay) as (bridge, _provider), pane_over(bridge) as inner:
        yield inner


async def settle() -> None:
    """Every reload and refresh the widgets started has finished."""
    await wait_until(lambda: not tasks._running, message="widget tasks still running")


async def answered(pane: ChatPane, count: int, finals: list[object]) -> None:
    """`count` turns have ended and the shown transcript was reloaded from the record."""
    await wait_until(lambda: len(finals) >= count, timeout=10, message=f"{len(finals)} of {count} turns ended")
    await settle()


def text_of(pane: ChatPane) -> str:
    pane.view.flush()
    return pane.view.toPlainText()


async def sessions_where(bridge: Bridge, check: Callable[[list[SessionInfo]], bool]) -> list[SessionInfo]:
    """Poll the core until its sessions satisfy `check` (the pane's commands are asynchronous)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 5
    while not check(sessions := await bridge.sessions()):
        assert loop.time() < end, f"sessions never matched: {sessions}"
        await asyncio.sleep(0.02)
    return sessions


async def test_enter_sends_and_the_answer_streams_in_before_the_turn_ends() -> None:
    async with chat_pane([LONG], delay=0.005) as (pane, bridge, finals):
        sid = pane.current_session_id()
        assert sid is not None and pane.composer.send_button.text() == "Send"
        pane.composer.set_text("When is high tide?")
        QTest.keyClick(pane.composer.input, Qt.Key.Key_Return)
        assert pane.composer.text() == ""

        def mid_stream() -> bool:
            shown = text_of(pane)
            return bridge.is_busy(sid) and "The tide turns" in shown and LONG.strip() not in shown

        await wait_until(mid_stream, message="no partial answer was shown while streaming")
        assert pane.composer.send_button.text() == "Stop"
        assert pane.threads.is_marked_busy(sid)
        assert "When is high tide?" in text_of(pane)

        await answered(pane, 1, finals)
        shown = text_of(pane)
        assert LONG.strip() in shown and "When is high tide?" in shown
        assert "scripted · " in shown and "tokens" in shown  # model and token figures under the answer
        assert pane.composer.send_button.text() == "Send" and not pane.threads.is_marked_busy(sid)
        assert pane.threads.title_of(sid) == "When is high tide?"  # the core titled it; the list re-read it


async def test_stop_mid_stream_ends_the_turn_and_keeps_the_partial_answer() -> None:
    async with chat_pane([LONG], delay=0.02) as (pane, bridge, finals):
        sid = pane.current_session_id()
        assert sid is not None
        pane.ask("Tell me about tides")
        await wait_until(lambda: "The tide turns" in text_of(pane))
        assert pane.composer.send_button.text() == "Stop"
        pane.composer.send_button.click()

        await answered(pane, 1, finals)
        [final] = finals
        assert isinstance(final, ev.TurnFinished) and final.status == "cancelled"
        assert final.text and final.text != LONG and LONG.startswith(final.text)
        [_question, partial] = await bridge.transcript(sid)
        assert partial.status == "cancelled" and partial.message.content == final.text
        shown = text_of(pane)
        assert final.text.strip() in shown and "stopped" in shown
        assert pane.composer.send_button.text() == "Send"


async def test_regenerate_replaces_the_last_answer() -> None:
    async with chat_pane(["First answer.", "Second answer."]) as (pane, bridge, finals):
        pane.ask("Say something")
        await answered(pane, 1, finals)
        assert "First answer." in text_of(pane)
        assert pane.view.copy_last_answer() and QGuiApplication.clipboard().text() == "First answer."
        point = pane.view.cursorRect(pane.view.document().find("Say something")).center()
        pane.view.contextMenuEvent(
            QContextMenuEvent(QContextMenuEvent.Reason.Mouse, point, pane.view.viewport().mapToGlobal(point))
        )
        menu = pane.view._menu
        assert menu is not None and menu.isVisible()
        next(a for a in menu.actions() if a.text() == "Copy message").trigger()
        menu.close()
        assert QGuiApplication.clipboard().text() == "Say something"  # the message under the pointer

        pane.view.anchorClicked.emit(QUrl("shoal:regenerate"))  # the "Regenerate" link under the answer
        await answered(pane, 2, finals)
        shown = text_of(pane)
        assert "Second answer." in shown and "First answer." not in shown
        sid = pane.current_session_id()
        assert sid is not None
        assert [e.message.content for e in await bridge.transcript(sid)] == ["Say something", "Second answer."]


async def test_threads_new_rename_pin_and_delete_reach_the_core() -> None:
    async with chat_pane(["ok"]) as (pane, bridge, finals):
        first = pane.current_session_id()
        assert first is not None and [s.id for s in await bridge.sessions()] == [first]
        await pane.new_thread()  # the shown thread is still empty: it is the new thread
        assert pane.current_session_id() == first and len(await bridge.sessions()) == 1
        pane.ask("first question")
        await answered(pane, 1, finals)

        selected: list[str] = []
        pane.sessionSelected.connect(selected.append)
        await pane.new_thread()
        second = pane.current_session_id()
        assert second not in (None, first) and selected == [second]
        assert {s.id for s in await bridge.sessions()} == {first, second}

        item = pane.threads.item_for(second)
        assert item is not None
        item.setText("Tide tables")  # what committing the inline editor does
        await sessions_where(bridge, lambda ss: any(s.id == second and s.title == "Tide tables" for s in ss))
        await wait_until(lambda: pane.title_label.text() == "Tide tables")

        pin = next(a for a in pane.threads.context_menu(first).actions() if a.text() == "Pin")
        pin.trigger()
        await sessions_where(bridge, lambda ss: ss[0].id == first and ss[0].pinned)
        await wait_until(lambda: pane.threads.session_ids() == [first, second])
        unpin = [a.text() for a in pane.threads.context_menu(first).actions()]
        assert "Unpin" in unpin

        box = pane.threads.confirm_delete(second)
        assert box.isVisible()  # opened with open(): the test (and the app) keep running while it asks
        box.button(QMessageBox.StandardButton.Yes).click()
        await sessions_where(bridge, lambda ss: [s.id for s in ss] == [first])
        await wait_until(lambda: pane.current_session_id() == first)
        await settle()
        assert pane.threads.session_ids() == [first] and "first question" in text_of(pane)


async def test_search_finds_another_thread_and_opens_it_at_the_match() -> None:
    steps = ["The lighthouse stands on Kelp Point.", "Hello there."]
    async with chat_pane(steps) as (pane, _bridge, finals):
        lighthouse = pane.current_session_id()
        pane.ask("Where is the old beacon?")
        await answered(pane, 1, finals)
        await pane.new_thread()
        pane.ask("hi")
        await answered(pane, 2, finals)
        assert pane.current_session_id() != lighthouse

        dialog = pane.show_search()
        assert dialog.isVisible() and not dialog.isModal()
        hits = await dialog.run_search("lighthouse")
        assert [h.session_id for h in hits] == [lighthouse] and dialog.results.count() == 1
        dialog.activate_row(0)
        await wait_until(lambda: pane.current_session_id() == lighthouse)
        await settle()
        assert "Kelp Point" in text_of(pane)
        assert pane.view.textCursor().selectedText().lower() == "lighthouse"  # the match is selected
        assert pane.find_bar.isVisible() and pane.find_bar.field.text().lower() == "lighthouse"


async def test_export_writes_markdown_and_json(tmp_path: Path) -> None:
    async with chat_pane(["Here is **your** answer."]) as (pane, _bridge, finals):
        pane.ask("Export me")
        await answered(pane, 1, finals)
        md, js = tmp_path / "thread.md", tmp_path / "thread.json"
        await pane.export_current("markdown", str(md))
        await pane.export_current("json", str(js))
        assert md.read_text(encoding="utf-8").startswith("# Export me\n")
        assert "Here is **your** answer." in md.read_text(encoding="utf-8")
        data = json.loads(js.read_text(encoding="utf-8"))
        assert [m["role"] for m in data["messages"]] == ["user", "assistant"] and data["title"] == "Export me"
        assert "Exported to" in pane.status.text()


async def test_find_in_thread_counts_and_walks_the_matches() -> None:
    async with chat_pane(["Tide one, tide two, and TIDE three."]) as (pane, _bridge, finals):
        pane.ask("tell me about the tide")
        await answered(pane, 1, finals)
        bar = pane.find_bar
        bar.open_bar("tide")
        assert bar.isVisible() and bar.match_count() == 4
        assert bar.count_label.text() == "1 of 4"
        bar.find_next()
        assert bar.count_label.text() == "2 of 4"
        bar.find_previous()
        bar.find_previous()  # wraps around to the last match
        assert bar.count_label.text() == "4 of 4"
        assert len(pane.view.extraSelections()) == 4  # every match is tinted
        bar.open_bar("seaweed")
        assert bar.match_count() == 0 and bar.count_label.text() == "No matches"
        bar.close_bar()
        assert not bar.isVisible() and pane.view.extraSelections() == []


async def test_attach_takes_workspace_text_files_only(tmp_path: Path, workspace: Path) -> None:
    async with chat_pane() as (pane, _bridge, _finals):
        composer = pane.composer
        assert composer.workspace.resolve() == workspace.resolve()
        outside = tmp_path / "secret.txt"
        outside.write_text("not for the model")
        composer.set_text("Look at this")
        assert not composer.attach_file(outside)
        assert composer.notice.isVisible() and "outside the workspace" in composer.notice.text()
        assert composer.text() == "Look at this"

        big = workspace / "big.log"
        big.write_text("x" * 210_000)
        assert not composer.attach_file(big) and "200 kB" in composer.notice.text()

        notes = workspace / "notes.py"
        notes.write_text("print('high tide')\n")
        assert composer.attach_file(notes)
        assert composer.text() == "Look at this\n\n`notes.py`:\n\n```python\nprint('high tide')\n```\n"


async def test_tool_calls_show_as_compact_lines(workspace: Path) -> None:
    (workspace / "notes.txt").write_text("High tide at six.")
    steps: list[Step] = [[tool_call("read_file", {"path": "notes.txt"})], "Your notes say six."]
    async with chat_pane(steps) as (pane, _bridge, finals):
        pane.ask("What do my notes say?")
        await answered(pane, 1, finals)
        lines = text_of(pane).splitlines()
        assert "⚙ read_file(path=notes.txt) → High tide at six." in lines
        assert "Your notes say six." in lines


async def test_a_failed_turn_is_shown_inline_and_bridge_errors_in_the_status_line() -> None:
    failure = ModelFileError("The model file is missing.", "Pick a GGUF file in Settings.")
    async with chat_pane([failure, "Recovered."]) as (pane, bridge, finals):
        pane.ask("hello?")
        await answered(pane, 1, finals)
        assert isinstance(finals[0], ev.TurnFailed)
        shown = text_of(pane)
        assert "⚠ The model file is missing." in shown and "→ Pick a GGUF file in Settings." in shown

        bridge.errorRaised.emit({"message": "Could not load the model.", "fix": "Check the path."})
        assert pane.status.isVisible() and "Could not load the model." in pane.status.text()

        assert pane.regenerate()  # asks the failed question again; the error goes away
        await answered(pane, 2, finals)
        shown = text_of(pane)
        assert "Recovered." in shown and "model file is missing" not in shown


def _plain_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.gguf_models import write_scripted_model

    return write_scripted_model(tmp_path_factory.mktemp("models") / "plain.gguf", "Hello from Shoal. The tide is in.")


@pytest.mark.slow
async def test_a_real_llama_cpp_answer_appears_in_the_view(tmp_path_factory: pytest.TempPathFactory) -> None:
    from core.providers.llama_local import LlamaCppProvider

    provider = LlamaCppProvider(str(_plain_model(tmp_path_factory)), n_ctx=4096, n_threads=2)
    bridge_context = running_bridge(provider, {"model": {"temperature": 0.0}})
    async with bridge_context as bridge, pane_over(bridge) as (pane, _bridge, finals):
        pane.ask("hi")
        await answered(pane, 1, finals)
        assert isinstance(finals[0], ev.TurnFinished) and finals[0].status == "ok"
        assert "Hello from Shoal. The tide is in." in text_of(pane)
        assert "plain.gguf · " in text_of(pane)


async def test_a_long_streamed_answer_renders_incrementally_and_completely() -> None:
    """Finished paragraphs are written once; the view ends up with every paragraph, code fences intact."""
    from core.providers.base import TextDelta
    from ui.panes.chat import ChatPane
    from ui.widgets.message_view import _paragraphs

    assert _paragraphs("a\n\n```\nx\n\ny\n```\n\nb") == ["a\n\n", "```\nx\n\ny\n```\n\n", "b"]
    text = "".join(f"Paragraph {i} about the tide.\n\n" for i in range(40)) + "```py\nprint('done')\n```"
    chunks = [TextDelta(text[i : i + 7]) for i in range(0, len(text), 7)]
    async with scripted_bridge([chunks], delay=0.001) as (bridge, _):
        pane = ChatPane(bridge)
        await pane.start()
        ended: list[object] = []
        bridge.turnEnded.connect(lambda *_: ended.append(1))
        seen_placeholder_after_text = False
        pane.ask("Tell me everything")
        while not ended:
            await asyncio.sleep(0.02)
            shown = pane.view.toPlainText()
            seen_placeholder_after_text |= "Paragraph 0" in shown and "…" in shown.split("Paragraph 0")[0][-3:]
        await wait_until(lambda: "Paragraph 39" in pane.view.toPlainText())
        shown = pane.view.toPlainText()
        assert all(f"Paragraph {i} about" in shown for i in range(40))
        assert "print('done')" in shown and not seen_placeholder_after_text
