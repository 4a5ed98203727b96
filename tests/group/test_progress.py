"""`step n of m` on the real broker: a long task's steps reach the requester and show on the taker's roster card;
an agent turn run for the group reports its model calls as steps; `shoal get tasks` and `shoal describe task`
show the same from the terminal (joined, and `--local` from the database alone)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from core.group.dispatch import TaskProgress, TaskResult
from core.providers.scripted import tool_call
from core.service import AgentCore
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.echo_skill import STEPS, SteppingSkill
from tests.group.helpers import eventually, group_overrides, member_env, run_cli


def card_task(core: AgentCore, taker: str) -> dict[str, Any] | None:
    member = next((m for m in core.group.members() if m.name == taker), None)
    return member.tasks[0] if member is not None and member.tasks else None


async def test_a_long_task_reports_its_steps_to_the_requester_the_roster_and_the_cli(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    group = f"p{uuid.uuid4().hex[:8]}"
    skill = [{"name": "reader", "handler": "echo"}]
    bob_over = group_overrides(kafka_broker, group, "bob", tmp_path / "bob", skills=skill)
    ada_over = group_overrides(kafka_broker, group, "ada", tmp_path / "ada")
    async with (
        scripted_core(["-"], overrides=bob_over) as (bob, _),
        scripted_core(["-"], overrides=ada_over) as (ada, _),
    ):
        runner = SteppingSkill()
        bob.group.worker.runners["echo"] = runner  # the skill's handler, replaced by the long task
        await eventually(lambda: len(ada.group.members()) == 2 and len(bob.group.members()) == 2, timeout=20)
        handle = await ada.group.dispatch("the tide tables", skill="reader", deadline=60)
        seen: list[TaskProgress | TaskResult] = []

        async def follow() -> None:
            async for update in handle:
                seen.append(update)

        following = asyncio.create_task(follow())

        def stepped(n: int) -> bool:
            steps = [(u.step, u.steps, u.message) for u in seen if isinstance(u, TaskProgress) and u.step is not None]
            return (n, STEPS, f"reading part {n}") in steps

        for n in range(1, STEPS + 1):
            await eventually(lambda n=n: stepped(n), timeout=10)
            await eventually(lambda n=n: (card_task(ada, "bob") or {}).get("step") == n, timeout=10)
            task = card_task(ada, "bob")
            assert task is not None and task["taskid"] == handle.taskid and task["steps"] == STEPS
            assert task["skill"] == "reader" and task["requester"]["name"] == "ada"
            assert task["message"] == f"reading part {n}"
            busy = next(m for m in ada.group.members() if m.name == "bob")
            assert busy.status == "busy" and busy.active_tasks == 1
            if n == 2:
                await the_cli_shows_the_running_task(kafka_broker, group, tmp_path / "ada", handle.taskid)
            runner.proceed.set()
        await following
        result = seen[-1]
        assert isinstance(result, TaskResult) and result.ok and result.output == "read 3 parts of the tide tables"
        await eventually(lambda: card_task(ada, "bob") is None, timeout=10)
        idle = next(m for m in ada.group.members() if m.name == "bob")
        assert idle.status == "idle" and idle.tasks == []
        await the_cli_describes_the_finished_task(kafka_broker, group, tmp_path / "ada", handle.taskid)


async def the_cli_shows_the_running_task(broker: TansuBroker, group: str, data_dir: Path, taskid: str) -> None:
    env = member_env(broker, group, "cli", data_dir)  # ada's own database, joined as a short-lived member
    listed = await run_cli(env, "get", "tasks", "--json")
    assert listed.code == 0, listed.stderr
    [task] = [t for t in json.loads(listed.stdout) if t["taskid"] == taskid]
    assert (task["status"], task["direction"], task["assignee"], task["requester"]) == (
        "running",
        "out",
        "bob",
        "this agent",
    )
    assert (task["step"], task["steps"], task["message"]) == (2, STEPS, "reading part 2")
    assert task["skill"] == "reader" and task["elapsed_s"] >= 0
    table = await run_cli(env, "get", "tasks")
    assert table.code == 0, table.stderr
    [line] = [line for line in table.stdout.splitlines() if taskid[:12] in line]
    assert line.split() == [taskid[:12], "reader", "running", "bob", "this", "agent", "2/3", *line.split()[7:]]
    local = await run_cli(env, "get", "tasks", "--local", "--json")
    [offline] = [t for t in json.loads(local.stdout) if t["taskid"] == taskid]
    assert (offline["step"], offline["steps"], offline["assignee"]) == (2, STEPS, "bob"), "from the timeline alone"


async def the_cli_describes_the_finished_task(broker: TansuBroker, group: str, data_dir: Path, taskid: str) -> None:
    env = member_env(broker, group, "cli", data_dir)
    described = await run_cli(env, "describe", "task", taskid[:10], "--local", "--json")
    assert described.code == 0, described.stderr
    detail = json.loads(described.stdout)
    assert (detail["taskid"], detail["status"], detail["assignee"]) == (taskid, "ok", "bob")
    assert detail["output"] == "read 3 parts of the tide tables" and detail["error"] == ""
    history = [(h["what"], h["detail"]) for h in detail["history"]]
    assert history[0] == ("request", "sent to skill reader") and history[-1][0] == "result"
    assert history[-1][1].startswith("ok in ")
    assert ("accepted", "took the task") in history
    assert [d for what, d in history if what == "step"] == [f"step {n} of 3: reading part {n}" for n in (1, 2, 3)]
    text = await run_cli(env, "describe", "task", taskid[:10], "--local")
    assert "status    ok" in text.stdout and "read 3 parts of the tide tables" in text.stdout
    assert "step 3 of 3: reading part 3" in text.stdout
    missing = await run_cli(env, "describe", "task", "ffffffff", "--local")
    assert missing.code == 2 and "No group task matches" in missing.stderr


async def test_an_agent_turn_reports_its_model_calls_as_steps(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = f"p{uuid.uuid4().hex[:8]}"
    skill = [{"name": "helper", "handler": "agent"}]
    bob_over = group_overrides(kafka_broker, group, "bob", tmp_path / "bob", skills=skill)
    bob_over["agent"] = {"max_iterations": 5}
    ada_over = group_overrides(kafka_broker, group, "ada", tmp_path / "ada")
    script = [[tool_call("list_dir", {"path": "."})], "The folder is empty, as far as I can see."]
    async with (
        scripted_core(script, overrides=bob_over, delay=0.05) as (bob, _),
        scripted_core(["-"], overrides=ada_over) as (ada, _),
    ):
        await eventually(lambda: len(ada.group.members()) == 2, timeout=20)
        handle = await ada.group.dispatch("what is in your folder?", skill="helper", deadline=60)
        updates = [u async for u in handle]
        assert isinstance(updates[-1], TaskResult) and updates[-1].ok
        steps = [(u.step, u.steps, u.message) for u in updates if isinstance(u, TaskProgress) and u.step]
        assert steps[0] == (1, 5, "thinking"), steps
        assert (2, 5, "thinking over the tools' results") in steps, steps
        assert all(of == 5 for _, of, _ in steps)
        sent = [e for e in await bob.timeline.events(kind="group.sent") if e.payload["data"].get("step")]
        assert sent and {e.payload["data"]["taskid"] for e in sent} == {handle.taskid}, "the taker keeps its steps"


def test_a_peers_odd_task_list_is_reduced_to_the_documented_fields() -> None:
    from core.group.roster import card_tasks

    odd = [
        "not a task",
        {"taskid": ""},
        {"taskid": 7},
        {"taskid": "t1", "step": True, "steps": -1, "elapsedms": 1500, "requester": "ada", "message": 5, "x": 1},
        *({"taskid": f"n{n}"} for n in range(30)),
    ]
    tasks = card_tasks(odd)
    assert len(tasks) == 17, "at most 20 entries are looked at; the malformed ones are dropped"
    first = tasks[0]
    assert first == {
        "taskid": "t1",
        "skill": "",
        "requester": {"agentid": "", "name": ""},
        "startedat": "",
        "message": "5",
        "elapsedms": 1500,
    }
    assert card_tasks(None) == [] and card_tasks({"taskid": "t"}) == []
    [huge] = card_tasks([{"taskid": "t2", "step": 10**6 + 1, "steps": 10**6, "elapsedms": 10**400}])
    assert (huge.get("step"), huge.get("steps"), huge.get("elapsedms")) == (None, 10**6, None), "out of range: gone"


def test_the_views_survive_numbers_no_float_holds() -> None:
    """A card's tasks as they arrive are capped (above); the views cope with a member built any other way too."""
    from core.group.identity import Identity, PublicKey
    from core.group.roster import Member
    from core.group.taskviews import member_rows, with_live

    identity = Identity.generate()
    odd = {"taskid": "t3", "step": 10**400, "steps": 2**60, "elapsedms": 10**400, "requester": {}}
    member = Member(identity.agent_id, "mallory", PublicKey(identity.public_b64), tasks=[odd])
    [row] = member_rows([member])
    [live] = row.tasks
    assert (live.step, live.steps, live.elapsed_at_seen) == (None, None, 0.0)
    [view] = with_live([], [member])
    assert view.taskid == "t3" and view.step_text == "—"


async def test_a_card_with_an_absurd_task_breaks_neither_the_dashboard_nor_get_tasks(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    from core.group.taskviews import member_rows, with_live
    from tests.group.helpers import RawPeer

    group = f"p{uuid.uuid4().hex[:8]}"
    over = group_overrides(kafka_broker, group, "ada", tmp_path / "ada")
    async with scripted_core([], overrides=over) as (core, _), RawPeer(kafka_broker, group, "mallory") as m:
        node = core.group.node
        await node.wait_online(15)
        absurd = {"taskid": "t" * 12, "skill": "x", "step": 2, "steps": 10**9, "elapsedms": 10**400}
        await m.announce(tasks=[absurd], status="busy")
        await eventually(lambda: any(x.name == "mallory" for x in node.members()))
        rows = {row.name: row for row in member_rows(node.members())}
        assert rows["mallory"].status == "busy" and rows["mallory"].tasks[0].step == 2
        assert rows["mallory"].tasks[0].steps is None and rows["mallory"].tasks[0].elapsed_at_seen == 0.0
        assert [v.taskid for v in with_live([], node.members())] == ["t" * 12]
        env = member_env(kafka_broker, group, "cli", tmp_path / "cli")
        listed = await run_cli(env, "get", "tasks", "--json")
        assert listed.code == 0, listed.stderr
        assert [t["taskid"] for t in json.loads(listed.stdout) if t["direction"] == "seen"] == ["t" * 12]
