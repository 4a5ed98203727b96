"""The tools pane against the real core: the registry table, switching tools off, and answering approvals."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from core import events as ev
from core.providers.scripted import tool_call
from tests.ui.conftest import scripted_bridge, wait_until
from ui.bridge import Bridge
from ui.panes.tools import ToolsPane
from ui.widgets.approval_card import ApprovalCard
from ui.widgets.tool_table import ToolCol


def shell(command: str, call_id: str = "call_0") -> list[object]:
    return [tool_call("shell", {"command": command}, call_id=call_id)]


async def started_pane(bridge: Bridge) -> tuple[ToolsPane, list[int]]:
    pane = ToolsPane(bridge)
    pane.resize(700, 600)
    counts: list[int] = []
    pane.pendingCountChanged.connect(counts.append)
    await pane.start()
    return pane, counts


def collect(bridge: Bridge) -> list[object]:
    seen: list[object] = []
    bridge.agentEvent.connect(lambda _sid, event: seen.append(event))
    return seen


def finished(events: list[object]) -> list[ev.ToolCallFinished]:
    return [e for e in events if isinstance(e, ev.ToolCallFinished)]


async def first_card(pane: ToolsPane) -> ApprovalCard:
    await wait_until(lambda: bool(pane.queue.cards()), message="no approval card appeared")
    return pane.queue.cards()[0]


def workspace_of(bridge: Bridge) -> Path:
    return bridge.core.settings.tools.workspace_path()


async def test_the_table_lists_the_builtin_tools_with_their_risk() -> None:
    async with scripted_bridge([]) as (bridge, _):
        pane, _counts = await started_pane(bridge)
        table = pane.table
        names = table.names()
        assert {"list_dir", "read_file", "write_file", "shell", "web_fetch"} <= set(names)
        risk = {name: table.item(table.row_of(name), ToolCol.RISK).text() for name in names}
        assert risk["list_dir"] == "read" and risk["write_file"] == "write" and risk["shell"] == "high"
        row = table.row_of("shell")
        assert table.item(row, ToolCol.SOURCE).text() == "builtin"
        assert table.item(row, ToolCol.ENABLED).checkState() == Qt.CheckState.Checked
        assert '"command"' in table.item(row, ToolCol.DESCRIPTION).toolTip()  # the JSON schema
        assert pane.queue.empty_label.isVisibleTo(pane) and not pane.queue.cards()


async def test_unticking_a_tool_disables_it(workspace: Path) -> None:
    async with scripted_bridge([[tool_call("list_dir", {"path": "."})], "ok"]) as (bridge, provider):
        pane, _counts = await started_pane(bridge)
        switch = pane.table.item(pane.table.row_of("list_dir"), ToolCol.ENABLED)
        switch.setCheckState(Qt.CheckState.Unchecked)  # what a click on the check box does
        assert {r.spec.name: r.enabled for r in bridge.tools()}["list_dir"] is False
        assert pane.table.item(pane.table.row_of("list_dir"), ToolCol.ENABLED).checkState() == Qt.CheckState.Unchecked
        events = collect(bridge)
        session = await bridge.new_session()
        bridge.send(session.id, "list")
        await wait_until(lambda: not bridge.is_busy(session.id))
        [result] = finished(events)
        assert not result.ok and "disabled" in (result.error or "")
        assert "list_dir" not in provider.tools_seen[0]  # not offered to the model either
        switch.setCheckState(Qt.CheckState.Checked)
        assert {r.spec.name: r.enabled for r in bridge.tools()}["list_dir"] is True


async def test_approve_once_runs_the_exact_command(workspace: Path) -> None:
    async with scripted_bridge([shell("touch approved.txt"), "ok"]) as (bridge, _):
        pane, counts = await started_pane(bridge)
        events = collect(bridge)
        session = await bridge.new_session("Approvals")
        bridge.send(session.id, "make a file")
        card = await first_card(pane)
        assert card.summary.toPlainText() == "touch approved.txt"
        assert card.summary.isReadOnly()
        assert counts == [1]
        await wait_until(lambda: "Approvals" in card.session_label.text(), message="session title not shown")
        card.approve_button.click()
        await wait_until(lambda: not bridge.is_busy(session.id))
        assert (workspace_of(bridge) / "approved.txt").exists()
        [result] = finished(events)
        assert result.ok
        assert counts == [1, 0]
        assert not pane.queue.cards() and pane.queue.empty_label.isVisibleTo(pane)
        await pane.settle()


async def test_deny_does_not_run_it(workspace: Path) -> None:
    async with scripted_bridge([shell("touch denied.txt"), "ok"]) as (bridge, _):
        pane, counts = await started_pane(bridge)
        events = collect(bridge)
        session = await bridge.new_session()
        bridge.send(session.id, "make a file")
        card = await first_card(pane)
        card.deny_button.click()
        assert not card.approve_button.isEnabled(), "an answered card must not answer twice"
        await wait_until(lambda: not bridge.is_busy(session.id))
        assert not (workspace_of(bridge) / "denied.txt").exists()
        [result] = finished(events)
        assert not result.ok and "not approve" in (result.error or "")
        decisions = [e.decision for e in events if isinstance(e, ev.ApprovalResolved)]
        assert decisions == ["deny"] and counts == [1, 0]
        await pane.settle()


async def test_always_for_this_session_skips_the_next_question(workspace: Path) -> None:
    script = [shell("touch first.txt", "call_a"), shell("touch second.txt", "call_b"), "ok"]
    async with scripted_bridge(script) as (bridge, _):
        pane, counts = await started_pane(bridge)
        events = collect(bridge)
        session = await bridge.new_session()
        bridge.send(session.id, "make two files")
        card = await first_card(pane)
        card.session_button.click()
        await wait_until(lambda: not bridge.is_busy(session.id))
        ws = workspace_of(bridge)
        assert (ws / "first.txt").exists() and (ws / "second.txt").exists()
        decisions = [e.decision for e in events if isinstance(e, ev.ApprovalResolved)]
        assert decisions == ["approve_session", "session"]
        assert counts == [1, 0], "the second call must not show a new card"
        await pane.settle()
