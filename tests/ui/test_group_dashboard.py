"""The group dashboard in the real main window, on the real broker: a peer taking this agent's long task turns
busy with the task and its step, the elapsed time ticks, this agent's task list follows the steps to the
result, and the peer is idle again afterwards."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.echo_skill import SteppingSkill
from tests.group.helpers import group_overrides
from tests.ui.conftest import scripted_bridge, wait_until
from ui.main_window import MainWindow
from ui.panes.group_dashboard import M, T, elapsed_text, step_text


def test_the_small_formats() -> None:
    assert (elapsed_text(None), elapsed_text(5.9), elapsed_text(125), elapsed_text(3725)) == (
        "—",
        "0:05",
        "2:05",
        "1:02:05",
    )
    assert step_text(None, None) == "—" and step_text(2, 3) == "2/3" and step_text(2, 3, "reading") == "2/3 · reading"


async def test_the_dashboard_follows_a_peer_working_on_this_agents_task(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    group = f"d{uuid.uuid4().hex[:8]}"
    alice = group_overrides(kafka_broker, group, "alice", tmp_path / "a")
    bob_over = group_overrides(
        kafka_broker, group, "bob", tmp_path / "b", skills=[{"name": "reader", "handler": "echo"}]
    )
    async with (
        scripted_bridge(["hi"], overrides=alice) as (bridge, _),
        scripted_core(["-"], overrides=bob_over) as (bob, _),
    ):
        window = MainWindow(bridge)
        window.show()
        await window.start()
        pane = window.dashboard
        assert window.tabifiedDockWidgets(window.group_dock).count(window.dashboard_dock) == 1
        runner = SteppingSkill()
        bob.group.worker.runners["echo"] = runner

        def member(name: str) -> int:
            return next(n for n, row in enumerate(pane.member_rows) if row.name == name)

        def cell(table: object, row: int, col: int) -> str:
            return table.item(row, col).text()  # type: ignore[attr-defined]

        await wait_until(lambda: sorted(r.name for r in pane.member_rows) == ["alice", "bob"], timeout=20)
        assert pane.summary.text() == "2 members · 0 busy · 2 idle"
        assert cell(pane.members, member("bob"), M.STATE) == "idle" and cell(pane.members, member("bob"), M.TASK) == "—"

        async def send() -> list[object]:
            return [update async for update in bridge.group.dispatch("the tide tables", skill="reader", deadline=60)]

        following = asyncio.create_task(send())
        await wait_until(lambda: runner.at == 1, timeout=15)
        await wait_until(lambda: cell(pane.members, member("bob"), M.STEP) == "1/3 · reading part 1", timeout=10)
        bob_row = member("bob")
        assert pane.members.rowCount() == 2 and bob_row == 0, "busy members come first"
        assert cell(pane.members, bob_row, M.STATE) == "busy" and pane.summary.text() == "2 members · 1 busy · 1 idle"
        assert cell(pane.members, bob_row, M.TASK).startswith("reader ") and "for alice" in cell(
            pane.members, bob_row, M.TASK
        )
        first = cell(pane.members, bob_row, M.ELAPSED)
        await wait_until(lambda: cell(pane.members, member("bob"), M.ELAPSED) != first, timeout=3, message="no tick")

        await wait_until(lambda: pane.tasks.rowCount() == 1, timeout=10)
        await wait_until(  # the request is listed first (waiting), the accepted step follows one reload later
            lambda: (cell(pane.tasks, 0, T.STATUS), cell(pane.tasks, 0, T.ASSIGNEE)) == ("running", "bob"), timeout=10
        )
        assert cell(pane.tasks, 0, T.REQUESTER) == "this agent" and cell(pane.tasks, 0, T.SKILL) == "reader"
        runner.proceed.set()
        await wait_until(lambda: cell(pane.members, member("bob"), M.STEP) == "2/3 · reading part 2", timeout=10)
        await wait_until(lambda: cell(pane.tasks, 0, T.STEP) == "2/3 · reading part 2", timeout=10)
        runner.proceed.set()
        await wait_until(lambda: runner.at == 3, timeout=10)
        runner.proceed.set()
        updates = await asyncio.wait_for(following, 20)
        assert getattr(updates[-1], "status", "") == "ok"
        await wait_until(lambda: cell(pane.tasks, 0, T.STATUS) == "ok", timeout=10)
        await wait_until(lambda: cell(pane.members, member("bob"), M.STATE) == "idle", timeout=10)
        assert cell(pane.members, member("bob"), M.TASK) == "—" and pane.summary.text() == "2 members · 0 busy · 2 idle"
        done = cell(pane.tasks, 0, T.ELAPSED)
        pane.tick()
        assert cell(pane.tasks, 0, T.ELAPSED) == done, "a finished task's time stands still"
