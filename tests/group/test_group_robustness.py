"""What the group protocol promises when things go wrong, against the real broker: redelivered requests are
not run again, a broker outage loses nothing, forged and tampered envelopes are dropped, garbage on any topic
crashes no reader, large payloads travel by reference, and deadlines and the depth limit are enforced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from core import events as ev
from core.group import dispatch as dispatch_module
from core.group import reader as reader_module
from core.group.envelope import (
    MEMORY_ITEM,
    ROSTER_ANNOUNCE,
    ROSTER_LEAVE,
    TASK_PROGRESS,
    TASK_REQUEST,
    TASK_RESULT,
    canonical,
)
from core.group.topics import topic
from core.group.worker import SkillCall
from tests.fixtures.cores import run_turn, scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import RawPeer, db_rows, eventually, group_overrides, read_all, read_topic, unique_group

ECHO = [{"name": "echo", "handler": "echo"}]


class CountingEcho:
    """The echo handler, counting every task it actually runs."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, call: SkillCall) -> AsyncIterator[str]:
        self.calls.append(call.taskid)
        yield call.input


def counting_worker(core: Any) -> CountingEcho:
    runner = CountingEcho()
    core.group.worker.runners["echo"] = runner
    return runner


def results_for(records: list[Any], taskid: str) -> list[dict[str, Any]]:
    out = []
    for record in records:
        envelope = json.loads(record.value)
        if envelope["type"] == TASK_RESULT and envelope.get("data", {}).get("taskid") == taskid:
            out.append(envelope)
    return out


async def responses_until(broker: TansuBroker, group: str, taskid: str, count: int) -> list[dict[str, Any]]:
    records = await read_topic(
        broker.bootstrap,
        topic(group, "responses"),
        lambda rs: len(results_for(rs, taskid)) >= count,
        timeout=20,
    )
    return results_for(records, taskid)


async def dropped_events(core: Any) -> list[Any]:
    return await core.timeline.events(kind="group.dropped")


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
            assert await outbox.depth() == 0

        # Every result is on the wire; whether the dispatcher's reader sees them all is the known bug below.
        done, _pending = await asyncio.wait([asyncio.ensure_future(h.result()) for h in handles], timeout=5)
        heard = [t.result() for t in done]
        assert all(r.ok for r in heard)
        if len(heard) < len(handles):
            pytest.xfail(
                f"BUG (reported): {len(handles) - len(heard)} of 5 results missed by the dispatcher. An assigned "
                "reader keeps its pre-outage positions; the restarted broker's recreated topic is shorter, and "
                "records written there before the reader's first fetch sit below its old position."
            )


def _json(record: Any) -> dict[str, Any]:
    return json.loads(record.value)


# --- 5. forgeries -------------------------------------------------------------------------------------------


def resign(envelope: dict[str, Any], peer: RawPeer) -> dict[str, Any]:
    body = {k: v for k, v in envelope.items() if k != "signature"}
    return {**body, "signature": peer.identity.sign(canonical(body))}


async def test_forged_and_tampered_envelopes_are_dropped(
    kafka_broker: TansuBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_module, "UNKNOWN_SENDER_GRACE", 0.5)  # how long a card may be awaited
    group = unique_group()
    over = group_overrides(kafka_broker, group, "worker", tmp_path / "w", skills=ECHO)
    async with (
        scripted_core([], overrides=over) as (core, _),
        RawPeer(kafka_broker, group, "alice") as alice,
        RawPeer(kafka_broker, group, "mallory") as mallory,
        RawPeer(kafka_broker, group, "eve") as eve,
    ):
        node = core.group.node
        runner = counting_worker(core)
        await node.wait_online(15)
        await alice.announce()
        await mallory.announce()  # eve never announces
        await eventually(lambda: {"alice", "mallory"} <= {m.name for m in node.members()})
        alice_key = node.roster.key_for(alice.agent_id)

        # (a) mallory claims to be alice and signs with her own key
        forged = mallory.request("echo", "forged")
        forged.update(agentid=alice.agent_id, source=f"shoal://{group}/{alice.agent_id}")
        forged["data"]["requester"] = {"agentid": alice.agent_id, "name": "alice"}
        forged = resign(forged, mallory)
        # (b) alice's genuine request, one byte of its data changed after signing
        tampered = alice.request("echo", "pay 100")
        tampered["data"]["input"] = "pay 900"
        # (c) a card under alice's id carrying mallory's key (the id does not derive from it)
        card = mallory.envelope(ROSTER_ANNOUNCE, mallory.card(agentid=alice.agent_id, name="alice"))
        card.update(agentid=alice.agent_id, source=f"shoal://{group}/{alice.agent_id}")
        card = resign(card, mallory)
        # (d) a well-signed request from someone the roster never heard of
        stranger = eve.request("echo", "who am I")
        # (e) a goodbye in alice's name, signed by mallory
        leave = mallory.envelope(ROSTER_LEAVE, {"agentid": alice.agent_id, "reason": "quit"})
        leave.update(agentid=alice.agent_id, source=f"shoal://{group}/{alice.agent_id}")
        leave = resign(leave, mallory)

        await mallory.send("skill.echo.requests", forged, key=forged["data"]["taskid"])
        await mallory.send("skill.echo.requests", tampered, key=tampered["data"]["taskid"])
        await mallory.send("announce", card, key=alice.agent_id)
        await eve.send("skill.echo.requests", stranger, key=stranger["data"]["taskid"])
        await mallory.send("announce", leave, key=alice.agent_id)

        expected = {
            forged["id"]: "bad-signature",
            tampered["id"]: "bad-signature",
            card["id"]: "bad-signature",
            stranger["id"]: "unknown-sender",
            leave["id"]: "bad-signature",
        }
        reasons: dict[str, str] = {}

        async def collect() -> bool:
            reasons.update({e.payload["envelope"].get("id"): e.payload["reason"] for e in await dropped_events(core)})
            return expected.keys() <= reasons.keys()

        for _ in range(300):
            if await collect():
                break
            await asyncio.sleep(0.05)
        assert {k: reasons.get(k) for k in expected} == expected

        assert runner.calls == []  # nothing forged ran
        assert db_rows(tmp_path / "w", "SELECT count(*) FROM group_tasks") == [(0,)]
        assert node.roster.key_for(alice.agent_id) is alice_key  # the impostor card and leave changed nothing
        assert node.roster.get(alice.agent_id) is not None and node.roster.get(alice.agent_id).name == "alice"

        # ...and the member goes on working
        genuine = alice.request("echo", "still here")
        await alice.send("skill.echo.requests", genuine, key=genuine["data"]["taskid"])
        (result,) = await responses_until(kafka_broker, group, genuine["data"]["taskid"], 1)
        assert result["data"]["status"] == "ok" and result["data"]["output"] == "still here"
        assert runner.calls == [genuine["data"]["taskid"]]
        assert all(not r._task.done() for r in node.readers if r._task)


# --- 6. garbage on every topic ------------------------------------------------------------------------------

FUZZ_TOPICS = ("announce", "control", "requests", "responses", "progress", "memory", "skill.echo.requests")
EVENT_TYPES = (ROSTER_ANNOUNCE, ROSTER_LEAVE, TASK_REQUEST, TASK_PROGRESS, TASK_RESULT, MEMORY_ITEM)
DATA_FIELDS = ("taskid", "skill", "input", "deadline", "depth", "maxdepth", "requester", "state", "status",
               "output", "error", "agent", "usage", "elapsedms", "delta", "step", "steps", "agentid", "name",
               "skills", "publickey", "heartbeatms", "capabilities", "activetasks")  # fmt: skip


def fuzz_values(peer: RawPeer, member_id: str, count: int) -> list[tuple[str, bytes | None, bytes | None]]:
    """(topic suffix, key, value) triples drawn by Hypothesis: raw bytes, text, JSON that looks like an
    envelope with random attributes, and correctly signed envelopes whose data holds random values.
    Derandomized (the same values every run); FUZZ_RANDOM=1 in the environment draws new ones."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from core.timeline.ids import TraceContext, new_id

    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
        st.sampled_from(["2099-01-01T00:00:00Z", "2000-01-01T00:00:00Z", "echo", member_id, peer.agent_id, ""]),
    )
    json_values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=12,
    )
    attr = st.one_of(json_values, st.just(None))
    ids = st.sampled_from([member_id, peer.agent_id, "0" * 24, "not-an-id"])
    envelope_like = st.fixed_dictionaries(
        {
            "specversion": st.one_of(st.just("1.0"), attr),
            "id": st.one_of(st.builds(new_id), attr),
            "source": st.one_of(st.just(f"shoal://{peer.group}/x"), attr),
            "type": st.one_of(st.sampled_from(EVENT_TYPES), attr),
            "time": st.one_of(st.just("2026-01-01T00:00:00Z"), attr),
            "datacontenttype": st.just("application/json"),
            "dataschema": st.one_of(st.just("urn:shoal:schema:x:1"), attr),
            "group": st.one_of(st.just(peer.group), attr),
            "agentid": st.one_of(ids, attr),
            "correlationid": st.one_of(st.text(min_size=1, max_size=10), attr),
            "traceparent": st.one_of(st.builds(lambda: TraceContext.new_root().traceparent), attr),
            "schemaversion": st.one_of(st.sampled_from(["1.0", "1.7", "2.0", "x"]), attr),
            "zone": st.just("public"),
            "signature": st.one_of(st.just("ed25519:AAAA"), attr),
        },
        optional={
            "data": json_values,
            "dataref": attr,
            "datadigest": attr,
            "datasize": attr,
            "recipient": st.one_of(ids, attr),
            "causationid": attr,
        },
    ).map(lambda d: json.dumps(d).encode())
    data = st.dictionaries(st.one_of(st.sampled_from(DATA_FIELDS), st.text(max_size=8)), json_values, max_size=8)
    signed = st.builds(
        lambda kind, body, to_member: canonical(peer.envelope(kind, body, recipient=member_id if to_member else None)),
        st.sampled_from(EVENT_TYPES),
        data,
        st.booleans(),
    )
    tampered = st.builds(
        lambda kind, body, name, new: canonical({**peer.envelope(kind, body), name: new}),
        st.sampled_from(EVENT_TYPES),
        data,
        st.sampled_from(["data", "agentid", "signature", "id", "time", "correlationid", "recipient", "zone", "x"]),
        json_values,
    )
    task = st.builds(  # a plausible request with one field replaced by anything: reaches the worker's checks
        lambda name, new, to_member: canonical(
            peer.envelope(
                TASK_REQUEST,
                {**peer.request("echo", "fuzz")["data"], name: new},
                recipient=member_id if to_member else None,
            )
        ),
        st.sampled_from(["taskid", "skill", "input", "deadline", "depth", "maxdepth", "requester", "extra"]),
        json_values,
        st.booleans(),
    )
    value = st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.just(None),
        envelope_like,
        signed,
        signed,
        tampered,
        task,
    )
    triple = st.tuples(st.sampled_from(FUZZ_TOPICS), st.one_of(st.none(), st.binary(max_size=16)), value)
    drawn: list[tuple[str, bytes | None, bytes | None]] = []

    @settings(
        max_examples=count // 8,
        database=None,
        derandomize=not os.environ.get("FUZZ_RANDOM"),
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(triple, min_size=8, max_size=8))
    def draw(batch: list[tuple[str, bytes | None, bytes | None]]) -> None:
        drawn.extend(batch)

    draw()
    return drawn


@contextlib.contextmanager
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.WARNING, logger="core.group"):
        yield
    failures = [r for r in caplog.records if r.name.startswith("core.group") and r.levelno >= logging.ERROR]
    assert not failures, "\n".join(f"{r.name}: {r.getMessage()}\n{r.exc_text}" for r in failures)


async def caught_up(readers: list[Any], since_ms: float) -> bool:
    """Every reader fetched after `since_ms` and stands at the end of every partition it reads."""
    for reader in readers:
        consumer = reader.consumer
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None or consumer.last_poll_timestamp(tp) < since_ms:
                return False
            if await consumer.position(tp) < highwater:
                return False
    return True


async def test_garbage_on_every_topic_crashes_no_reader(
    kafka_broker: TansuBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(reader_module, "UNKNOWN_SENDER_GRACE", 0.05)  # made-up senders: don't wait for cards
    group = unique_group()
    w_over = group_overrides(kafka_broker, group, "worker", tmp_path / "w", skills=ECHO)
    d_over = group_overrides(kafka_broker, group, "boss", tmp_path / "d")
    with no_errors_logged(caplog):
        async with (
            scripted_core([], overrides=w_over) as (worker, _),
            scripted_core([], overrides=d_over) as (boss, _),
            RawPeer(kafka_broker, group, "fuzzer") as peer,
        ):
            for core in (worker, boss):
                await core.group.node.wait_online(15)
            await peer.announce()
            await eventually(lambda: peer.agent_id in {m.agentid for m in worker.group.members()})
            await eventually(lambda: peer.agent_id in {m.agentid for m in boss.group.members()})

            values = fuzz_values(peer, worker.group.node.agent_id, 200)
            assert len(values) >= 200
            since = time.time() * 1000
            sends = [  # a record needs a key or a value: a tombstone gets a key
                peer.producer.send(peer.topic(suffix), value, key=b"k" if key is None and value is None else key)
                for suffix, key, value in values
            ]
            await asyncio.gather(*[await s for s in sends])
            readers = worker.group.node.readers + boss.group.node.readers
            for _ in range(600):
                if await caught_up(readers, since):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the readers never got through the garbage")

            handle = await boss.group.dispatch("still alive", skill="echo", deadline=30)
            result = await asyncio.wait_for(handle.result(), 30)
            assert result.ok and result.output == "still alive"
            assert result.agent["agentid"] == worker.group.node.agent_id
            for reader in readers:
                assert reader._task is not None and not reader._task.done(), reader.name
            assert len(await dropped_events(worker)) > 50  # the garbage was seen, and dropped


# --- 7. large payloads by reference ------------------------------------------------------------------------


@contextlib.contextmanager
def moto_s3(bucket: str) -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        client = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="x"
        )
        client.create_bucket(Bucket=bucket)
        yield url
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["s3", "folder"])
async def test_large_payload_travels_by_reference(kafka_broker: TansuBroker, tmp_path: Path, kind: str) -> None:
    import keyring

    group, bucket = unique_group(), "shoal-group-test"
    with contextlib.ExitStack() as stack:
        if kind == "s3":
            url = stack.enter_context(moto_s3(bucket))
            keyring.set_password("shoal", "s3:s3", "testing:testing")
            artifacts = {"kind": "s3", "s3_bucket": bucket, "s3_endpoint_url": url, "s3_region": "us-east-1"}
        else:
            (tmp_path / "shared").mkdir()
            artifacts = {"kind": "folder", "folder": str(tmp_path / "shared")}
        extra: dict[str, Any] = {"artifacts": artifacts, "max_inline_bytes": 1024}
        w_over = group_overrides(kafka_broker, group, "worker", tmp_path / "w", skills=ECHO, **extra)
        d_over = group_overrides(kafka_broker, group, "boss", tmp_path / "d", **extra)
        async with scripted_core([], overrides=w_over) as (worker, _), scripted_core([], overrides=d_over) as (boss, _):
            await boss.group.node.wait_online(15)
            await worker.group.node.wait_online(15)
            text = "".join(f"line {n:06d}: the tide comes in, the tide goes out\n" for n in range(6200))
            assert len(text.encode()) > 300_000
            handle = await boss.group.dispatch(text, skill="echo", deadline=60)
            result = await asyncio.wait_for(handle.result(), 60)
            assert result.status == "ok", result.error
            assert result.output == text

        scheme = "s3://" if kind == "s3" else "file://"
        for suffix, event_type in (("skill.echo.requests", TASK_REQUEST), ("responses", TASK_RESULT)):
            records = await read_all(kafka_broker.bootstrap, topic(group, suffix))
            (wire,) = [e for e in map(lambda r: json.loads(r.value), records) if e["type"] == event_type]
            assert "data" not in wire and wire["dataref"].startswith(scheme), wire
            assert wire["datadigest"].startswith("sha256:") and wire["datasize"] > 300_000
            assert max(len(r.value) for r in records) < 4096  # the broker never carried the payload


# --- 9. deadlines and the depth limit -----------------------------------------------------------------------


async def test_deadlines_and_depth_limit(
    kafka_broker: TansuBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch_module, "RESULT_GRACE", 0.3)
    group = unique_group()
    w_over = group_overrides(kafka_broker, group, "worker", tmp_path / "w", skills=ECHO, max_delegation_depth=2)
    d_over = group_overrides(kafka_broker, group, "boss", tmp_path / "d", max_delegation_depth=5)
    async with scripted_core([], overrides=w_over) as (worker, _), scripted_core([], overrides=d_over) as (boss, _):
        runner = counting_worker(worker)
        await boss.group.node.wait_online(15)
        await worker.group.node.wait_online(15)
        await eventually(lambda: {"worker", "boss"} <= {m.name for m in boss.group.members()})

        # nobody serves the skill: the dispatcher gives up after the deadline, saying why
        started = time.monotonic()
        nobody = await boss.group.dispatch("anyone?", skill="translate", deadline=1.0)
        result = await asyncio.wait_for(nobody.result(), 10)
        assert result.status == "unanswered"
        assert "No live member offers the skill 'translate'" in result.error["message"]
        assert 1.0 <= time.monotonic() - started < 5

        # the deadline has passed when the worker reads the request: expired, not run
        late = await boss.group.dispatch("too late", skill="echo", deadline=0.001)
        result = await asyncio.wait_for(late.result(), 10)
        assert result.status == "expired", result
        assert "had passed" in result.error["message"]
        assert result.agent["agentid"] == worker.group.node.agent_id

        # depth over the worker's own limit (2), though within the requester's (5): refused
        deep = await boss.group.dispatch("delegated again", skill="echo", deadline=10, depth=3)
        result = await asyncio.wait_for(deep.result(), 15)
        assert result.status == "refused" and "depth 3 exceeds the limit 2" in result.error["message"]

        # within both limits: runs
        fine = await boss.group.dispatch("delegated once", skill="echo", deadline=10, depth=2)
        result = await asyncio.wait_for(fine.result(), 15)
        assert result.ok and result.output == "delegated once"
        assert runner.calls == [fine.taskid]
        rows = db_rows(tmp_path / "w", "SELECT task_id, status FROM group_tasks WHERE direction = 'in'")
        assert dict(rows) == {late.taskid: "expired", deep.taskid: "refused", fine.taskid: "ok"}
        rows = db_rows(tmp_path / "d", "SELECT task_id, status FROM group_tasks WHERE direction = 'out'")
        assert dict(rows)[nobody.taskid] == "unanswered"


async def test_request_over_its_own_maxdepth_is_refused(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    """The request's `maxdepth` binds the taker too (here lower than the taker's own setting)."""
    group = unique_group()
    over = group_overrides(kafka_broker, group, "worker", tmp_path / "w", skills=ECHO)
    async with scripted_core([], overrides=over) as (core, _), RawPeer(kafka_broker, group, "asker") as peer:
        runner = counting_worker(core)
        await core.group.node.wait_online(15)
        await peer.announce()
        await eventually(lambda: core.group.node.roster.key_for(peer.agent_id) is not None)
        request = peer.request("echo", "deep", depth=2, maxdepth=1)
        taskid = request["data"]["taskid"]
        await peer.send("skill.echo.requests", request, key=taskid)
        (result,) = await responses_until(kafka_broker, group, taskid, 1)
        assert result["data"]["status"] == "refused"
        assert result["data"]["error"]["code"] == "refused"
        assert runner.calls == []
