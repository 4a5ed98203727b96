"""The timeline: every step the agent takes, recorded before it is shown.

Each event is its own span in a W3C trace (one trace per turn); `parent_span_id` links a step to the
step that caused it, so one recursive query rebuilds a whole turn as a tree, and any event walks back
to the user message that started it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.timeline.db import Database
from core.timeline.ids import TraceContext, new_id, now_iso

log = logging.getLogger(__name__)

EVENT_COLUMNS = (
    "id, ts, session_id, correlation_id, trace_id, span_id, parent_span_id, kind, name, status, model, "
    "input_tokens, output_tokens, duration_ms, payload"
)
_INSERT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({', '.join('?' * 15)})"


@dataclass(frozen=True)
class Event:
    id: str
    ts: str
    session_id: str
    correlation_id: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    name: str = ""
    status: str = "ok"
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    duration_ms: float | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def trace(self) -> TraceContext:
        return TraceContext(self.trace_id, self.span_id, self.parent_span_id)

    def row(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.ts,
            self.session_id,
            self.correlation_id,
            self.trace_id,
            self.span_id,
            self.parent_span_id,
            self.kind,
            self.name,
            self.status,
            self.model,
            self.input_tokens,
            self.output_tokens,
            self.duration_ms,
            json.dumps(self.payload, ensure_ascii=False, default=str),
        )

    @classmethod
    def new(
        cls,
        kind: str,
        *,
        session_id: str,
        trace: TraceContext,
        correlation_id: str,
        name: str = "",
        status: str = "ok",
        payload: dict[str, Any] | None = None,
    ) -> Event:
        """An event not yet written, for callers that write several in one transaction (`insert_events`)."""
        return cls(
            id=new_id(),
            ts=now_iso(),
            session_id=session_id,
            correlation_id=correlation_id,
            trace_id=trace.trace_id,
            span_id=trace.span_id,
            parent_span_id=trace.parent_span_id,
            kind=kind,
            name=name,
            status=status,
            payload=payload or {},
        )

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Event:
        data = dict(row)
        data.pop("depth", None)
        data["payload"] = json.loads(data["payload"] or "{}")
        return cls(**data)


@dataclass
class EventNode:
    event: Event
    depth: int
    children: list[EventNode] = field(default_factory=list)


# Siblings sort by timestamp (fixed-width, microseconds), then id: causal order even within one millisecond.
_TREE_SQL = f"""
WITH RECURSIVE tree(id, depth, path) AS (
    SELECT id, 0, ts || id FROM events
     WHERE trace_id = :trace AND (parent_span_id IS NULL
           OR parent_span_id NOT IN (SELECT span_id FROM events WHERE trace_id = :trace))
    UNION ALL
    SELECT e.id, tree.depth + 1, tree.path || '/' || e.ts || e.id
      FROM events e JOIN events p ON e.parent_span_id = p.span_id AND p.trace_id = :trace
      JOIN tree ON tree.id = p.id
     WHERE e.trace_id = :trace
)
SELECT {", ".join("e." + c.strip() for c in EVENT_COLUMNS.split(","))}, tree.depth
  FROM tree JOIN events e ON e.id = tree.id ORDER BY tree.path
"""

_ORIGIN_SQL = f"""
WITH RECURSIVE chain(id, span_id, parent_span_id, trace_id, hops) AS (
    SELECT id, span_id, parent_span_id, trace_id, 0 FROM events WHERE id = :id
    UNION ALL
    SELECT e.id, e.span_id, e.parent_span_id, e.trace_id, chain.hops + 1
      FROM events e JOIN chain ON e.span_id = chain.parent_span_id AND e.trace_id = chain.trace_id
     WHERE chain.hops < 1000
)
SELECT {EVENT_COLUMNS} FROM events WHERE id IN (SELECT id FROM chain)
"""


class Timeline:
    """Append events and query them. All I/O runs on the database's writer thread."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._listeners: list[Callable[[Event], None]] = []

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` on the event loop after each event is committed (live views)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def record(
        self,
        kind: str,
        *,
        session_id: str,
        trace: TraceContext,
        correlation_id: str,
        name: str = "",
        status: str = "ok",
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        duration_ms: float | None = None,
        payload: dict[str, Any] | None = None,
        also: Callable[[sqlite3.Connection, Event], None] | None = None,
    ) -> Event:
        """Append one event; returns once it is committed. `also` runs in the same transaction (for
        example appending the chat message the event records), so both land or neither does."""
        event = Event(
            id=new_id(),
            ts=now_iso(),
            session_id=session_id,
            correlation_id=correlation_id,
            trace_id=trace.trace_id,
            span_id=trace.span_id,
            parent_span_id=trace.parent_span_id,
            kind=kind,
            name=name,
            status=status,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            duration_ms=None if duration_ms is None else round(duration_ms, 3),
            payload=payload or {},
        )
        row = event.row()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(_INSERT, row)
            if also is not None:
                also(conn, event)

        await self.db.write(write)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken view must not break the agent
                log.exception("timeline listener failed")
        return event

    @staticmethod
    def insert_events(conn: sqlite3.Connection, events: list[Event]) -> None:
        """Write events inside the caller's transaction; call `notify` once it has committed."""
        conn.executemany(_INSERT, [e.row() for e in events])

    def notify(self, events: list[Event]) -> None:
        for event in events:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("timeline listener failed")

    async def get(self, event_id: str) -> Event | None:
        def query(conn: sqlite3.Connection) -> Event | None:
            row = conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,)).fetchone()
            return Event.from_row(row) if row else None

        return await self.db.read(query)

    async def events(
        self,
        *,
        session_id: str | None = None,
        trace_id: str | None = None,
        kind: str | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        clauses, params = [], []
        for column, value in (("session_id", session_id), ("trace_id", trace_id), ("kind", kind)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {EVENT_COLUMNS} FROM events {where} ORDER BY ts, id LIMIT ?"

        def query(conn: sqlite3.Connection) -> list[Event]:
            return [Event.from_row(r) for r in conn.execute(sql, (*params, limit))]

        return await self.db.read(query)

    async def trace_tree(self, trace_id: str) -> list[EventNode]:
        """The whole turn as a tree, from one recursive query; returns the root nodes."""

        def query(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return list(conn.execute(_TREE_SQL, {"trace": trace_id}))

        rows = await self.db.read(query)
        return _build_tree(rows)

    async def walk_to_origin(self, event_id: str) -> list[Event]:
        """The chain of causes from `event_id` back to the root of its trace (event first, origin last)."""

        def query(conn: sqlite3.Connection) -> list[Event]:
            return [Event.from_row(r) for r in conn.execute(_ORIGIN_SQL, {"id": event_id})]

        chain = {e.span_id: e for e in await self.db.read(query)}
        start = next((e for e in chain.values() if e.id == event_id), None)
        ordered: list[Event] = []
        while start is not None:
            ordered.append(start)
            start = chain.get(start.parent_span_id or "")
        return ordered

    async def traces(self, session_id: str | None = None, limit: int = 50) -> list[Event]:
        """The first event of the most recent turns: a user message (a task from a peer starts one too, under
        the span that received it) or any other event that starts a trace here (a dispatched task)."""
        where = "AND session_id = ?" if session_id else ""
        params: tuple[Any, ...] = (session_id, limit) if session_id else (limit,)
        roots = "(parent_span_id IS NULL OR kind = 'user.message')"
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE {roots} {where} ORDER BY ts DESC, id DESC LIMIT ?"

        def query(conn: sqlite3.Connection) -> list[Event]:
            return [Event.from_row(r) for r in conn.execute(sql, params)]

        return await self.db.read(query)


def _build_tree(rows: list[sqlite3.Row]) -> list[EventNode]:
    roots: list[EventNode] = []
    stack: list[EventNode] = []
    for row in rows:
        node = EventNode(Event.from_row(row), row["depth"])
        while stack and stack[-1].depth >= node.depth:
            stack.pop()
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)
    return roots
