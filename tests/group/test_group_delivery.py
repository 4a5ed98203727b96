"""Delivery when things go wrong, against the real broker: a redelivered request is answered again but never run
twice, and a broker outage loses nothing (the outbox sends everything once the broker is back).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from core import events as ev
from core.group.envelope import TASK_REQUEST, TASK_RESULT
from core.group.topics import topic
from tests.fixtures.cores import run_turn, scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.echo_skill import ECHO, counting_worker, responses_until, results_for
from tests.group.helpers import RawPeer, db_rows, eventually, group_overrides, read_all, read_topic, unique_group

# --- 3. redelivery ------------------------------------------------------------------------------------------


async def test_redelivered_request_is_answered_again_but_never_rerun(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = unique_group()
    over = group_overrides(kafka_broker, group, "worker", tmp_path / "w", skills=ECHO)
    data_dir = tmp_path / "w"
    async with RawPeer(kafka_broker, group, "asker") as peer:
        async with scripted_core([], overrides=over) as (core, _):
            node = core.group.node
            runner = counting_worker(core)
            worker_id = node.agent_id
            await node.wait_online(15)
            await peer.announce()
            await eventually(lambda: node.roster.key_for(peer.agent_id) is not None)

            request = peer.request("echo", "only once")
            taskid = request["data"]["taskid"]
            meta = await peer.send("skill.echo.requests", request, key=taskid)
            (first,) = await responses_until(kafka_broker, group, taskid, 1)
            await peer.send("skill.echo.requests", request, key=taskid)  # the very same bytes again
            results = await responses_until(kafka_broker, group, taskid, 2)

            assert runner.calls == [taskid]  # ran once
            assert len(results) == 2  # ...but the stored result was sent again for the redelivery
            for result in results:
                assert result["data"]["status"] == "ok" and result["data"]["output"] == "only once"
                assert result["causationid"] == request["id"] and result["recipient"] == peer.agent_id
            assert results[0]["id"] == first["id"] and results[1]["id"] != first["id"]
            tasks = "SELECT status FROM group_tasks WHERE task_id = ? AND direction = 'in'"
            assert db_rows(data_dir, tasks, (taskid,)) == [("ok",)]
            inbox = "SELECT count(*) FROM group_inbox WHERE envelope_id = ?"
            assert db_rows(data_dir, inbox, (request["id"],)) == [(1,)]
            # the redelivery is not a second arrival in the timeline either
            received = [e for e in await core.timeline.events(kind="group.received") if e.name == TASK_REQUEST]
            assert [e.payload["envelope"]["id"] for e in received] == [request["id"]]

        # A restart with the same data folder (and keyring): the queue's committed offset is past both records,
        # so neither comes back. A marker on the same partition proves the reader got past them.
        async with scripted_core([], overrides=over) as (core, _):
            node = core.group.node
            runner = counting_worker(core)
            assert node.agent_id == worker_id
            await node.wait_online(15)
            await peer.announce()
            marker = peer.request("echo", "after the restart")
            marker_id = marker["data"]["taskid"]
            await peer.send("skill.echo.requests", marker, key=marker_id, partition=meta.partition)
            (done,) = await responses_until(kafka_broker, group, marker_id, 1)
            assert done["data"]["output"] == "after the restart"
            assert runner.calls == [marker_id]
            everything = await read_all(kafka_broker.bootstrap, topic(group, "responses"))
            assert len(results_for(everything, taskid)) == 2  # no redelivery, so no third copy


# --- 4. broker outage ---------------------------------------------------------------------------------------


async def test_outbox_delivers_everything_after_a_broker_outage(fresh_broker: TansuBroker, tmp_path: Path) -> None:
    group = unique_group()
    w_over = group_overrides(fresh_broker, group, "worker", tmp_path / "w", skills=ECHO)
    d_over = group_overrides(fresh_broker, group, "boss", tmp_path / "d")
    async with (
        scripted_core([], overrides=w_over) as (worker, _),
        scripted_core(["local answer"], overrides=d_over) as (boss, _),
    ):
        runner = counting_worker(worker)
        node = boss.group.node
        await node.wait_online(15)
        await worker.group.node.wait_online(15)
        await eventually(lambda: {"worker", "boss"} <= {m.name for m in node.members()})
        warm = await boss.group.dispatch("before", skill="echo", deadline=30)
        assert (await asyncio.wait_for(warm.result(), 30)).ok

        fresh_broker.stop()
        # The node notices when a send fails, i.e. after the producer's request timeout (10 s here).
        await eventually(lambda: node.state == "offline", timeout=30)
        started = time.monotonic()
        handles = [await boss.group.dispatch(f"outage {n}", skill="echo", deadline=60) for n in range(5)]
        assert time.monotonic() - started < 5  # dispatching never waits for the broker
        assert await node.outbox.depth() >= 5
        assert not any(h.done for h in handles)

        session = await boss.new_session("local while offline")
        turn = await asyncio.wait_for(run_turn(boss, session.id, "hello?"), 15)
        finished = [e for e in turn if isinstance(e, ev.TurnFinished)]
        assert finished and finished[0].status == "ok"
        assert "".join(e.text for e in turn if isinstance(e, ev.AssistantDelta)) == "local answer"

        fresh_broker.restart()  # same port, but every topic, record and offset is gone
        taskids = {h.taskid for h in handles}
        responses = await read_topic(
            fresh_broker.bootstrap,
            topic(group, "responses"),
            lambda rs: {e["data"]["taskid"] for e in map(_json, rs) if e["type"] == TASK_RESULT} >= taskids,
            timeout=60,
        )
        on_wire = {e["data"]["taskid"]: e["data"] for e in map(_json, responses) if e["type"] == TASK_RESULT}
        assert {t: (on_wire[t]["status"], on_wire[t]["output"]) for t in taskids} == {
            h.taskid: ("ok", f"outage {n}") for n, h in enumerate(handles)
        }
        assert sorted(runner.calls) == sorted([warm.taskid, *taskids])  # each ran once, on the worker
        await eventually(lambda: node.state == "online" and worker.group.node.state == "online", timeout=20)
        for core in (boss, worker):
            outbox = core.group.node.outbox
            for _ in range(200):
                if await outbox.depth() == 0:
                    break
                await asyncio.sleep(0.1)
            else:  # heartbeats keep adding rows: drained once is what counts
                pytest.fail(f"{core.group.node.name}'s outbox never drained: {await outbox.depth()} rows left")

        # Every result is on the wire, and the dispatcher hears each: its reader notices that the broker lost
        # the topics (the committed offsets are gone) and reads them again from the start.
        done, _pending = await asyncio.wait([asyncio.ensure_future(h.result()) for h in handles], timeout=20)
        heard = [t.result() for t in done]
        assert len(heard) == len(handles) and all(r.ok for r in heard), [r.status for r in heard]
        assert {r.output for r in heard} == {f"outage {n}" for n in range(5)}


def _json(record: Any) -> dict[str, Any]:
    return json.loads(record.value)
