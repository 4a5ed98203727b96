"""The produce/consume probe: create a scratch topic, produce one record and read it back, the path every
task takes. The topic is deleted afterwards where the broker allows it; one that stays (no DELETE permission,
deletion disabled) keeps a one-hour retention, and the check says how to remove it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from core.group import kafka_config as kc
from core.group import topics as tp
from core.group.kshark.layout import probe_prefix
from core.group.kshark.report import Budget, Failed, Passed

if TYPE_CHECKING:
    from core.settings import GroupSettings

CLEANUP_LIMIT = 2.0


async def best_effort(budget: Budget, *steps: Awaitable[Any]) -> list[Any]:
    """Cleanup steps, each bounded (at least briefly, even when the run's budget is spent): a hung close must
    not hang the report. Returns each step's result, or the exception it ended with."""
    results: list[Any] = []
    for step in steps:
        try:
            results.append(await asyncio.wait_for(step, max(0.5, min(CLEANUP_LIMIT, budget.remaining()))))
        except Exception as exc:
            results.append(exc)
    return results


async def round_trip(manager: tp.TopicManager, settings: GroupSettings, budget: Budget) -> Passed:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    name = f"{probe_prefix(settings)}{uuid.uuid4().hex[:12]}"
    await manager.ensure([tp.TopicSpec(name, 1, tp.HOUR_MS)])
    producer = AIOKafkaProducer(**kc.producer_kwargs(settings))
    consumer = AIOKafkaConsumer(**kc.consumer_kwargs(settings, None, earliest=True))
    deleted: Any = None
    try:
        await producer.start()
        await consumer.start()
        consumer.assign([TopicPartition(name, 0)])
        token = uuid.uuid4().hex.encode()
        start = time.monotonic()
        await producer.send_and_wait(name, token, key=b"probe")
        produced = time.monotonic()
        while (await consumer.getone()).value != token:
            pass
        done = time.monotonic()
    finally:
        *_, deleted = await best_effort(budget, producer.stop(), consumer.stop(), manager.delete([name]))
    trip, send = (done - start) * 1000, (produced - start) * 1000
    detail = f"round trip {trip:.1f} ms (produce {send:.1f} ms) via {name}"
    error = deleted.get(name) if isinstance(deleted, dict) else kc.error_text(deleted)
    data = {"topic": name, "round_trip_ms": round(trip, 2), "produce_ms": round(send, 2), "deleted": error is None}
    if error is not None:
        raise Failed(
            f"{detail}; the scratch topic stays (delete refused: {error})",
            f"Harmless (it expires after an hour); to remove it now: kafka-topics --delete --topic {name}.",
            "warn",
            data,
        )
    return Passed(detail, data)
