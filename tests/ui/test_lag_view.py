"""The lag view of the group pane: lines for the partitions that are behind, the warning banner, and in the real
window over the real broker, a slow agent's warning shown in the pane and the status bar until it recovers."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from core.group.envelope import MEMORY_ITEM
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import RawPeer, eventually, group_overrides
from tests.group.test_lag import HANDLER_DELAY, flood
from tests.ui.conftest import wait_until
from tests.ui.test_roster_pane import window_over
from ui.widgets.lag_view import LagView


def row(partition: int, messages: int, seconds: float | None, warning: bool = False, topic: str = "memory") -> Any:
    return {
        "topic": f"group.g.{topic}",
        "partition": partition,
        "reader": "inbox",
        "group": "shoal.g.agent.a1",
        "messages": messages,
        "seconds": seconds,
        "warning": warning,
    }


def cells(view: LagView) -> list[list[str]]:
    table = view.table
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_lines_for_partitions_behind_and_a_banner_while_one_warns(qtbot: Any) -> None:
    view = LagView()
    qtbot.addWidget(view)
    view.show()
    assert view.summary.text() == "Consumer lag: no partition read yet." and view.table.isHidden()

    view.set_rows([row(0, 0, 0.0), row(1, 12, 0.4, topic="requests"), row(0, 1234, 45.0, True), row(2, 0, 0.0)])
    assert cells(view) == [
        ["⚠ memory[0]", "1,234", "45.0 s", "inbox · shoal.g.agent.a1"],
        ["requests[1]", "12", "0.4 s", "inbox · shoal.g.agent.a1"],
    ]
    assert view.table.isVisible() and view.warning
    assert view.summary.text() == "2 partition(s) behind · 2 caught up"
    assert view.banner.isVisible() and "Lagging" in view.banner.text()
    assert "memory[0] is 1,234 records, 45.0 s behind" in view.banner.text()
    assert view.table.item(0, 0).toolTip() == "group.g.memory partition 0"

    view.set_rows([row(0, 0, 0.0), row(1, 0, 0.0, topic="requests")])
    assert view.banner.isHidden() and view.table.isHidden() and not view.warning
    assert view.summary.text() == "Consumer lag: all 2 partitions caught up."


def test_polls_its_source_while_shown(qtbot: Any) -> None:
    rows = [row(0, 5, None)]
    view = LagView(lambda: rows)
    qtbot.addWidget(view)
    view.show()
    assert cells(view) == [["memory[0]", "5", "—", "inbox · shoal.g.agent.a1"]]
    rows[0] = row(0, 2000, 90.0, True)
    qtbot.waitUntil(lambda: view.warning, timeout=3000)
    assert cells(view)[0][2] == "90.0 s" and view.banner.isVisible()


async def test_a_slow_agent_shows_lagging_in_the_pane_and_the_status_bar(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    limits = {"lag_warn_messages": 200, "lag_warn_seconds": 3.0, "lag_warn_after": 1.0}
    overrides = group_overrides(kafka_broker, group, "alice", tmp_path / "a", **limits)
    async with window_over(overrides) as (window, bridge), RawPeer(kafka_broker, group) as peer:
        node = bridge.core.group.node
        await node.wait_online(30)
        pane = window.roster
        window.group_dock.show()
        window.group_dock.raise_()
        await wait_until(lambda: bool(pane.lag.rows), timeout=20, message="no lag rows")
        assert pane.lag.banner.isHidden() and "lagging" not in window._status_group.text()

        async def slow(_incoming: Any, _event: Any) -> None:
            await asyncio.sleep(HANDLER_DELAY)

        node.on(MEMORY_ITEM, slow)
        await peer.announce()
        await eventually(lambda: node.roster.key_for(peer.agent_id) is not None)
        stop = asyncio.Event()
        flooding = asyncio.create_task(flood(peer, stop))
        try:
            await wait_until(lambda: pane.lag.banner.isVisible(), timeout=60, message="no lag banner")
        finally:
            stop.set()
            await flooding
        assert "Lagging" in pane.lag.banner.text() and "memory[0]" in pane.lag.banner.text()
        assert any(r["warning"] and r["topic"] == node.topic("memory") for r in pane.lag.rows)
        await wait_until(lambda: "lagging" in window._status_group.text(), timeout=5, message="status bar")
        assert "memory[0]" in window._status_group.toolTip()

        await wait_until(lambda: not pane.lag.warning, timeout=90, message="the warning did not clear")
        await wait_until(lambda: pane.lag.banner.isHidden(), timeout=5, message="banner stays")
        await wait_until(lambda: "lagging" not in window._status_group.text(), timeout=5, message="status bar")
        assert "Group: Online" in window._status_group.text()
