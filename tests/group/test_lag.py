"""Consumer lag on the real broker: a deliberately slow headless agent falls behind a flood on its inbox, its lag
monitor warns (timeline event, snapshot, /metrics) and recovers once the flood stops and it catches up; a skill
queue partition that another taker held for a while comes back without a stale lag; then `shoal group status
--json` reads the committed lag of consumer groups from the broker, WARN included."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

from core.group.envelope import MEMORY_ITEM, canonical
from tests.fixtures.kafka_broker import TansuBroker, create_topics
from tests.group.helpers import RawPeer, eventually, group_overrides, member_env, run_cli
from tests.serve.conftest import served

HANDLER_DELAY = 0.0075  # the slow agent handles about 130 memory items a second
FLOOD_BATCH, FLOOD_TICK = 20, 0.05  # the flood: about 400 a second, all on partition 0


async def flood(peer: RawPeer, stop: asyncio.Event) -> int:
    """Signed memory items on partition 0 of the memory topic until `stop`; returns how many were sent."""
    sent = 0
    while not stop.is_set():
        futures = []
        for _ in range(FLOOD_BATCH):
            envelope = peer.envelope(MEMORY_ITEM, {"text": f"item {sent}", "n": sent})
            futures.append(await peer.producer.send(peer.topic("memory"), canonical(envelope), partition=0))
            sent += 1
        await asyncio.gather(*futures)
        await asyncio.sleep(FLOOD_TICK)  # pacing the producer, not waiting for anything
    return sent


def gauge(text: str, name: str, topic: str, partition: int) -> float | None:
    found = re.search(rf'^{name}\{{partition="{partition}",topic="{re.escape(topic)}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


async def test_a_slow_agent_raises_the_lag_warning_and_recovers(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = f"lag{uuid.uuid4().hex[:8]}"
    limits = {"lag_warn_messages": 200, "lag_warn_seconds": 3.0, "lag_warn_after": 1.0}
    overrides = group_overrides(kafka_broker, group, "slowpoke", tmp_path / "agent", **limits)
    async with served(overrides=overrides) as server, server.client() as client, RawPeer(kafka_broker, group) as peer:
        node = server.core.group.node
        await node.wait_online(30)
        await node.roster_caught_up(30)
        handled: list[int] = []

        async def slow(incoming: Any, _event: Any) -> None:
            await asyncio.sleep(HANDLER_DELAY)  # the deliberate slowness: every item takes a while
            handled.append(incoming.envelope.data["n"])

        node.on(MEMORY_ITEM, slow)
        await peer.announce()
        await eventually(lambda: node.roster.key_for(peer.agent_id) is not None)
        memory = node.topic("memory")
        assert not node.lag_monitor.warnings and node.lag_monitor.running

        stop = asyncio.Event()
        flooding = asyncio.create_task(flood(peer, stop))
        try:
            await eventually(lambda: bool(node.lag_monitor.warnings), timeout=60)
        finally:
            stop.set()
            sent = await flooding
        # one reader takes the whole inbox (and the roster): whatever waits behind the slow items lags too
        [warned] = [r for r in node.lag_monitor.warnings if r.topic == memory]
        assert (warned.topic, warned.partition, warned.reader) == (memory, 0, "inbox")
        assert warned.group == f"shoal.{group}.agent.{node.agent_id}"
        assert warned.messages > 0 and warned.seconds is not None and warned.seconds > 0
        for _ in range(100):  # the warning is written just after the monitor raised it
            found = [e for e in await node.timeline.events(kind="group.lag") if e.name == f"{memory}[0]"]
            if found:
                break
            await asyncio.sleep(0.05)
        [event] = found
        assert event.status == "warning"
        assert event.payload["topic"] == memory and event.payload["partition"] == 0
        assert event.payload["messages"] > 200 or event.payload["seconds"] > 3.0
        text = (await client.get("/metrics")).text
        assert "shoal_group_lag_warning 1.0" in text
        lagging = gauge(text, "shoal_group_consumer_lag_seconds", memory, 0)
        assert lagging is not None and lagging > 0
        assert len(handled) < sent, "the agent is behind when it warns"

        # the flood stopped: the agent catches up, the warning clears (after staying under for lag_warn_after)
        await eventually(lambda: not node.lag_monitor.warnings, timeout=90)
        assert len(handled) == sent and sorted(handled) == list(range(sent))
        for _ in range(100):  # the clearing event is written just after the warning is dropped
            events = await node.timeline.events(kind="group.lag")
            ours = [e for e in events if e.name == f"{memory}[0]"]
            if len(ours) == 2 and len([e for e in events if e.status == "ok"]) >= len(
                [e for e in events if e.status == "warning"]
            ):
                break
            await asyncio.sleep(0.05)
        assert [e.status for e in ours] == ["warning", "ok"]
        assert ours[1].payload["messages"] == 0 and ours[1].payload["seconds"] == 0.0
        starts = sorted(e.name for e in events if e.status == "warning")
        assert starts == sorted(e.name for e in events if e.status == "ok")  # every warning cleared
        row = next(r for r in node.lag_monitor.snapshot() if (r.topic, r.partition) == (memory, 0))
        assert (row.messages, row.seconds, row.warning) == (0, 0.0, False)
        text = (await client.get("/metrics")).text
        assert "shoal_group_lag_warning 0.0" in text
        assert gauge(text, "shoal_group_consumer_lag_seconds", memory, 0) == 0.0
        assert gauge(text, "shoal_group_consumer_lag", memory, 0) == 0.0

        # from outside: the agent's inbox group has committed everything it handled
        env = member_env(kafka_broker, group, "observer", tmp_path / "cli")
        result = await run_cli(env, "group", "status", "--json", "--agent-id", node.agent_id, "--wait", "20")
        assert result.code == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["connection"] == "online" and report["members"] >= 2  # slowpoke and the raw peer
        assert report["agents"] == [{"agentid": node.agent_id, "online": True}]
        [committed] = [r for r in report["lag"] if (r["topic"], r["partition"]) == (memory, 0)]
        assert committed["group"] == f"shoal.{group}.agent.{node.agent_id}" and committed["kind"] == "agent"
        assert committed["committed"] == committed["end"] == sent
        assert (committed["messages"], committed["seconds"], committed["warning"]) == (0, 0.0, False)


async def test_a_queue_partition_that_comes_back_after_a_rebalance_shows_no_stale_lag(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    from aiokafka import AIOKafkaConsumer

    from core.group.topics import skill_topic
    from tests.fixtures.cores import scripted_core
    from tests.fixtures.kafka_broker import TEST_CLIENT_SETTINGS, consumer_options
    from tests.group.echo_skill import ECHO, counting_worker

    group = f"lag{uuid.uuid4().hex[:8]}"
    limits = {"lag_warn_messages": 0, "lag_warn_seconds": 2.0, "lag_warn_after": 1.0, "partitions": 1}
    over = group_overrides(kafka_broker, group, "ada", tmp_path / "ada", skills=ECHO, **limits)
    queue = skill_topic(group, "echo")
    async with scripted_core([], overrides=over) as (core, _), RawPeer(kafka_broker, group, "req") as peer:
        node = core.group.node
        runner = counting_worker(core)
        await node.wait_online(15)
        await peer.announce()
        await eventually(lambda: node.roster.key_for(peer.agent_id) is not None)
        reader = next(r for r in node.readers if r.name != "inbox")
        await eventually(lambda: bool(reader.consumer.assignment()), timeout=20)
        for n in range(3):
            await peer.send("skill.echo.requests", peer.request("echo", f"first {n}"))
        await eventually(lambda: len(runner.calls) == 3, timeout=20)

        # another taker joins the queue's consumer group, takes the partition, handles three more and leaves
        other = AIOKafkaConsumer(
            bootstrap_servers=kafka_broker.bootstrap,
            group_id=f"shoal.{group}.skill.echo",
            client_id="aaa-other",  # sorts first: the range assignor gives it the only partition
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **consumer_options(TEST_CLIENT_SETTINGS),
        )
        await other.start()
        other.subscribe([queue])
        taken = 0

        async def take() -> bool:
            nonlocal taken
            batch = await other.getmany(timeout_ms=200)
            taken += sum(len(records) for records in batch.values())
            if batch:
                await other.commit()
            return bool(other.assignment())

        try:
            for _ in range(150):
                if await take() and not reader.consumer.assignment():
                    break
            assert other.assignment() and not reader.consumer.assignment(), "the other taker holds the partition"
            for n in range(3):
                await peer.send("skill.echo.requests", peer.request("echo", f"second {n}"))
            for _ in range(150):
                if taken >= 3:
                    break
                await take()
            assert taken == 3
        finally:
            await other.stop()
        # back to ada at offset 6, which it never read: nothing waits there for it
        await eventually(lambda: bool(reader.consumer.assignment()), timeout=20)
        [tp] = reader.consumer.assignment()
        await eventually(lambda: reader.consumer.highwater(tp) == 6, timeout=20)
        node.lag_monitor.sample()  # a sample now (the monitor's own runs once a second)
        [row] = [r for r in node.lag_monitor.snapshot() if r.topic == queue]
        assert (row.messages, row.seconds) == (0, 0.0), "what ada knew before the rebalance is forgotten"
        assert len(runner.calls) == 3, "the three the other taker handled are not run again"


async def test_group_status_shows_the_committed_lag_of_a_skill_queue(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    group = f"lag{uuid.uuid4().hex[:8]}"
    queue = f"group.{group}.skill.slow.requests"
    await create_topics(kafka_broker.bootstrap, [queue], partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, linger_ms=0)
    await producer.start()
    try:
        for n in range(7):
            await producer.send_and_wait(queue, b"task %d" % n, partition=0)
    finally:
        await producer.stop()
    waiting_since = time.time()
    tp = TopicPartition(queue, 0)
    taker = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=f"shoal.{group}.skill.slow")
    await taker.start()
    try:
        taker.assign([tp])
        await taker.commit({tp: 2})  # a taker that handled two tasks and stopped
    finally:
        await taker.stop()

    env = member_env(kafka_broker, group, "observer", tmp_path / "cli", lag_warn_messages=3)
    result = await run_cli(env, "group", "status", "--json", "--skill", "slow", "--wait", "20")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["connection"] == "online" and report["consumer_groups"] == [f"shoal.{group}.skill.slow"]
    rows = {r["partition"]: r for r in report["lag"]}
    assert set(rows) == {0, 1}
    assert (rows[0]["committed"], rows[0]["end"], rows[0]["messages"], rows[0]["warning"]) == (2, 7, 5, True)
    seconds = rows[0]["seconds"]
    assert seconds is not None and 0 <= seconds <= time.time() - waiting_since + 5
    # never committed, nothing there: a taker would start from the beginning, and nothing waits
    assert (rows[1]["committed"], rows[1]["end"], rows[1]["messages"], rows[1]["seconds"]) == (None, 0, 0, 0.0)
    assert report["warnings"] == 1 and report["limits"]["messages"] == 3

    table = await run_cli(env, "group", "status", "--skill", "slow", "--wait", "20")
    assert table.code == 0, table.stderr
    [line] = [line for line in table.stdout.splitlines() if "WARN" in line]  # partition 0 only
    assert queue in line and re.search(r"│\s*2\s*│\s*7\s*│\s*5\s*│", line), line
    assert "1 partition(s) over the lag limits (3 records" in table.stdout


async def test_group_status_says_when_the_broker_cannot_be_reached(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = member_env(_Unreachable(port), "nowhere", "observer", tmp_path / "cli")  # type: ignore[arg-type]
    result = await run_cli(env, "group", "status", "--json", "--wait", "2")
    assert result.code == 4, (result.stdout, result.stderr)
    assert "Cannot reach the Kafka group" in result.stderr


class _Unreachable:
    """Stands in for a broker: only its address is used, and nothing listens there."""

    def __init__(self, port: int) -> None:
        self.bootstrap = f"127.0.0.1:{port}"
