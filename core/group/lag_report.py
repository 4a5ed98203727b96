"""Committed lag of consumer groups, read from the broker (what `shoal group status` shows).

An agent's own figures (core/group/lag.py) live in its process; from outside, the broker tells how far each
of its consumer groups is: per partition, the group's committed offset against the partition's end. So a
command can watch a headless agent on this machine, or any agent given its id, without joining its groups.

How each figure is read, and why (Tansu, and some managed brokers, differ from Apache Kafka here):
- committed offsets: `list_consumer_group_offsets(group, partitions=[...])` with the partitions named (listing
  all of a group's offsets drops the connection on Tansu);
- the partition's end: a consumer's high watermark after a fetch (ListOffsets `latest`, behind both
  `end_offsets()` and seek-to-end, answers the last batch's base offset + 1 on Tansu);
- seconds behind: the timestamp of the first unread record (the one at the committed offset), read with the
  same fetch; `now - timestamp`, 0 when caught up.

A skill queue's group that has committed nothing on a partition reads it from the beginning when a taker
joins (so everything there is waiting); an agent's inbox group that has committed nothing there starts at the
end, so those partitions (and the replayed roster and control topics, never committed) are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from core.group.lag import over_limits
from core.group.topics import skill_topic, topic
from core.settings import GroupSettings

FETCH_TIMEOUT = 10.0


@dataclass(frozen=True)
class ConsumerGroup:
    id: str
    kind: str  # agent | skill
    topics: list[str]
    from_start: bool  # where a member starts on a partition this group never committed


@dataclass(frozen=True)
class CommittedLag:
    group: str
    kind: str
    topic: str
    partition: int
    committed: int | None
    end: int | None  # the high watermark (None: the broker did not answer in time)
    messages: int | None
    seconds: float | None
    warning: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agent_group(settings: GroupSettings, agent_id: str, inbox: tuple[str, ...]) -> ConsumerGroup:
    """An agent's inbox group (its topics: `inbox`, the suffixes its inbox reader commits)."""
    topics = [topic(settings.name, suffix) for suffix in inbox]
    return ConsumerGroup(f"shoal.{settings.name}.agent.{agent_id}", "agent", topics, from_start=False)


def skill_group(settings: GroupSettings, skill: str) -> ConsumerGroup:
    """A skill queue's group, shared by every agent that serves the skill."""
    return ConsumerGroup(f"shoal.{settings.name}.skill.{skill}", "skill", [skill_topic(settings.name, skill)], True)


async def committed_lag(
    settings: GroupSettings,
    groups: list[ConsumerGroup],
    *,
    timeout: float = FETCH_TIMEOUT,
    wall: Callable[[], float] = time.time,
) -> list[CommittedLag]:
    """One row per partition of each group's topics (topics that do not exist are skipped, never created)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    from core.group.kafka_config import admin_kwargs, consumer_kwargs

    admin = AIOKafkaAdminClient(**admin_kwargs(settings))
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings, None, earliest=True))
    await admin.start()
    try:
        await consumer.start()
        existing = await consumer.topics()
        found: list[tuple[ConsumerGroup, Any, int | None]] = []  # group, partition, committed offset
        for group in groups:
            partitions = _partitions(consumer, [t for t in group.topics if t in existing])
            if not partitions:
                continue
            offsets = await admin.list_consumer_group_offsets(group.id, partitions=partitions)
            for tp in partitions:
                meta = offsets.get(tp)
                committed = meta.offset if meta is not None and meta.offset >= 0 else None
                if committed is not None or group.from_start:
                    found.append((group, tp, committed))
        beginnings = await _beginnings(consumer, [tp for _, tp, committed in found if committed is None])
        starts = [(g, tp, c, beginnings.get(tp, 0) if c is None else c) for g, tp, c in found]
        heads = await _first_records(consumer, {(tp, start) for _, tp, _, start in starts}, timeout)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        with contextlib.suppress(Exception):
            await admin.close()
    now = wall()
    rows = [_row(settings, g, tp, c, start, heads.get((tp, start)), now) for g, tp, c, start in starts]
    return sorted(rows, key=lambda r: (r.kind, r.group, r.topic, r.partition))


def _partitions(consumer: Any, topics: list[str]) -> list[Any]:
    from aiokafka import TopicPartition

    return [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]


async def _beginnings(consumer: Any, partitions: list[Any]) -> dict[Any, int]:
    """The first offset still on each partition (ListOffsets `earliest` is right on Tansu)."""
    if not partitions:
        return {}
    return dict(await consumer.beginning_offsets(partitions))


async def _first_records(
    consumer: Any, wanted: set[tuple[Any, int]], timeout: float
) -> dict[tuple[Any, int], tuple[int | None, int | None]]:
    """(partition, offset) -> (high watermark, timestamp ms of the first record at or after the offset). One
    fetch per distinct offset of a partition (two groups on one topic read it at two offsets)."""
    out: dict[tuple[Any, int], tuple[int | None, int | None]] = {}
    pending = sorted(wanted, key=lambda pair: pair[1])
    while pending:
        round_: dict[Any, int] = {}
        for tp, offset in pending:
            round_.setdefault(tp, offset)
        pending = [(tp, offset) for tp, offset in pending if round_[tp] != offset]
        for tp, head in (await _fetch_at(consumer, round_, timeout)).items():
            out[(tp, round_[tp])] = head
    return out


async def _fetch_at(consumer: Any, offsets: dict[Any, int], timeout: float) -> dict[Any, tuple[int | None, int | None]]:
    """Seek each partition to its offset and fetch until its high watermark is known and its first record
    there (if any) is read. Partitions the broker does not answer for within `timeout` get (None, None)."""
    consumer.assign(list(offsets))
    for tp, offset in offsets.items():
        consumer.seek(tp, offset)
    found: dict[Any, tuple[int | None, int | None]] = {}
    waiting = dict(offsets)
    deadline = asyncio.get_running_loop().time() + timeout
    while waiting and asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(*waiting, timeout_ms=200)
        for tp, records in batch.items():
            record = next((r for r in records if r.offset >= waiting.get(tp, 0)), None)
            if record is not None and tp in waiting:
                found[tp] = (consumer.highwater(tp), record.timestamp)
                waiting.pop(tp)
        for tp in list(waiting):
            highwater = consumer.highwater(tp)
            if highwater is not None and highwater <= waiting[tp]:  # nothing there (or a shorter partition)
                found[tp] = (highwater, None)
                waiting.pop(tp)
    found.update({tp: (None, None) for tp in waiting})
    return found


def _row(
    settings: GroupSettings,
    group: ConsumerGroup,
    tp: Any,
    committed: int | None,
    start: int,
    head: tuple[int | None, int | None] | None,
    now: float,
) -> CommittedLag:
    end, timestamp = head if head is not None else (None, None)
    messages = None if end is None else max(0, end - start)
    if messages == 0:
        seconds: float | None = 0.0
    elif messages and timestamp and timestamp > 0:
        seconds = max(0.0, round(now - timestamp / 1000, 3))
    else:
        seconds = None
    warning = messages is not None and over_limits(
        messages, seconds, settings.lag_warn_messages, settings.lag_warn_seconds
    )
    return CommittedLag(group.id, group.kind, tp.topic, tp.partition, committed, end, messages, seconds, warning)
