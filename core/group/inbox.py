"""Recording what arrives: one transaction per batch for the inbox rows, timeline events and audit records.

The inbox row (keyed by envelope id) is the idempotency check: a redelivered envelope inserts nothing and is
handed to the duplicate handlers instead. Dropped envelopes are recorded and audited in the same transaction,
so the audit trail shows every forgery and malformed record a member saw.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

from core.group import audit
from core.group.envelope import EnvelopeRejected
from core.group.intake import Incoming, Rejected
from core.group.outbox import OutRow, write_rows
from core.timeline.ids import TraceContext
from core.timeline.store import Event, Timeline

if TYPE_CHECKING:
    from core.group.node import GroupNode

log = logging.getLogger(__name__)


async def record_incoming(
    node: GroupNode, received: list[tuple[Incoming, Event]], rejected: list[Rejected]
) -> tuple[list[tuple[Incoming, Event]], list[tuple[Incoming, Event]]]:
    """One transaction: inbox rows (the idempotency check), timeline events (`received_event`, made by the
    caller) and their audit records. Returns the fresh pairs and the repeats."""
    dropped = [dropped_event(r) for r in rejected]
    for event in dropped:
        log.warning("group: dropped an envelope (%s): %s", event.payload["reason"], event.payload["detail"])

    def write(conn: sqlite3.Connection) -> tuple[list[int], list[OutRow]]:
        fresh = [n for n, (inc, ev) in enumerate(received) if inbox_insert(conn, inc, ev)]
        events = [received[n][1] for n in fresh] + dropped
        Timeline.insert_events(conn, events)
        records = [
            audit.envelope_record("received", received[n][1], None, summary=received[n][1].payload["envelope"])
            for n in fresh
        ]
        records += [audit.envelope_record("dropped", e, None) for e in dropped]
        return fresh, write_rows(conn, node.audit_items(list(zip(records, events, strict=True))))

    fresh_index, rows = await node.db.write(write)
    fresh = [received[n] for n in fresh_index]
    seen = set(fresh_index)
    duplicates = [received[n] for n in range(len(received)) if n not in seen]
    node.timeline.notify([e for _, e in fresh] + dropped)
    node.sender.hand(rows)
    return fresh, duplicates


def received_event(incoming: Incoming, session_for_task: dict[str, str]) -> Event:
    envelope = incoming.envelope
    trace = envelope.trace.child()  # a span of ours, under the sender's
    session_id = session_for_task.get(str(envelope.data.get("taskid", "")), "")
    payload = {"envelope": envelope.summary(incoming.topic), "data": envelope.data}
    return Event.new(
        "group.received",
        session_id=session_id,
        trace=trace,
        correlation_id=envelope.correlationid,
        name=envelope.type,
        payload=payload,
    )


def inbox_insert(conn: sqlite3.Connection, incoming: Incoming, event: Event) -> bool:
    """True when this envelope id is new here (a redelivery inserts nothing)."""
    envelope = incoming.envelope
    cursor = conn.execute(
        "INSERT OR IGNORE INTO group_inbox (envelope_id, type, sender, topic, partition, offset, received_at, "
        "event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            envelope.id,
            envelope.type,
            envelope.agentid,
            incoming.topic,
            incoming.partition,
            incoming.offset,
            event.ts,
            event.id,
        ),
    )
    return cursor.rowcount == 1


def rejected(reason: str, detail: str, attrs: dict[str, Any]) -> EnvelopeRejected:
    return EnvelopeRejected(reason, detail, attrs)


def dropped_event(rejected: Rejected) -> Event:
    error = rejected.error
    attrs = error.attrs
    try:
        remote = TraceContext.from_traceparent(str(attrs.get("traceparent", "")))
        trace = TraceContext(remote.trace_id, TraceContext.new_root().span_id, remote.span_id)
    except ValueError:
        trace = TraceContext.new_root()
    payload = {
        "reason": error.reason,
        "detail": error.detail[:500],
        "envelope": attrs,
        "topic": rejected.topic,
        "partition": rejected.partition,
        "offset": rejected.offset,
    }
    return Event.new(
        "group.dropped",
        session_id="",
        trace=trace,
        correlation_id=str(attrs.get("correlationid", "")),
        name=str(attrs.get("type", "")),
        status="error",
        payload=payload,
    )
