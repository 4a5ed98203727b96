"""The group's consumer groups (`shoal.<name>.*`): their state, members, and lag per partition.

Lag is the committed offset against the partition's high watermark. Two Tansu limits shape how both are read
(docs/kshark.md, tests/fixtures/kafka_broker.py): `list_consumer_group_offsets` without `partitions=` drops the
connection, so offsets are asked for every partition of the group's topics by name; and `end_offsets()` is
wrong after multi-record batches, so the high watermark comes from a fetch (a consumer without a group, placed
at the furthest committed offset: every fetch answer carries the high watermark), which is right on every
broker. Member assignments are decoded when the broker returns them (Kafka does; Tansu sends none).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.group import kafka_config as kc
from core.group.kshark.probe import best_effort
from core.group.kshark.report import Budget, Check, Status

if TYPE_CHECKING:
    from core.settings import GroupSettings

NAME = "Consumer groups"
MAX_LINES = 20  # consumer groups reported one per line; the rest are summed up in one more line
SHOWN = 6  # lagging partitions named in a line
FETCH_WAIT_MS = 200


@dataclass
class GroupFacts:
    group: str
    state: str = ""
    members: list[dict[str, Any]] = field(default_factory=list)
    partitions: list[dict[str, Any]] = field(default_factory=list)  # topic, partition, committed, highwater, lag

    @property
    def is_queue(self) -> bool:
        """A skill's work queue (members subscribe); an agent's inbox group reads by assignment, so it never
        lists members and its lag needs no taker to go down."""
        return ".skill." in self.group

    @property
    def lag(self) -> int:
        return sum(p["lag"] for p in self.partitions if p["lag"] is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "state": self.state,
            "members": self.members,
            "lag": self.lag,
            "partitions": self.partitions,
        }


def prefix(settings: GroupSettings) -> str:
    return f"shoal.{settings.name}."


def _assignment(raw: bytes) -> list[str]:
    if not raw:
        return []
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    try:
        decoded = ConsumerProtocolMemberAssignment.decode(raw)
    except Exception:
        return []
    return [f"{topic}[{p}]" for topic, parts in decoded.assignment for p in parts]


async def _describe(admin: Any, ids: list[str]) -> dict[str, GroupFacts]:
    """One DescribeGroups request per group: Tansu garbles an answer about several (its second entry comes
    shifted by one field, and aiokafka drops the connection on it)."""
    facts = {gid: GroupFacts(gid) for gid in ids}
    responses = await asyncio.gather(*(admin.describe_consumer_groups([gid]) for gid in ids))
    for response in (r for batch in responses for r in batch):
        for entry in response.groups:
            error_code, gid, state, _ptype, _protocol, members = entry[:6]
            if gid not in facts:
                continue
            facts[gid].state = state if not error_code else f"error {error_code}"
            facts[gid].members = [
                {"member_id": m[0], "client_id": m[1], "host": m[2], "assignment": _assignment(m[-1])} for m in members
            ]
    return facts


async def _committed(admin: Any, gid: str, partitions: list[Any]) -> dict[Any, int]:
    """Committed offsets of `gid` on `partitions` (always named: see the module docstring); -1 means none."""
    offsets = await admin.list_consumer_group_offsets(gid, partitions=partitions)
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def _highwaters(settings: GroupSettings, starts: dict[Any, int], budget: Budget) -> dict[Any, int]:
    """High watermark per partition from fetch answers (fetching from `starts`), waiting at most half a step:
    partitions that did not answer by then are reported without one."""
    if not starts:
        return {}
    from aiokafka import AIOKafkaConsumer

    kwargs = {**kc.consumer_kwargs(settings, None, earliest=True), "fetch_max_wait_ms": FETCH_WAIT_MS}
    consumer = AIOKafkaConsumer(**kwargs)
    try:
        await consumer.start()
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        found: dict[Any, int] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget.step() / 2  # leave time to report what came back
        while len(found) < len(starts) and loop.time() < deadline:
            await consumer.getmany(timeout_ms=FETCH_WAIT_MS)
            for tp in starts:
                if (highwater := consumer.highwater(tp)) is not None:
                    found[tp] = highwater
        return found
    finally:
        await best_effort(budget, consumer.stop())


async def collect(
    admin: Any, settings: GroupSettings, topic_partitions: dict[str, int], budget: Budget
) -> list[GroupFacts]:
    """Every `shoal.<name>.*` consumer group with its members and, for partitions it committed on, its lag."""
    from aiokafka.structs import TopicPartition

    ids = sorted(gid for gid, *_ in await admin.list_consumer_groups() if str(gid).startswith(prefix(settings)))
    if not ids:
        return []
    facts = await _describe(admin, ids)
    partitions = [TopicPartition(t, p) for t, count in sorted(topic_partitions.items()) for p in range(count)]
    offsets = await asyncio.gather(*(_committed(admin, gid, partitions) for gid in ids)) if partitions else []
    committed = dict(zip(ids, offsets, strict=False))
    starts: dict[Any, int] = {}  # fetch from the furthest commit: the least data to get the high watermark
    for per_group in committed.values():
        for tp, offset in per_group.items():
            starts[tp] = max(offset, starts.get(tp, offset))
    highwaters = await _highwaters(settings, starts, budget)
    for gid, per_group in committed.items():
        for tp, offset in sorted(per_group.items()):
            highwater = highwaters.get(tp)
            lag = max(0, highwater - offset) if highwater is not None else None
            facts[gid].partitions.append(
                {"topic": tp.topic, "partition": tp.partition, "committed": offset, "highwater": highwater, "lag": lag}
            )
    return [facts[gid] for gid in ids]


def _judge(facts: GroupFacts) -> tuple[Status, str]:
    """(status, hint): a group the broker cannot describe, offsets past the end (the broker lost records),
    records waiting with nobody reading, or partitions whose high watermark never came."""
    parts = facts.partitions
    if facts.state.startswith("error"):
        return "warn", "The broker could not describe this group: check the principal's DESCRIBE right and its logs."
    if any(p["highwater"] is not None and p["committed"] > p["highwater"] for p in parts):
        return "warn", (
            "The broker holds fewer records than this group committed: it lost data (a restart with in-memory "
            "storage?). Members start again from the beginning; check the broker's storage."
        )
    if facts.lag and not facts.members and facts.is_queue:
        return "warn", "Tasks are waiting and no member takes them: start a member that serves this skill."
    if any(p["lag"] is None for p in parts):
        return "warn", "A fetch for the high watermark did not answer in time: run again with a larger --timeout."
    return "ok", ""


def _line(facts: GroupFacts, topic_prefix: str, duration_ms: float) -> Check:
    parts = facts.partitions
    lagging = [f"{p['topic'].removeprefix(topic_prefix)}[{p['partition']}]={p['lag']}" for p in parts if p["lag"]]
    who = f"{len(facts.members)} member(s)" if facts.is_queue or facts.members else "reads by assignment"
    detail = f"{facts.state or 'unknown state'}, {who}, lag {facts.lag}"
    detail += f" over {len(parts)} committed partition(s)"
    if lagging:
        detail += f" ({', '.join(lagging[:SHOWN])}{' …' if len(lagging) > SHOWN else ''})"
    status, hint = _judge(facts)
    return Check(
        f"Consumer group {facts.group}", status, detail, hint, duration_ms, "consumer_group", "", facts.to_dict()
    )


def lines(found: list[GroupFacts], settings: GroupSettings, duration_ms: float) -> list[Check]:
    """One line per consumer group (at most MAX_LINES, then one summing up the rest); one line when none."""
    if not found:
        return [
            Check(
                NAME,
                "warn",
                f"no consumer groups {prefix(settings)}* yet: no member of group {settings.name!r} has joined",
                "Nothing to do for a new group; if peers should be running, check group.name matches theirs.",
                duration_ms,
                "consumer_group",
                data={"groups": []},
            )
        ]
    topic_prefix = f"group.{settings.name}."
    out = [_line(facts, topic_prefix, duration_ms) for facts in found[:MAX_LINES]]
    rest = found[MAX_LINES:]
    if rest:
        detail = f"{len(rest)} more consumer group(s), lag {sum(f.lag for f in rest)} in all (see --json)"
        more = {"groups": [f.to_dict() for f in rest]}
        out.append(Check(f"{NAME} (more)", "ok", detail, "", duration_ms, "consumer_group", data=more))
    return out
