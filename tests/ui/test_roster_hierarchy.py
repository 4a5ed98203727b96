"""The group pane shows the hierarchy (docs/hierarchy.md): the orchestrator's badge, children indented under
their parents in tree order, parent and children in the row's tooltip; a child's report reads as such in the
timeline. Real main window, real cores on the real broker."""

from __future__ import annotations

import uuid
from pathlib import Path

from core.group.reports import stored_reports
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import group_overrides
from tests.ui.conftest import wait_until
from tests.ui.test_roster_pane import window_over
from ui.widgets import event_format
from ui.widgets.group_format import ORCHESTRATOR_BADGE
from ui.widgets.roster_table import ORCHESTRATOR_COLOR, Col


async def test_the_roster_pane_shows_the_tree_and_the_orchestrator(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = f"t{uuid.uuid4().hex[:8]}"
    echo = [{"name": "echo", "description": "says it back", "handler": "echo"}]
    o_over = group_overrides(kafka_broker, group, "o", tmp_path / "o", role="orchestrator")
    c_over = group_overrides(kafka_broker, group, "c", tmp_path / "c", skills=echo)
    g_over = group_overrides(kafka_broker, group, "g", tmp_path / "g", parent="c")
    async with (
        window_over(o_over) as (window, bridge),
        scripted_core(["unused"], overrides=c_over) as (c, _),
        scripted_core(["unused"], overrides=g_over),
    ):
        pane = window.roster
        # tree order, not name order (c, g, o): the orchestrator, its default child c, and c's child g
        await wait_until(lambda: pane.table.names() == ["o", "c", "g"], timeout=30, message=str(pane.table.names()))
        table = pane.table
        assert table.item(0, Col.NAME).text() == f"o  {ORCHESTRATOR_BADGE}  (this agent)"
        assert table.item(0, Col.NAME).foreground().color().name() == ORCHESTRATOR_COLOR
        assert table.item(1, Col.NAME).text() == "└ c"
        assert table.item(2, Col.NAME).text() == "    └ g"
        assert "parent: o (by default) · children: g" in table.item(1, Col.NAME).toolTip()
        assert "parent: c" in table.item(2, Col.NAME).toolTip()
        assert "orchestrator: o" in pane.count_label.text()

        # a task to o's children reaches c, and c's report up reads as a child's report in the timeline
        core = bridge.core
        handle = await core.group.dispatch("hello child", skill="echo", to_children=True, deadline=20)
        result = await handle.result()
        assert result.ok and result.agent["agentid"] == c.group.node.agent_id
        await wait_until(lambda: any(r.taskid == handle.taskid for r in core.group.reports.received), timeout=15)
        [event] = [e for e in await stored_reports(core.group.node) if e.payload["data"]["taskid"] == handle.taskid]
        assert event_format.label(event) == "← task.report from child c (ok, skill echo)"
        assert "hello child" in event_format.tooltip(event)
