"""Hostile and malformed input, against the real broker: forged and tampered envelopes are dropped (and nothing
they ask for runs), and garbage on every topic crashes no reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.group import intake as intake_module
from core.group.envelope import (
    MEMORY_ITEM,
    ROSTER_ANNOUNCE,
    ROSTER_LEAVE,
    TASK_PROGRESS,
    TASK_REQUEST,
    TASK_RESULT,
    canonical,
)
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.echo_skill import ECHO, counting_worker, responses_until
from tests.group.helpers import RawPeer, db_rows, eventually, group_overrides, unique_group


async def dropped_events(core: Any) -> list[Any]:
    return await core.timeline.events(kind="group.dropped")


# --- 5. forgeries -------------------------------------------------------------------------------------------


def resign(envelope: dict[str, Any], peer: RawPeer) -> dict[str, Any]:
    body = {k: v for k, v in envelope.items() if k != "signature"}
    return {**body, "signature": peer.identity.sign(canonical(body))}


async def test_forged_and_tampered_envelopes_are_dropped(
    kafka_broker: TansuBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake_module, "UNKNOWN_SENDER_GRACE", 0.5)  # how long a card may be awaited
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
    monkeypatch.setattr(intake_module, "UNKNOWN_SENDER_GRACE", 0.05)  # made-up senders: don't wait for cards
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
