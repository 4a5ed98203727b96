"""Raw aiokafka baseline for bench/wire.py: request/response latency and consumer throughput with no Shoal code.

Both figures run against a real Tansu broker on loopback (tests/fixtures/kafka_broker.py) with the same client
settings the group tests use (TEST_CLIENT_SETTINGS: fetch_max_wait_ms 10, linger_ms 0, 2 s sessions), and both
sides use consumer groups with manual commits after handling, as a real app would.

- Ping-pong: topics ping and pong (1 partition each, created explicitly). An echo side consumes ping, produces the
  same key, value and headers to pong, then commits. The caller sends a ping (waiting for the ack), and a reader
  task resolves the caller's future when the pong with the same key arrives, then commits. Latency is from
  before the send to the caller resuming. Warm-up rounds (group joins included) are not measured. Echo and
  caller share one process and event loop.
- Ingest: `count` records of `payload_size` bytes are produced first (not timed). A group consumer joins with its
  partition paused (so nothing is prefetched before the clock starts), then is resumed and reads everything
  with getmany, committing after each batch. The rate is records / seconds from resume to the last commit.

Tansu's fetch wait is a sleep loop, so each hop costs about half of fetch_max_wait_ms: a ping-pong round has two
hops, which sets the floor of the latency here, not aiokafka.

Run: .venv/bin/python bench/wire_raw.py [--rounds 300] [--count 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from tests.fixtures.kafka_broker import (
    TEST_CLIENT_SETTINGS,
    TansuBroker,
    consumer_options,
    create_topics,
    producer_options,
)

REPLY_TIMEOUT = 10.0
STOP_POLL_MS = 100  # getmany returns as soon as records arrive; this only bounds how long a stop waits
INGEST_STALL_TIMEOUT = 30.0


def _run_id() -> str:
    return uuid.uuid4().hex[:8]


def _consumer(bootstrap: str, topic: str, group: str, client: dict[str, Any]) -> AIOKafkaConsumer:
    """A group member that commits by hand; 'earliest' so records sent before the join are not skipped."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **consumer_options(client),
    )


def _producer(bootstrap: str, client: dict[str, Any], **extra: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **{**producer_options(client), **extra})


# -- ping-pong ---------------------------------------------------------------------------------------------


async def _batches(consumer: AIOKafkaConsumer, stopping: asyncio.Event) -> AsyncIterator[list[ConsumerRecord]]:
    """Records batch by batch until `stopping` is set. Polling (rather than cancelling a blocked loop) lets a
    worker finish its commit before it exits: a cancelled commit runs on and fails once the broker stops."""
    while not stopping.is_set():
        for records in (await consumer.getmany(timeout_ms=STOP_POLL_MS)).values():
            yield records


async def _echo(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, pong: str, stopping: asyncio.Event) -> None:
    """Answer every ping on `pong`; commit only once the answer is acknowledged (at-least-once)."""
    async for records in _batches(consumer, stopping):
        for record in records:
            await producer.send_and_wait(pong, record.value, key=record.key, headers=list(record.headers))
        await consumer.commit()


async def _collect(
    consumer: AIOKafkaConsumer, waiting: dict[bytes, asyncio.Future[float]], stopping: asyncio.Event
) -> None:
    """Resolve the caller's future for each pong (matched by key), then commit."""
    async for records in _batches(consumer, stopping):
        for record in records:
            future = waiting.pop(record.key, None) if record.key is not None else None
            if future is not None and not future.done():
                future.set_result(time.perf_counter())
        await consumer.commit()


async def _await_reply(future: asyncio.Future[float], workers: list[asyncio.Task[None]]) -> None:
    """Wait for the pong, but fail fast (with its error) if the echo or reader task died."""
    watched: list[asyncio.Future[Any]] = [future, *workers]
    done, _ = await asyncio.wait(watched, timeout=REPLY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if future not in done:
        for task in done:
            task.result()
        raise TimeoutError(f"no pong within {REPLY_TIMEOUT} s")


async def _round(
    producer: AIOKafkaProducer,
    ping: str,
    key: bytes,
    payload: bytes,
    waiting: dict[bytes, asyncio.Future[float]],
    workers: list[asyncio.Task[None]],
) -> float:
    """One request/response; returns its latency in ms."""
    future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    waiting[key] = future
    started = time.perf_counter()
    await producer.send_and_wait(ping, payload, key=key, headers=[("kind", b"ping")])
    await _await_reply(future, workers)
    return (time.perf_counter() - started) * 1000


async def raw_ping_pong(
    bootstrap: str,
    rounds: int,
    client: dict[str, Any],
    *,
    warmup: int = 20,
    payload_size: int = 200,
    split: bool = False,
) -> list[float]:
    """Per-round latencies (ms) of `rounds` ping → echo → pong round trips, after `warmup` unmeasured rounds.
    With `split` the echo side runs in its own process (bench/wire_peer.py), as a peer on another machine would."""
    from bench.wire_peer import finish, spawn

    run = _run_id()
    ping, pong = f"bench.{run}.ping", f"bench.{run}.pong"
    await create_topics(bootstrap, [ping, pong], partitions=1)
    caller_in, caller_out = _consumer(bootstrap, pong, f"caller-{run}", client), _producer(bootstrap, client)
    clients: list[Any] = [caller_in, caller_out]
    peer = await spawn("raw", bootstrap, ping, pong, run) if split else None
    if not split:
        echo_in, echo_out = _consumer(bootstrap, ping, f"echo-{run}", client), _producer(bootstrap, client)
        clients += [echo_in, echo_out]
    waiting: dict[bytes, asyncio.Future[float]] = {}
    payload = b"x" * payload_size
    await asyncio.gather(*(c.start() for c in clients))
    stopping = asyncio.Event()
    workers = [asyncio.create_task(_collect(caller_in, waiting, stopping))]
    if not split:
        workers.append(asyncio.create_task(_echo(echo_in, echo_out, pong, stopping)))
    try:
        latencies = []
        for n in range(warmup + rounds):
            latency = await _round(caller_out, ping, f"r{n}".encode(), payload, waiting, workers)
            if n >= warmup:
                latencies.append(latency)
        return latencies
    finally:
        await _shutdown(stopping, workers, clients)
        if peer is not None:
            await finish(peer)


async def _shutdown(stopping: asyncio.Event, workers: list[asyncio.Task[None]], clients: list[Any]) -> None:
    """Let the workers finish what they are handling, then stop every client (errors were raised in rounds)."""
    stopping.set()
    await asyncio.wait(workers, timeout=REPLY_TIMEOUT)
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    await asyncio.gather(*(c.stop() for c in clients))


# -- ingest ------------------------------------------------------------------------------------------------


async def _fill(bootstrap: str, topic: str, count: int, payload_size: int, client: dict[str, Any]) -> None:
    """Produce `count` keyed records fast (batched): this part is set-up, not measured."""
    producer = _producer(bootstrap, client, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        payload = b"x" * payload_size
        sent = [await producer.send(topic, payload, key=str(i).encode()) for i in range(count)]
        await producer.flush()
        for future in sent:
            future.result()  # raises if any record was refused
    finally:
        await producer.stop()


class _PauseOnAssign(ConsumerRebalanceListener):
    """Pauses partitions as soon as they are assigned, so no fetch runs before the clock starts."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.assigned = asyncio.Event()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.consumer.pause(*assigned)
        if assigned:
            self.assigned.set()


async def _drain(consumer: AIOKafkaConsumer, count: int) -> None:
    """getmany until `count` records arrived, committing after every batch."""
    got = 0
    deadline = time.monotonic() + INGEST_STALL_TIMEOUT
    while got < count:
        batches = await consumer.getmany(timeout_ms=1000)
        if batches:
            got += sum(len(records) for records in batches.values())
            await consumer.commit()
            deadline = time.monotonic() + INGEST_STALL_TIMEOUT
        elif time.monotonic() > deadline:
            raise TimeoutError(f"ingest stalled at {got}/{count} records")


async def raw_ingest(bootstrap: str, count: int, client: dict[str, Any], payload_size: int = 600) -> float:
    """Records per second a raw aiokafka group consumer reads (and commits per batch) from a filled topic."""
    topic = f"bench.{_run_id()}.ingest"
    await create_topics(bootstrap, [topic], partitions=1)
    await _fill(bootstrap, topic, count, payload_size, client)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"ingest-{_run_id()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **consumer_options(client),
    )
    listener = _PauseOnAssign(consumer)
    await consumer.start()
    try:
        consumer.subscribe([topic], listener=listener)
        await asyncio.wait_for(listener.assigned.wait(), timeout=REPLY_TIMEOUT)
        started = time.perf_counter()
        consumer.resume(*consumer.assignment())
        await _drain(consumer, count)
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


# -- main --------------------------------------------------------------------------------------------------


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


async def bench(bootstrap: str, rounds: int, count: int) -> tuple[list[float], float]:
    client = dict(TEST_CLIENT_SETTINGS)
    latencies = await raw_ping_pong(bootstrap, rounds, client)
    rate = await raw_ingest(bootstrap, count, client)
    return latencies, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="measured ping-pong rounds")
    parser.add_argument("--count", type=int, default=20_000, help="records for the ingest run")
    args = parser.parse_args()
    with TansuBroker() as broker:  # started outside the loop: start() blocks for a few ms
        latencies, rate = asyncio.run(bench(broker.bootstrap, args.rounds, args.count))
    settings = ", ".join(f"{k}={v}" for k, v in TEST_CLIENT_SETTINGS.items())
    print(f"raw aiokafka on Tansu, loopback ({settings})")
    print(
        f"  ping-pong {len(latencies)} rounds: p50 {statistics.median(latencies):6.2f} ms   "
        f"p99 {percentile(latencies, 99):6.2f} ms   max {max(latencies):6.2f} ms"
    )
    print(f"  ingest {args.count} x 600 B, group consumer, commit per batch: {rate:,.0f} records/s")


if __name__ == "__main__":
    main()
