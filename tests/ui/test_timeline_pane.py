"""The timeline pane against the real core: trace trees, live rows, filters, details, walk back, scope."""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QTreeWidgetItem

from core.providers.scripted import tool_call
from tests.ui.conftest import scripted_bridge, wait_until
from ui.bridge import Bridge
from ui.panes.timeline import ALL_THREADS, THIS_THREAD, TimelinePane
from ui.widgets.event_format import ERROR_COLOR
from ui.widgets.trace_tree import CONTEXT_ROLE, Col, TraceTree

TOOL_TURN = [[tool_call("list_dir", {"path": "."})], "done"]


def kind(item: QTreeWidgetItem) -> str:
    return TraceTree.event_at(item).kind  # type: ignore[union-attr]


def rows(tree: TraceTree) -> list[QTreeWidgetItem]:
    """Every row, depth first."""
    found: list[QTreeWidgetItem] = []

    def visit(item: QTreeWidgetItem) -> None:
        found.append(item)
        for i in range(item.childCount()):
            visit(item.child(i))

    for i in range(tree.topLevelItemCount()):
        visit(tree.topLevelItem(i))
    return found


def first_chain(root: QTreeWidgetItem) -> list[QTreeWidgetItem]:
    chain = [root]
    while chain[-1].childCount():
        chain.append(chain[-1].child(0))
    return chain


def of_kind(tree: TraceTree, name: str) -> list[QTreeWidgetItem]:
    return [item for item in rows(tree) if kind(item) == name]


async def run_turn(bridge: Bridge, session_id: str, text: str) -> None:
    """Send and wait for `turnEnded` (not `is_busy`: the bridge still tidies up after the turn's task ends)."""
    ended: list[object] = []

    def on_end(sid: str, final: object) -> None:
        if sid == session_id:
            ended.append(final)

    bridge.turnEnded.connect(on_end)
    bridge.send(session_id, text)
    await wait_until(lambda: bool(ended), message="the turn did not end")
    bridge.turnEnded.disconnect(on_end)


async def pane_after_tool_turn(bridge: Bridge) -> tuple[TimelinePane, str]:
    session = await bridge.new_session()
    pane = TimelinePane(bridge)
    pane.resize(900, 600)
    pane.set_session(session.id)
    await pane.start()
    await run_turn(bridge, session.id, "what is in my folder?")
    return pane, session.id


async def test_a_tool_turn_is_one_trace_of_causes(workspace: Path) -> None:
    async with scripted_bridge(TOOL_TURN) as (bridge, _):
        pane, _session = await pane_after_tool_turn(bridge)
        tree = pane.tree
        assert tree.topLevelItemCount() == 1
        root = tree.topLevelItem(0)
        assert "what is in my folder?" in root.text(Col.EVENT) and root.text(Col.TIME)
        chain = first_chain(root)
        assert [kind(i) for i in chain] == ["user.message", "llm.request", "llm.response", "tool.call", "tool.result"]
        assert [kind(root.child(i)) for i in range(root.childCount())] == ["llm.request", "llm.request", "turn.end"]
        request, response, call, result = chain[1:]
        assert re.fullmatch(r"~?\d+→\d+", response.text(Col.TOKENS)), response.text(Col.TOKENS)
        assert request.text(Col.TOKENS) == ""
        assert response.text(Col.DURATION) and result.text(Col.DURATION)
        assert '"path": "."' in call.text(Col.EVENT)
        assert result.text(Col.STATUS) == "✓" and result.toolTip(Col.STATUS) == "ok"


async def test_rows_arrive_live_during_the_turn(workspace: Path) -> None:
    answer = "The folder is empty, so there is nothing to list yet."
    async with scripted_bridge([[tool_call("list_dir", {"path": "."})], answer], delay=0.02) as (bridge, _):
        session = await bridge.new_session()
        pane = TimelinePane(bridge)
        pane.set_session(session.id)
        await pane.start()
        loads: list[str | None] = []
        original = bridge.traces

        async def counting(session_id: str | None, limit: int = 50) -> list:  # type: ignore[type-arg]
            loads.append(session_id)
            return await original(session_id, limit)

        bridge.traces = counting  # type: ignore[method-assign]
        seen_while_streaming: list[list[str]] = []
        bridge.assistantDelta.connect(lambda _sid, _text: seen_while_streaming.append(kinds(pane.tree)))
        bridge.send(session.id, "list it")
        await wait_until(lambda: pane.tree.topLevelItemCount() == 1)
        first_root = pane.tree.topLevelItem(0)
        assert bridge.is_busy(session.id), "the trace should appear while the turn is still running"
        await wait_until(lambda: not bridge.is_busy(session.id))
        during = seen_while_streaming[0]  # the first words of the final answer
        assert during == ["user.message", "llm.request", "llm.response", "tool.call", "tool.result", "llm.request"]
        assert kinds(pane.tree)[-1] == "turn.end"
        assert pane.tree.topLevelItem(0) is first_root, "the tree was rebuilt instead of growing"
        assert loads == [], "live events must not reload the timeline"


def kinds(tree: TraceTree) -> list[str]:
    return [kind(item) for item in rows(tree)]


async def test_filter_tool_calls_hides_llm_rows_but_keeps_causes(workspace: Path) -> None:
    async with scripted_bridge(TOOL_TURN) as (bridge, _):
        pane, _session = await pane_after_tool_turn(bridge)
        tree = pane.tree
        pane.filter_combo.setCurrentText("Tool calls")
        shown = [item for item in rows(tree) if not item.isHidden()]
        assert [kind(i) for i in shown] == ["user.message", "llm.request", "llm.response", "tool.call", "tool.result"]
        final_request, final_response = of_kind(tree, "llm.request")[1], of_kind(tree, "llm.response")[1]
        assert final_request.isHidden() and final_response.isHidden() and of_kind(tree, "turn.end")[0].isHidden()
        first_response = of_kind(tree, "llm.response")[0]
        assert first_response.data(Col.EVENT, CONTEXT_ROLE), "a cause of a tool call stays, greyed as context"
        assert not of_kind(tree, "tool.call")[0].data(Col.EVENT, CONTEXT_ROLE)
        pane.filter_combo.setCurrentText("Errors")
        assert all(item.isHidden() for item in rows(tree))
        pane.filter_combo.setCurrentText("All")
        assert not any(item.isHidden() or item.data(Col.EVENT, CONTEXT_ROLE) for item in rows(tree))


async def test_clicking_an_event_shows_its_full_record(workspace: Path) -> None:
    async with scripted_bridge(TOOL_TURN) as (bridge, _):
        pane, session_id = await pane_after_tool_turn(bridge)
        pane.show()
        call = of_kind(pane.tree, "tool.call")[0]
        rect = pane.tree.visualItemRect(call)
        QTest.mouseClick(pane.tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        event = TraceTree.event_at(call)
        assert event is not None and pane.tree.currentItem() is call
        text = pane.detail.toPlainText()
        assert '"arguments": {\n    "path": "."\n  }' in text
        for value in (event.id, event.trace_id, event.span_id, event.parent_span_id, event.correlation_id, session_id):
            assert value in text
        assert pane.walk_button.isEnabled()
        pane.hide()  # not close(): closing the last window would quit the app and stop the qasync loop


async def test_walk_back_from_a_tool_result_selects_the_message(workspace: Path) -> None:
    async with scripted_bridge(TOOL_TURN) as (bridge, _):
        pane, _session = await pane_after_tool_turn(bridge)
        result = of_kind(pane.tree, "tool.result")[0]
        pane.tree.setCurrentItem(result)
        pane.walk_button.click()
        root = pane.tree.topLevelItem(0)
        await wait_until(lambda: pane.tree.currentItem() is root, message="the origin was not selected")
        await pane.settle()
        chain = first_chain(root)
        assert pane.tree.highlighted() == [TraceTree.event_at(i).id for i in reversed(chain)]  # type: ignore[union-attr]
        text = pane.detail.toPlainText()
        assert text.startswith("Walk back to origin: 4 step(s)")
        assert text.index("tool.result") < text.index("tool.call") < text.index("origin  ")
        assert '"text": "what is in my folder?"' in text


async def test_the_pane_follows_the_chat_thread(workspace: Path) -> None:
    async with scripted_bridge(["first answer", "second answer", "third answer"]) as (bridge, _):
        one, two = await bridge.new_session("one"), await bridge.new_session("two")
        pane = TimelinePane(bridge)
        await pane.start()
        await run_turn(bridge, one.id, "question in one")
        await run_turn(bridge, two.id, "question in two")
        assert pane.tree.topLevelItemCount() == 2  # no thread yet: everything

        def labels() -> list[str]:
            return [pane.tree.topLevelItem(i).text(Col.EVENT) for i in range(pane.tree.topLevelItemCount())]

        pane.set_session(one.id)
        await wait_until(lambda: labels() == ["“question in one”"])
        await run_turn(bridge, two.id, "another in two")
        assert labels() == ["“question in one”"], "a live turn of another thread leaked in"
        pane.scope_combo.setCurrentText(ALL_THREADS)
        await wait_until(lambda: len(labels()) == 3)
        pane.scope_combo.setCurrentText(THIS_THREAD)
        pane.set_session(two.id)
        await wait_until(lambda: labels() == ["“question in two”", "“another in two”"])
        pane.set_session(None)
        await wait_until(lambda: len(labels()) == 3)
        await pane.settle()


async def test_select_event_loads_its_turn(workspace: Path) -> None:
    async with scripted_bridge(["an answer"]) as (bridge, _):
        session = await bridge.new_session()
        await run_turn(bridge, session.id, "remember this")
        [[root]] = await bridge.traces(session.id)
        target = root.children[-1].event  # turn.end
        pane = TimelinePane(bridge)
        await pane.start()
        pane.tree.clear_events()  # as if the turn had scrolled out of the view
        pane.select_event(target.id)
        await wait_until(lambda: pane.tree.current_event() == target)
        assert target.id in pane.detail.toPlainText()


async def test_a_filter_applies_to_live_rows_too(workspace: Path) -> None:
    async with scripted_bridge(TOOL_TURN) as (bridge, _):
        session = await bridge.new_session()
        pane = TimelinePane(bridge)
        pane.set_session(session.id)
        await pane.start()
        pane.filter_combo.setCurrentText("Tool calls")
        await run_turn(bridge, session.id, "what is here?")
        shown = [kind(item) for item in rows(pane.tree) if not item.isHidden()]
        assert shown == ["user.message", "llm.request", "llm.response", "tool.call", "tool.result"]
        assert of_kind(pane.tree, "llm.response")[0].data(Col.EVENT, CONTEXT_ROLE)


async def test_errors_are_red_and_filterable(workspace: Path) -> None:
    async with scripted_bridge([RuntimeError("the model fell over")]) as (bridge, _):
        session = await bridge.new_session()
        pane = TimelinePane(bridge)
        await pane.start()
        await run_turn(bridge, session.id, "hello?")
        [error] = of_kind(pane.tree, "error")
        assert error.foreground(Col.EVENT).color() == QColor(ERROR_COLOR)
        assert of_kind(pane.tree, "llm.request")[0].foreground(Col.EVENT).color() != QColor(ERROR_COLOR)
        pane.filter_combo.setCurrentText("Errors")
        shown = [kind(item) for item in rows(pane.tree) if not item.isHidden()]
        assert shown[-1] == "error" and "turn.end" not in shown
        assert not error.data(Col.EVENT, CONTEXT_ROLE)
