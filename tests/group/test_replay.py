"""`shoal replay` on the real broker: two members exchange tasks, then the sequence is read back (from an
offset, from a time, by correlation), verified, without the live group noticing; tampered, unknown and
broken records are listed with what is wrong with them; `--refeed` reproduces an answer in a scratch agent."""

from __future__ import annotations

import json
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.errors import UserError
from core.group.envelope import TASK_REQUEST, parse
from core.group.replay import replay
from core.group.replay_query import ReplayQuery
from core.group.topics import topic
from core.providers.scripted import tool_call
from core.settings import load_settings
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import RawPeer, eventually, group_overrides, member_env, read_all, run_cli

ANSWERS = ["answer one", "answer two", "answer three"]
QUESTIONS = ["first question", "second question", "third question"]


@asynccontextmanager
async def exchanged(broker: TansuBroker, tmp_path: Path) -> Any:
    """Alice asks Bob three questions on the addressed `requests` topic (Bob's scripted model answers each);
    yields (alice, bob, handles, cut) where `cut` is a moment between the first and the second request."""
    group = f"r{uuid.uuid4().hex[:8]}"
    a_over = group_overrides(broker, group, "alice", tmp_path / "a")
    b_over = group_overrides(broker, group, "bob", tmp_path / "b")
    async with (
        scripted_core(["unused"], overrides=a_over) as (alice, _),
        scripted_core(list(ANSWERS), overrides=b_over) as (bob, _),
    ):
        await eventually(lambda: len(alice.group.members()) == 2 and len(bob.group.members()) == 2, timeout=20)
        handles, cut = [], None
        for number, question in enumerate(QUESTIONS):
            if number == 1:
                cut = datetime.now(UTC)
            handle = await alice.group.dispatch(question, to="bob", deadline=20)
            result = await handle.result()
            assert result.status == "ok" and result.output == ANSWERS[number], result
            handles.append(handle)
        yield alice, bob, handles, cut


def cli_env(broker: TansuBroker, alice: Any, tmp_path: Path) -> dict[str, str]:
    """A `shoal` process configured for the group, with a data folder of its own (a person's other terminal)."""
    env = member_env(broker, alice.settings.group.name, "replayer", tmp_path / "cli")
    env["SHOAL_GROUP__ENABLED"] = "false"
    return env


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


async def consumer_groups(broker: TansuBroker, group: str) -> dict[str, dict[str, int]]:
    """Every consumer group of the test group with its committed offsets on the group's topics."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        listed = [g[0] for g in await admin.list_consumer_groups()]
        ours = sorted(g for g in listed if g.startswith(f"shoal.{group}."))
        topics = [t for t in await admin.list_topics() if t.startswith(f"group.{group}.")]
        described = await admin.describe_topics(topics)
        partitions = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
        out = {}
        for name in ours:
            offsets = await admin.list_consumer_group_offsets(name, partitions=partitions)
            out[name] = {f"{tp.topic}:{tp.partition}": meta.offset for tp, meta in offsets.items()}
        return out
    finally:
        await admin.close()


async def settled_groups(broker: TansuBroker, group: str, counts: dict[str, int]) -> dict[str, dict[str, int]]:
    """The consumer groups once the members have committed everything they read of the task topics (they commit
    after recording, a moment after a task's result is handed over)."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + 15
    while True:
        groups = await consumer_groups(broker, group)
        agents = [offsets for name, offsets in groups.items() if ".agent." in name]
        if len(agents) == 2 and all(o.get(f"{t}:0") == n for o in agents for t, n in counts.items()):
            return groups
        assert asyncio.get_running_loop().time() < deadline, f"members never committed up to {counts}: {groups}"
        await asyncio.sleep(0.1)


async def wire_state(broker: TansuBroker, group: str) -> dict[str, Any]:
    """What the group's topics hold now: record counts of the task topics, and every sender on any topic."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(f"group.{group}."))
    finally:
        await admin.close()
    counts, senders = {}, set()
    for name in names:
        records = await read_all(broker.bootstrap, name)
        if name.removeprefix(f"group.{group}.") in ("requests", "responses", "progress"):
            counts[name] = len(records)
        senders |= {parse(r.value).agentid for r in records}
    return {"topics": names, "counts": counts, "senders": senders}


async def test_replay_lists_the_sequence_sent_without_touching_the_live_group(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    async with exchanged(kafka_broker, tmp_path) as (alice, bob, handles, cut):
        group = alice.settings.group.name
        env = cli_env(kafka_broker, alice, tmp_path)
        taskids = [h.taskid for h in handles]
        members = {alice.group.node.agent_id, bob.group.node.agent_id}
        before_wire = await wire_state(kafka_broker, group)
        before_groups = await settled_groups(kafka_broker, group, before_wire["counts"])
        assert before_groups and before_wire["senders"] == members

        everything = await run_cli(env, "replay", "--topic", "requests", "--json")
        assert everything.code == 0, everything.stderr
        lines = json_lines(everything.stdout)
        assert [line["envelope"]["data"]["taskid"] for line in lines] == taskids  # in the order sent
        assert [line["envelope"]["id"] for line in lines] == [h.request_id for h in handles]
        assert {line["status"] for line in lines} == {"verified"}
        assert {line["sendername"] for line in lines} == {"alice"}
        assert [line["offset"] for line in lines] == [0, 1, 2]
        assert "3 envelopes" in everything.stderr and "3/3 verified" in everything.stderr

        from_offset = await run_cli(env, "replay", "-t", f"group.{group}.requests", "--from", "1")
        printed = [line for line in from_offset.stdout.splitlines() if "task.request" in line]
        assert len(printed) == 2 and all("from alice" in line and "verified" in line for line in printed)
        assert [taskid[:12] in line for taskid, line in zip(taskids[1:], printed, strict=True)] == [True, True]
        assert printed[0].startswith("0:1 ") and 'input="second question"' in printed[0]

        one = await run_cli(env, "replay", "-t", "responses", "--correlation", handles[1].correlationid[:14])
        assert one.code == 0, one.stderr
        assert one.stdout.count("task.result") == 1 and "answer two" in one.stdout and "verified" in one.stdout
        assert "from bob" in one.stdout and handles[1].request_id[:12] in one.stdout  # caused by that request

        # The same reader in-process (what the desktop dialog calls): a time, an age with a limit, a bound.
        settings = alice.settings.group
        assert cut is not None
        from_time = await replay(settings, ReplayQuery.from_text("requests", cut.isoformat()))
        assert [e.data["taskid"] for e in from_time.entries] == taskids[1:] and from_time.scanned == 3
        recent = await replay(settings, ReplayQuery.from_text("requests", "10m", limit=2))
        assert [e.data["taskid"] for e in recent.entries] == taskids[:2]
        until = await replay(settings, ReplayQuery.from_text("requests", "beginning", cut.isoformat()))
        assert [e.data["taskid"] for e in until.entries] == taskids[:1]
        with pytest.raises(UserError, match="does not exist"):
            await replay(settings, ReplayQuery.from_text("nosuchtopic"))

        # Nothing was sent, no topic appeared, no consumer group joined or moved.
        after_wire = await wire_state(kafka_broker, group)
        assert after_wire["topics"] == before_wire["topics"]
        assert after_wire["counts"] == before_wire["counts"]
        assert after_wire["senders"] == members
        assert await consumer_groups(kafka_broker, group) == before_groups


async def test_tampered_unknown_and_broken_records_are_listed_not_dropped(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    async with exchanged(kafka_broker, tmp_path) as (alice, bob, handles, _cut):
        group = alice.settings.group.name
        records = await read_all(kafka_broker.bootstrap, topic(group, "requests"))
        original = json.loads(records[0].value)
        tampered = {**original, "data": {**original["data"], "input": "rm -rf everything"}}
        async with RawPeer(kafka_broker, group, "stranger") as raw:
            await raw.send("requests", tampered, key=bob.group.node.agent_id)
            data = {**raw.request("", "who am I?")["data"], "taskid": "stranger-task"}
            stranger = raw.envelope(TASK_REQUEST, data, correlationid=handles[0].correlationid)
            await raw.send("requests", stranger)
            await raw.send("requests", b"this is not json")

        settings = alice.settings.group
        result = await replay(settings, ReplayQuery.from_text("requests", "beginning"))
        statuses = [(e.offset, e.status) for e in result.entries]
        assert statuses == [(0, "verified"), (1, "verified"), (2, "verified"), (3, "bad-signature"),
                            (4, "unknown-sender"), (5, "malformed")]  # fmt: skip
        assert result.entries[3].data["input"] == "rm -rf everything" and result.entries[3].sender == "alice"
        assert "not json" in result.entries[5].raw

        # One conversation: the genuine request, its tampered copy and the stranger's, in order.
        same = await replay(settings, ReplayQuery.from_text("requests", correlation=handles[0].correlationid))
        assert [e.status for e in same.entries] == ["verified", "bad-signature", "unknown-sender"]
        typed = await replay(settings, ReplayQuery.from_text("requests", "2", "4", types=["task.request"]))
        assert [e.offset for e in typed.entries] == [2, 3, 4]


async def test_refeed_reproduces_an_answer_in_a_scratch_agent(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    from tests.fixtures.gguf_models import write_scripted_model

    model = write_scripted_model(tmp_path / "answer-one.gguf", ANSWERS[0])
    async with exchanged(kafka_broker, tmp_path) as (alice, _bob, handles, _cut):
        env = cli_env(kafka_broker, alice, tmp_path)
        env["SHOAL_TOOLS__WORKSPACE"] = str(tmp_path / "user-workspace")
        args = ["replay", "-t", "requests", "--refeed", "--model", str(model), "--json"]
        done = await run_cli(env, *args, "--to", "1", timeout=120)
        assert done.code == 0, done.stderr
        lines = json_lines(done.stdout)
        listed = [line for line in lines if "envelope" in line]
        reproduced = {line["taskid"]: line for line in lines if "reproduced" in line}
        assert [line["envelope"]["data"]["taskid"] for line in listed] == [h.taskid for h in handles[:2]]
        first, second = reproduced[handles[0].taskid], reproduced[handles[1].taskid]
        assert first["original"]["output"] == "answer one" and first["original"]["verified"]
        assert first["reproduced"]["status"] == "ok" and first["reproduced"]["output"] == "answer one"
        assert first["same"] is True and first["input"] == "first question"
        assert second["original"]["output"] == "answer two" and second["same"] is False  # the model differs

        table = await run_cli(env, "replay", "-t", "requests", "--from", "2", "--refeed", "--model", str(model))
        assert table.code == 0, table.stderr
        assert "third question" in table.stdout and "answer three" in table.stdout and "different" in table.stdout
        # The user's database and workspace were never created: the scratch agent used a temporary folder.
        assert not (tmp_path / "cli" / "shoal.db").exists() and not (tmp_path / "user-workspace").exists()


POLICY = """
[[rules]]
name = "alice-may-ask-for-shell"
effect = "ask"
action = "tool"
target = "shell"
requester = "peer:alice"

[[rules]]
name = "alice-may-write"
effect = "allow"
action = "tool"
target = "write_file"
requester = "peer:alice"
"""


async def test_refeed_denies_approvals_and_writes_only_to_its_scratch_folder(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    """The scratch agent's rules (core/group/replay_refeed.py): the task runs as the original peer's request
    under the user's policy; what would need a person's approval is denied; files land in the scratch
    workspace; the user's data folder gets no session."""
    from core.group.replay_refeed import refeed, scratch_settings, task_requests
    from core.providers.scripted import ScriptedProvider
    from core.service import AgentCore

    config = tmp_path / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    (config.parent / "policy.toml").write_text(POLICY)
    async with exchanged(kafka_broker, tmp_path) as (alice, _bob, handles, _cut):
        result = await replay(alice.settings.group, ReplayQuery.from_text("requests", limit=1))
        requests = task_requests(result.entries)
        assert [r.data["taskid"] for r in requests] == [handles[0].taskid]
        user = load_settings(None, {}).settings
        scratch = scratch_settings(user, tmp_path / "scratch")
        assert scratch.group.enabled is False and scratch.memory.enabled is False and not scratch.mcp_servers
        calls = [
            tool_call("shell", {"command": "touch never"}, 0),  # the policy asks: nobody answers yes
            tool_call("write_file", {"path": "note.txt", "content": "x"}, 1),  # allowed for alice
            tool_call(
                "edit_file", {"path": "note.txt", "old_text": "x", "new_text": "y"}, 2
            ),  # built-in: peers may not
        ]
        provider = ScriptedProvider([calls, "done, carefully"])
        async with AgentCore(scratch, provider=provider, config_file=config) as core:
            out = [r async for r in refeed(core, requests, {})]
            sessions = await core.sessions.recent()
        assert len(out) == 1 and out[0].answer == "done, carefully" and out[0].status == "ok" and out[0].same is None
        assert provider.calls[0][-1].content == "first question"
        shell, write, edit = out[0].steps
        assert shell["tool"] == "shell" and shell["approval"] == "deny" and shell["ok"] is False
        assert write["tool"] == "write_file" and write["ok"] is True
        assert edit["tool"] == "edit_file" and edit["ok"] is False and "builtin:peer" in edit["output"]
        assert (tmp_path / "scratch" / "workspace" / "note.txt").read_text() == "x"
        assert not (tmp_path / "workspace" / "note.txt").exists()  # the user's workspace (tests/conftest.py)
        assert not (tmp_path / "data" / "shoal.db").exists()  # the user's data folder
        assert [s.title for s in sessions] == [f"Replay of task {handles[0].taskid[:12]}: first question"]


@pytest.mark.parametrize("text", ["-1", "yesterday-ish", "0:x"])
def test_bad_positions_are_user_errors(text: str) -> None:
    with pytest.raises(UserError):
        ReplayQuery.from_text("requests", text)


def test_positions_in_every_accepted_form() -> None:
    now = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert ReplayQuery.from_text("requests", "beginning").start.unbounded
    assert ReplayQuery.from_text("requests", "12").start.offset_for(3) == 12
    assert ReplayQuery.from_text("requests", "0:5,2:7").start.offsets == {0: 5, 2: 7}
    assert ReplayQuery.from_text("requests", "10m", now=now).start.time == datetime(2026, 11, 21, 9, 50, tzinfo=UTC)
    assert ReplayQuery.from_text("requests", "2026-11-21T09:00:00Z").start.time == datetime(2026, 11, 21, 9, tzinfo=UTC)
    assert ReplayQuery.from_text("requests", types=["task.request"]).types == (TASK_REQUEST,)
