"""`shoal trace`: rebuild one decision across agents from the audit topic alone.

Each audit record names its span (in `traceparent`) and its parent span, whatever agent wrote it. Records
of one correlation id, from every agent, link into one tree: who asked, what crossed the wire, and which
LLM and tool calls ran where. Needs nothing but read access to the audit and announce topics.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from core.errors import NetworkError
from core.group.envelope import AUDIT_RECORD, ROSTER_ANNOUNCE, EnvelopeRejected, parse
from core.group.topics import topic
from core.settings import GroupSettings


@dataclass
class TraceNode:
    record: dict[str, Any]
    agentid: str
    agent: str
    span_id: str
    children: list[TraceNode] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agentid": self.agentid,
            "agent": self.agent,
            "spanid": self.span_id,
            **self.record,
            "children": [c.to_dict() for c in self.children],
        }


def span_of(traceparent: str) -> str:
    parts = str(traceparent).split("-")
    return parts[2] if len(parts) == 4 else ""


def build_tree(records: list[tuple[str, dict[str, Any]]], names: dict[str, str]) -> list[TraceNode]:
    """`records` are (agentid, record) pairs; returns the roots, children in time order."""
    nodes: dict[str, TraceNode] = {}
    order: list[TraceNode] = []
    for agentid, record in sorted(records, key=lambda pair: str(pair[1].get("at", ""))):
        span = span_of(record.get("traceparent", ""))
        if not span or span in nodes:
            continue
        node = TraceNode(record, agentid, names.get(agentid, agentid[:8]), span)
        nodes[span] = node
        order.append(node)
    roots: list[TraceNode] = []
    for node in order:
        parent = nodes.get(str(node.record.get("parentspanid") or ""))
        (parent.children if parent is not None and parent is not node else roots).append(node)
    return roots


async def collect(settings: GroupSettings, correlation: str, *, timeout: float = 10.0) -> tuple[list[Any], dict]:
    """Read the audit and announce topics from the start; return the (agentid, record) pairs of one
    correlation id (prefix accepted) and the agent names. Envelopes that fail verification are skipped."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from core.group.kafka_config import consumer_kwargs
    from core.group.roster import Roster

    roster = Roster()
    records: list[tuple[str, dict[str, Any]]] = []
    kwargs = consumer_kwargs(settings, None, earliest=True)
    kwargs["group_id"] = None
    consumer = AIOKafkaConsumer(**kwargs)
    seen_names: dict[str, str] = {}
    roster.add_listener(lambda _change, member: seen_names.__setitem__(member.agentid, member.name))
    await consumer.start()
    try:
        await consumer.topics()
        names = [topic(settings.name, "announce"), topic(settings.name, "audit")]
        partitions = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not partitions:
            return [], {}
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        audits: list[Any] = []
        try:
            async with asyncio.timeout(timeout):
                caught_up_rounds = 0
                # Caught up twice in a row, not "an empty fetch": live members keep appending heartbeats
                # to the announce topic, so a fetch is rarely empty. Highwater, not end_offsets: some
                # brokers (Tansu) misreport the latter.
                while caught_up_rounds < 2:
                    batch = await consumer.getmany(timeout_ms=300, max_records=2000)
                    for records_ in batch.values():
                        for record in records_:
                            _take(record.value, roster, audits)
                    positions = [await consumer.position(tp) for tp in partitions]
                    caught_up = all(
                        consumer.highwater(tp) is not None and pos >= consumer.highwater(tp)
                        for tp, pos in zip(partitions, positions, strict=True)
                    )
                    caught_up_rounds = caught_up_rounds + 1 if caught_up else 0
        except TimeoutError:
            raise NetworkError(
                f"Reading the audit topic of group {settings.name} did not finish within {timeout:g} s.",
                "Check the broker, or try again with a longer --timeout.",
            ) from None
        for envelope in audits:
            key = roster.key_for(envelope.agentid)
            if key is None or not envelope.verify(key):
                continue
            for item in envelope.data.get("records", []):
                if isinstance(item, dict) and str(item.get("correlationid", "")).startswith(correlation):
                    records.append((envelope.agentid, item))
        return records, seen_names
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


def _take(value: bytes | None, roster: Any, audits: list[Any]) -> None:
    try:
        envelope = parse(value)
    except EnvelopeRejected:
        return
    if envelope.type == ROSTER_ANNOUNCE:
        with contextlib.suppress(ValueError):
            roster.apply(envelope)
    elif envelope.type == AUDIT_RECORD:
        audits.append(envelope)
