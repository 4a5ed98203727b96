"""Sending for a group node: sign, record and queue envelopes, their audit records and trace spans.

Everything a node says goes through `commit`: one SQLite transaction writes the outbox rows, the timeline
events and whatever the caller adds (`also`), then the rows are handed to the outbox sender in memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import UserError
from core.group import audit
from core.group.claimcheck import seal
from core.group.envelope import (
    AUDIT_RECORD,
    MEMORY_ITEM,
    TASK_PROGRESS,
    TASK_REPORT,
    TASK_REQUEST,
    TASK_RESULT,
    TRACE_SPAN,
    Envelope,
    make,
)
from core.group.outbox import OutItem, OutRow, write_rows
from core.timeline.ids import TraceContext, new_id
from core.timeline.store import Event, Timeline

if TYPE_CHECKING:
    from core.group.artifacts import ArtifactStore
    from core.group.identity import Identity
    from core.group.outbox import OutboxSender
    from core.group.zones import Zones
    from core.settings import GroupSettings
    from core.timeline.db import Database

Also = Callable[[sqlite3.Connection], None]
# What a private zone seals: the work and the knowledge. Roster cards, membership and claims stay readable to
# every member (they say who is there and who works on what, never the content).
SEALED_TYPES = frozenset({TASK_REQUEST, TASK_PROGRESS, TASK_RESULT, TASK_REPORT, MEMORY_ITEM})


class Publisher:
    """Mixed into `GroupNode`, which provides these attributes."""

    settings: GroupSettings
    db: Database
    timeline: Timeline
    identity: Identity | None
    store: ArtifactStore | None
    sender: OutboxSender
    zones: Zones | None

    @property
    def group_name(self) -> str:
        return self.settings.name

    @property
    def agent_id(self) -> str:
        assert self.identity is not None, "start() the node first"
        return self.identity.agent_id

    def topic(self, suffix: str) -> str:
        from core.group.topics import topic

        return topic(self.group_name, suffix)

    async def publish(
        self, event_type: str, data: dict[str, Any], *, also: Also | None = None, **options: Any
    ) -> tuple[Envelope, Event | None]:
        """Sign an envelope and queue it (`options` as for `prepare`). With `record`, its timeline event, its
        audit record and `also` are written in the same transaction as the outbox row, so they never disagree."""
        out = await self.prepare(event_type, data, **options)
        await self.commit([out], also)
        return out.envelope, out.event

    async def prepare(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        suffix: str,
        key: str,
        correlationid: str,
        parent: TraceContext | None = None,
        session_id: str = "",
        causationid: str | None = None,
        recipient: str | None = None,
        record: bool = True,
        zone: str = "",
    ) -> Outgoing:
        """A signed envelope with its outbox items and timeline event, not yet written (see `commit`).
        `zone`: the envelope's zone (default group.zone); a private zone's payload is sealed for its members."""
        assert self.identity is not None, "start() the node first"
        trace = parent.child() if parent else TraceContext.new_root()
        zone = zone or self.settings.zone
        wire_data, envelope_id = self._sealed(event_type, data, zone)
        dataref = await seal(wire_data, self.store, self.settings.max_inline_bytes)
        envelope = make(
            self.identity,
            self.group_name,
            event_type,
            None if dataref else wire_data,
            correlationid=correlationid,
            trace=trace,
            zone=zone,
            causationid=causationid,
            recipient=recipient,
            dataref=dataref,
            envelope_id=envelope_id,
        )
        topic_name = self.topic(suffix)
        event, records = None, []
        if record:
            payload = {"envelope": envelope.summary(topic_name), "data": data}
            event = Event.new(
                "group.sent",
                session_id=session_id,
                trace=trace,
                correlation_id=correlationid,
                name=event_type,
                payload=payload,
            )
            records.append((audit.envelope_record("sent", event, envelope, topic=topic_name), event))
        return Outgoing(OutItem(envelope, topic_name, key), event, records)

    def _sealed(self, event_type: str, data: dict[str, Any], zone: str) -> tuple[dict[str, Any], str | None]:
        """The payload as it goes on the wire: sealed for the members of a private zone (with the envelope id
        the ciphertext is bound to), as it is otherwise."""
        zones = self.zones
        if zones is None or event_type not in SEALED_TYPES:
            return data, None
        if not zones.is_private(zone):
            if zones.membership.enforced and zones.get(zone) is None:  # never send in plaintext by mistake
                raise UserError(
                    f"Zone {zone!r} is not defined in this group (yet).",
                    "See the zones (shoal get zones); the founder defines one with shoal zone create.",
                )
            return data, None
        from core.group import zonecrypt

        if not zones.allows(self.agent_id, zone):
            raise UserError(f"This agent is not in zone {zone!r}.", "The group's founder adds it: shoal zone add")
        recipients = zones.recipients(zone)
        if not recipients:
            raise UserError(f"No member of zone {zone!r} has an encryption key yet.", "Members rejoin the group.")
        envelope_id = new_id()
        identity = {
            "id": envelope_id,
            "type": event_type,
            "zone": zone,
            "agentid": self.agent_id,
            "group": self.group_name,
        }
        aad = zonecrypt.aad_for(identity)
        return {"sealed": zonecrypt.seal(data, recipients=recipients, aad=aad)}, envelope_id

    async def commit(self, outgoing: list[Outgoing], also: Also | None = None) -> None:
        """Write envelopes (in order), their events and `also` in one transaction, then hand them to the sender:
        envelopes committed together reach the producer together, so a reader tends to get them in one fetch."""
        items = [out.item for out in outgoing]
        items += self.audit_items([pair for out in outgoing for pair in out.audit])
        events = [out.event for out in outgoing if out.event is not None]
        rows = await self.db.write(_writer(items, events, also))
        if events:
            self.timeline.notify(events)
        self.sender.hand(rows)

    def audit_items(self, records: list[tuple[dict[str, Any], Event]]) -> list[OutItem]:
        """One audit envelope per correlation id (the trail is read per correlation), anchored at the
        span of its first record."""
        by_corr: dict[str, list[tuple[dict[str, Any], Event]]] = {}
        for pair in records:
            by_corr.setdefault(pair[1].correlation_id, []).append(pair)
        return [self.audit_item([r for r, _ in pairs], pairs[0][1]) for pairs in by_corr.values()]

    def audit_item(self, records: list[dict[str, Any]], anchor: Event) -> OutItem:
        assert self.identity is not None
        envelope = make(
            self.identity,
            self.group_name,
            AUDIT_RECORD,
            {"records": records},
            correlationid=anchor.correlation_id,
            trace=anchor.trace.child(),
            zone=self.settings.zone,
        )
        return OutItem(envelope, self.topic("audit"), self.agent_id)

    async def publish_steps(self, events: list[Event]) -> None:
        """Audit records and trace spans for local work done for the group (LLM and tool calls)."""
        steps = [e for e in events if e.kind in audit.STEP_KINDS]
        if not steps or self.identity is None:
            return
        items = [self.audit_item([audit.step_record(e) for e in steps], steps[0])]
        for event in steps:
            span = make(
                self.identity,
                self.group_name,
                TRACE_SPAN,
                audit.span_data(event),
                correlationid=event.correlation_id,
                trace=event.trace,
                zone=self.settings.zone,
            )
            items.append(OutItem(span, self.topic("traces"), event.trace_id))
        self.sender.hand(await self.db.write(_writer(items, [], None)))


@dataclass(frozen=True)
class Outgoing:
    """An envelope ready to commit: its outbox item, its timeline event and audit record (if recorded)."""

    item: OutItem
    event: Event | None
    audit: list[tuple[dict[str, Any], Event]]

    @property
    def envelope(self) -> Envelope:
        return self.item.envelope


def _writer(
    items: list[OutItem], events: list[Event], also: Also | None
) -> Callable[[sqlite3.Connection], list[OutRow]]:
    def write(conn: sqlite3.Connection) -> list[OutRow]:
        if events:
            Timeline.insert_events(conn, events)
        rows = write_rows(conn, items)
        if also is not None:
            also(conn)
        return rows

    return write
