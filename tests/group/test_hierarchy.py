"""The parent/child hierarchy on the real broker: a parent P with children C1 (skill x) and C2 (skill y) and a
grandchild G beyond the depth limit; dispatching to children (in process and `shoal dispatch --children`),
the too-deep grandchild refused with its reason, children reporting up, and an orchestrator as the default
parent of a member that names none."""

from __future__ import annotations

import json
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from core import events as ev
from core.errors import UserError
from core.group import hierarchy
from core.group.envelope import TASK_REPORT
from core.group.reports import stored_reports
from core.providers.scripted import tool_call
from tests.fixtures.cores import run_turn, scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import eventually, group_overrides, member_env, run_cli


def echo(name: str) -> list[dict[str, str]]:
    return [{"name": name, "description": f"skill {name}", "handler": "echo"}]


async def start(
    stack: AsyncExitStack, broker: TansuBroker, group: str, name: str, path: Path, steps: Any = None, **extra: Any
) -> Any:
    over = group_overrides(broker, group, name, path / name, **extra)
    core, _ = await stack.enter_async_context(scripted_core(steps or ["unused"], overrides=over))
    return core


def reports_for(core: Any, taskid: str) -> list[Any]:
    return [r for r in core.group.reports.received if r.taskid == taskid]


async def test_dispatch_to_children_the_depth_limit_and_reporting_up(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = f"h{uuid.uuid4().hex[:8]}"
    limit = {"max_hierarchy_depth": 1}
    async with AsyncExitStack() as stack:
        p = await start(stack, kafka_broker, group, "p", tmp_path, **limit)
        c1 = await start(stack, kafka_broker, group, "c1", tmp_path, skills=echo("x"), parent="p", **limit)
        c2 = await start(stack, kafka_broker, group, "c2", tmp_path, skills=echo("y"), parent="p", **limit)
        g = await start(stack, kafka_broker, group, "g", tmp_path, skills=echo("z"), parent="c1", **limit)
        everyone = (p, c1, c2, g)
        # every agent derives the same tree; the cards carry the parents' ids once they are known
        p_id, c1_id = p.group.node.agent_id, c1.group.node.agent_id
        await eventually(lambda: all(len(a.group.members()) == 4 for a in everyone), timeout=30)
        await eventually(lambda: all(m.parent in ("", p_id, c1_id) for m in p.group.members()), timeout=10)
        assert [m.name for m in hierarchy.children(p_id, p.group.members())] == ["c1", "c2"]
        assert [(m.name, d) for m, d in hierarchy.tree(c2.group.members())] == [
            ("p", 0), ("c1", 1), ("g", 2), ("c2", 1)
        ]  # fmt: skip

        # P → its children: skill x reaches C1, skill y reaches C2, addressed to each (not the skill queues)
        handle = await p.group.dispatch("for x", skill="x", to_children=True, deadline=20)
        result = await handle.result()
        assert result.ok and result.output == "for x" and result.agent["agentid"] == c1_id
        assert handle.recipient == c1_id
        handle_y = await p.group.dispatch("for y", skill="y", to_children=True, deadline=20)
        assert (await handle_y.result()).agent["agentid"] == c2.group.node.agent_id

        # C1 reports up to P: status, requester, and the summary (echo answers are `internal` by default)
        await eventually(lambda: bool(reports_for(p, handle.taskid)), timeout=15)
        report = reports_for(p, handle.taskid)[0]
        assert (report.status, report.skill, report.child["agentid"]) == ("ok", "x", c1_id)
        assert report.requester["agentid"] == p_id and report.fromchild
        assert report.summary == "for x" and report.label == "internal"
        stored = await stored_reports(p.group.node)
        assert any(e.payload["data"]["taskid"] == handle.taskid for e in stored), "recorded in P's timeline"
        assert all(e.name == TASK_REPORT for e in stored)

        # G sits at depth 2 with a limit of 1: C1 will not delegate to it, and G does not report up
        with pytest.raises(UserError) as refused:
            await c1.group.dispatch("for z", skill="z", to_children=True, deadline=20)
        assert "g is at depth 2, deeper than the limit 1 (group.max_hierarchy_depth)" in refused.value.message
        parent, why = g.group.reports.parent()
        assert parent is None and "not a valid child: g is at depth 2" in why
        with pytest.raises(UserError, match="offers the skill 'q'"):
            await p.group.dispatch("nobody", skill="q", to_children=True)

        # the task's own delegation limit still applies to a child, and a refusal is reported up too
        deep = await p.group.dispatch("too deep", skill="x", to_children=True, depth=9, deadline=20)
        assert (await deep.result()).status == "refused"
        await eventually(lambda: bool(reports_for(p, deep.taskid)), timeout=15)
        assert reports_for(p, deep.taskid)[0].status == "refused" and not reports_for(p, deep.taskid)[0].summary

        # from the terminal: `shoal dispatch --children` speaks for the agent of its name (a stand-in of P)
        env = member_env(kafka_broker, group, "p", tmp_path / "p-cli", max_hierarchy_depth=1)
        done = await run_cli(env, "dispatch", "cli for y", "--skill", "y", "--children", "--deadline", "20")
        assert done.code == 0, done.stderr
        assert done.stdout.strip() == "cli for y" and "child c2 (skill y)" in done.stderr
        await eventually(lambda: any(r.summary == "cli for y" for r in p.group.reports.received), timeout=15)
        wrong = await run_cli(env, "dispatch", "x", "--children", "--to", "c1")
        assert wrong.code == 2 and "drop --to" in wrong.stderr

        # `shoal group members`: tree order, each member's place, and why g is not a valid child
        listed = await run_cli(env, "group", "members", "--json")
        cards = {card["name"]: card for card in json.loads(listed.stdout)}
        assert [card["name"] for card in json.loads(listed.stdout)] == ["p", "c1", "g", "c2"]
        assert (cards["c1"]["parent"], cards["c1"]["parentname"], cards["c1"]["depth"]) == (p_id, "p", 1)
        assert cards["p"]["children"] == ["c1", "c2"] and cards["c1"]["children"] == ["g"]
        assert cards["g"]["hierarchyproblem"] == "g is at depth 2, deeper than the limit 1 (group.max_hierarchy_depth)"
        table = await run_cli(env, "group", "members")
        assert table.code == 0 and "└ c1" in table.stdout and "└ g" in table.stdout


async def test_an_orchestrator_is_the_default_parent_and_shown_as_such(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    group = f"o{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:
        delegating = [[tool_call("delegate", {"skill": "x", "task": "via tool", "target": "children"})], "done"]
        o = await start(stack, kafka_broker, group, "o", tmp_path, delegating, role="orchestrator")
        m = await start(stack, kafka_broker, group, "m", tmp_path, skills=echo("x"))
        await eventually(lambda: len(o.group.members()) == 2 and len(m.group.members()) == 2, timeout=30)
        o_id = o.group.node.agent_id
        await eventually(lambda: [x.agentid for x in hierarchy.orchestrators(m.group.node.roster)] == [o_id])
        own = m.group.node.roster.get(m.group.node.agent_id)
        assert own is not None and own.parent == "", "the default parent is derived, never announced"
        assert hierarchy.position(own.agentid, m.group.members()).by_default
        seen = m.group.node.roster.get(o_id)
        assert seen is not None and seen.card()["role"] == "orchestrator" and own.card()["role"] == "member"

        handle = await o.group.dispatch("orchestrated", skill="x", to_children=True, deadline=20)
        assert (await handle.result()).agent["agentid"] == m.group.node.agent_id
        await eventually(lambda: bool(reports_for(o, handle.taskid)), timeout=15)
        assert reports_for(o, handle.taskid)[0].fromchild

        # the agent's own delegate tool, target "children"
        session = await o.new_session()
        events = await run_turn(o, session.id, "get it done by a child")
        [call] = [e for e in events if isinstance(e, ev.ToolCallFinished)]
        assert call.ok and "[answer from m]" in call.output and "via tool" in call.output, call
        sent = [e for e in await o.timeline.events(trace_id=events[0].trace_id) if e.kind == "group.sent"]
        requests = [e.payload["envelope"] for e in sent if e.name == "shoal.task.request"]
        assert [r.get("recipient") for r in requests] == [m.group.node.agent_id], "addressed to the child"
        assert requests[0]["topic"].endswith(".requests") and ".skill." not in requests[0]["topic"]

        # a second orchestrator: no default parent any more (peer to peer), so nothing is anyone's child
        await start(stack, kafka_broker, group, "o2", tmp_path, role="orchestrator")
        await eventually(lambda: len(hierarchy.orchestrators(o.group.node.roster)) == 2, timeout=30)
        await eventually(lambda: m.group.reports.parent() == (None, ""), timeout=30)  # m reads o2's card itself
        with pytest.raises(UserError, match="has no children"):
            await o.group.dispatch("again", skill="x", to_children=True)
