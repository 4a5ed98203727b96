"""Reading single records by offset with a short-lived consumer, to tell whether a broker still holds what a
reader read before an outage (a broker that lost its storage reuses the same offsets for new records)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any

from core.settings import GroupSettings

PROBE_TIMEOUT = 5.0


def digest(value: bytes | None) -> str:
    return hashlib.blake2b(value or b"", digest_size=16).hexdigest()


async def records_at(settings: GroupSettings, offsets: dict[Any, int]) -> dict[Any, str]:
    """partition -> digest of the record at the given offset, for those the broker still has. Raises when
    the broker cannot be asked (the caller stays suspicious and asks again later)."""
    if not offsets:
        return {}
    from aiokafka import AIOKafkaConsumer

    from core.group.kafka_config import consumer_kwargs

    consumer = AIOKafkaConsumer(**consumer_kwargs(settings, None, earliest=True))
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.topics()
        for tp, offset in offsets.items():
            consumer.seek(tp, offset)
        found: dict[Any, str] = {}
        waiting = dict(offsets)
        deadline = asyncio.get_running_loop().time() + PROBE_TIMEOUT
        while waiting and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(*waiting, timeout_ms=200)
            for tp, records in batch.items():
                record = next((r for r in records if r.offset == waiting.get(tp)), None)
                if record is not None:
                    found[tp] = digest(record.value)
                    waiting.pop(tp)
                elif records:  # the broker answered from elsewhere: nothing at that offset any more
                    waiting.pop(tp, None)
            for tp in list(waiting):
                highwater = consumer.highwater(tp)
                if highwater is not None and highwater <= waiting[tp]:
                    waiting.pop(tp)  # the partition is shorter now
        if waiting:
            raise TimeoutError(f"the broker did not answer for {len(waiting)} partition(s) within {PROBE_TIMEOUT:g} s")
        return found
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
