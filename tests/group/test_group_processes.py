"""Members as real processes (`shoal group run`, `shoal dispatch`, `shoal group members`, `shoal trace`) on the
real broker: the roster converges and notices crashes, a work queue runs each task exactly once across
takers, and one decision can be traced across agents from the audit topic alone.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from core.group.envelope import ROSTER_LEAVE, TASK_PROGRESS, TASK_REQUEST, TASK_RESULT
from core.group.topics import topic
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import (
    Processes,
    RawPeer,
    db_rows,
    eventually,
    group_overrides,
    member_env,
    read_all,
    read_topic,
    run_cli,
    unique_group,
    wait_exit,
)

ECHO = [{"name": "echo", "handler": "echo"}]
HEARTBEAT = 0.5


def names(core: Any) -> set[str]:
    return {m.name for m in core.group.members()}


async def test_roster_converges_then_drops_a_killed_member_and_a_leaving_one(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    group = unique_group()
    changes: list[tuple[float, str, str]] = []  # (when, change, member name) as the observer saw them
    with Processes(tmp_path / "logs") as procs:
        members = {
            n: procs.member(member_env(kafka_broker, group, n, tmp_path / n, heartbeat=HEARTBEAT), n)
            for n in ("m1", "m2", "m3")
        }
        observer = group_overrides(kafka_broker, group, "observer", tmp_path / "obs", heartbeat=HEARTBEAT)
        async with scripted_core([], overrides=observer) as (obs, _):
            obs.group.node.roster.add_listener(lambda change, m: changes.append((time.monotonic(), change, m.name)))
            await eventually(lambda: {"m1", "m2", "m3"} <= names(obs), timeout=40)
            ids = {m.name: m.agentid for m in obs.group.members()}

            # A separate process sees the same roster (the CLI joins as a short-lived member of its own).
            cli = await run_cli(member_env(kafka_broker, group, "cli", tmp_path / "cli"), "group", "members", "--json")
            assert cli.code == 0, cli.stderr
            cards = json.loads(cli.stdout)
            assert {"m1", "m2", "m3", "observer"} <= {c["name"] for c in cards}
            assert {c["agentid"] for c in cards if c["name"] == "m1"} == {ids["m1"]}
            assert all(c["heartbeatms"] == 500 for c in cards if c["name"].startswith("m"))

            # SIGKILL: no leave is sent; the observer drops it after three missed heartbeats, by itself.
            killed_at = time.monotonic()
            members["m1"].kill()
            await eventually(lambda: "m1" not in names(obs), timeout=10)
            (when, change) = next((w, c) for w, c, n in changes if n == "m1" and c in ("expired", "left"))
            assert change == "expired"
            silence = 3 * HEARTBEAT
            assert silence - HEARTBEAT - 0.2 <= when - killed_at <= silence + HEARTBEAT + 1.5

            # SIGTERM: a clean exit says goodbye, and the observer drops it at once (not by expiry).
            left_at = time.monotonic()
            members["m2"].terminate()
            await eventually(lambda: "m2" not in names(obs), timeout=10)
            (when, change) = next((w, c) for w, c, n in changes if n == "m2" and c in ("expired", "left"))
            assert change == "left"
            assert when - left_at < silence + 1.0
            assert await wait_exit(members["m2"], 15) == 0, procs.log(members["m2"])

            # The survivor keeps heartbeating: still there well after the others' expiry window.
            await asyncio.sleep(silence + HEARTBEAT)
            assert names(obs) >= {"m3", "observer"} and not names(obs) & {"m1", "m2"}

        announce = [json.loads(r.value) for r in await read_all(kafka_broker.bootstrap, topic(group, "announce"))]
        leaves = {e["agentid"] for e in announce if e["type"] == ROSTER_LEAVE}
        assert ids["m2"] in leaves and ids["m1"] not in leaves


async def _skill_group_size(bootstrap: str, group_id: str) -> int:
    """Members of a consumer group, as the broker describes it."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group_id])
    finally:
        await admin.close()
    # DescribeGroupsResponse: groups = [(error_code, group, state, protocol_type, protocol, members), ...]
    return sum(len(g[5]) for response in described for g in response.groups if g[2] == "Stable")


async def test_two_takers_run_each_task_exactly_once(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = unique_group()
    dirs = {n: tmp_path / n for n in ("w1", "w2")}
    with Processes(tmp_path / "logs") as procs:
        workers = {n: procs.member(member_env(kafka_broker, group, n, d, skills=ECHO), n) for n, d in dirs.items()}
        over = group_overrides(kafka_broker, group, "boss", tmp_path / "boss")
        async with scripted_core([], overrides=over) as (boss, _):
            await eventually(lambda: {"w1", "w2"} <= names(boss), timeout=40)
            queue_group = f"shoal.{group}.skill.echo"
            for _ in range(200):  # both takers in the work queue's consumer group (partitions split between them)
                if await _skill_group_size(kafka_broker.bootstrap, queue_group) == 2:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the two takers never formed a stable consumer group")

            handles = [await boss.group.dispatch(f"task {n}", skill="echo", deadline=60) for n in range(20)]
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 60)

            assert [r.status for r in results] == ["ok"] * 20
            assert [r.output for r in results] == [f"task {n}" for n in range(20)]
            ids = {m.name: m.agentid for m in boss.group.members()}
            takers = Counter(r.agent["agentid"] for r in results)
            assert set(takers) == {ids["w1"], ids["w2"]}, takers  # both took work: a real split

            taskids = {h.taskid for h in handles}
            responses = await read_topic(
                kafka_broker.bootstrap,
                topic(group, "responses"),
                lambda rs: len(rs) >= 20,
                timeout=15,
            )
            sent = Counter(e["data"]["taskid"] for e in map(_json, responses) if e["type"] == TASK_RESULT)
            assert sent == Counter({t: 1 for t in taskids})  # one result per task on the wire, none twice

        for process in workers.values():
            process.terminate()
        for process in workers.values():
            assert await wait_exit(process, 15) == 0, procs.log(process)
        rows = Counter(
            row[0] for d in dirs.values() for row in db_rows(d, "SELECT task_id FROM group_tasks WHERE direction='in'")
        )
        assert rows == Counter({t: 1 for t in taskids})  # each task taken by exactly one member, once
        ran = [db_rows(d, "SELECT count(*) FROM group_tasks WHERE direction='in'")[0][0] for d in dirs.values()]
        assert sorted(ran) == sorted(takers.values())


def _json(record: Any) -> dict[str, Any]:
    return json.loads(record.value)


def _walk(nodes: list[dict[str, Any]], parent: dict[str, Any] | None = None) -> list[tuple[dict, dict | None]]:
    out: list[tuple[dict, dict | None]] = []
    for node in nodes:
        out.append((node, parent))
        out.extend(_walk(node["children"], node))
    return out


def _find(pairs: list[tuple[dict, dict | None]], **want: Any) -> list[tuple[dict, dict | None]]:
    def matches(node: dict[str, Any]) -> bool:
        envelope = node.get("envelope") or {}
        return all((envelope.get("type") if k == "type" else node.get(k)) == v for k, v in want.items())

    return [(n, p) for n, p in pairs if matches(n)]


async def test_trace_links_one_task_across_two_processes(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = unique_group()
    with Processes(tmp_path / "logs") as procs:
        worker = procs.member(member_env(kafka_broker, group, "worker", tmp_path / "w", skills=ECHO), "worker")
        env = member_env(kafka_broker, group, "requester", tmp_path / "r")
        done = await run_cli(env, "dispatch", "trace me", "--skill", "echo", "--deadline", "30", "--json")
        assert done.code == 0, done.stderr + procs.log(worker)
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        result = lines[-1]
        assert result["kind"] == "TaskResult" and result["status"] == "ok" and result["output"] == "trace me"
        taskid, worker_id = result["taskid"], result["agent"]["agentid"]

        chain: list[dict[str, Any]] = []
        for _ in range(5):  # the audit records of both agents may still be on their way
            traced = await run_cli(env, "trace", taskid, "--json")
            assert traced.code == 0, traced.stderr
            pairs = _walk(json.loads(traced.stdout))
            chain = _chain(pairs, worker_id)
            if len(chain) == 4:
                break
            await asyncio.sleep(0.5)
        assert len(chain) == 4, traced.stdout
        sent, received, answered, got = chain
        requester_id = sent["agentid"]
        assert requester_id != worker_id
        assert [n["agentid"] for n in chain] == [requester_id, worker_id, worker_id, requester_id]
        assert [n["agent"] for n in chain] == ["requester", "worker", "worker", "requester"]
        assert all(n["correlationid"] == taskid for n in chain)
        assert received["envelope"]["id"] == sent["envelope"]["id"]  # the same envelope, seen from both sides
        assert got["envelope"]["id"] == answered["envelope"]["id"]
        assert answered["envelope"]["causationid"] == sent["envelope"]["id"]
        # the worker said it took the task (on the progress topic, so the CLI may have read it after the result;
        # the audit trail names envelopes, not their data)
        progress = [n for n, _ in _find(pairs, action="sent", type=TASK_PROGRESS) if n["agentid"] == worker_id]
        assert progress and progress[0]["envelope"]["causationid"] == sent["envelope"]["id"], traced.stdout
        worker.terminate()
        assert await wait_exit(worker, 15) == 0


def _chain(pairs: list[tuple[dict, dict | None]], worker_id: str) -> list[dict[str, Any]]:
    """requester sent request -> worker received it -> worker sent result -> requester received it, each the
    child of the one before in the tree; [] when any link is missing."""
    for sent, parent in _find(pairs, action="sent", type=TASK_REQUEST):
        if parent is not None or sent["agentid"] == worker_id:
            continue
        received = [n for n in sent["children"] if n["action"] == "received" and n["agentid"] == worker_id]
        for rec in received:
            answered = [n for n in rec["children"] if n["action"] == "sent" and n["envelope"]["type"] == TASK_RESULT]
            for ans in answered:
                got = [n for n in ans["children"] if n["action"] == "received" and n["agentid"] == sent["agentid"]]
                if got:
                    return [sent, rec, ans, got[0]]
    return []


async def test_members_cli_omits_a_member_that_crashed_earlier(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = unique_group()
    over = group_overrides(kafka_broker, group, "observer", tmp_path / "obs", heartbeat=HEARTBEAT)
    async with scripted_core([], overrides=over) as (obs, _), RawPeer(kafka_broker, group, "ghost") as ghost:
        await obs.group.node.wait_online(15)
        await ghost.announce(heartbeatms=500)  # one heartbeat, then silence: a member that crashed
        await eventually(lambda: "ghost" in names(obs))
        await eventually(lambda: "ghost" not in names(obs), timeout=10)  # the live observer dropped it
        cli = await run_cli(member_env(kafka_broker, group, "cli", tmp_path / "cli"), "group", "members", "--json")
        assert cli.code == 0, cli.stderr
        listed = {c["name"] for c in json.loads(cli.stdout)}
        assert "observer" in listed
        assert "ghost" not in listed
