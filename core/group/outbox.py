"""The durable outbox: every envelope is written to SQLite first, then sent.

Writing the timeline event and the outbox row in one transaction means what the timeline says was sent is
exactly what will be sent, even across a crash; with the broker down the agent keeps working and the rows
wait. The sender drains the table in order (so per-key order holds), deletes rows once the broker has
acknowledged them, and backs off while the broker is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.errors import ShoalError, classify
from core.group.envelope import Envelope
from core.timeline.db import Database
from core.timeline.ids import now_iso

log = logging.getLogger(__name__)
BATCH = 200
MAX_BACKOFF = 5.0


@dataclass(frozen=True)
class OutItem:
    """One record to send: an envelope, where to, and with which key."""

    envelope: Envelope
    topic: str
    key: str


@dataclass(frozen=True)
class OutRow:
    seq: int
    envelope_id: str
    topic: str
    key: str | None
    value: bytes
    headers: list[tuple[str, bytes]]


def write_rows(conn: sqlite3.Connection, items: list[OutItem]) -> None:
    """Append to the outbox inside the caller's transaction (used as a `Timeline.record(also=...)`)."""
    now = now_iso()
    conn.executemany(
        "INSERT INTO group_outbox (envelope_id, topic, key, value, headers, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                item.envelope.id,
                item.topic,
                item.key,
                item.envelope.to_bytes(),
                json.dumps([[k, v.decode("utf-8", "replace")] for k, v in item.envelope.headers()]),
                now,
            )
            for item in items
        ],
    )


class Outbox:
    """Queries over the outbox table; all I/O on the database thread."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def pending(self, after: int, limit: int = BATCH) -> list[OutRow]:
        def query(conn: sqlite3.Connection) -> list[OutRow]:
            rows = conn.execute(
                "SELECT seq, envelope_id, topic, key, value, headers FROM group_outbox WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (after, limit),
            )
            return [
                OutRow(r[0], r[1], r[2], r[3], bytes(r[4]), [(k, v.encode("utf-8")) for k, v in json.loads(r[5])])
                for r in rows
            ]

        return await self.db.read(query)

    async def delete(self, seqs: list[int]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM group_outbox WHERE seq = ?", [(s,) for s in seqs])

        await self.db.write(write)

    async def note_failure(self, seq: int, error: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE group_outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?", (error[:500], seq)
            )

        await self.db.write(write)

    async def depth(self) -> int:
        return int(await self.db.read(lambda c: c.execute("SELECT count(*) FROM group_outbox").fetchone()[0]))


Send = Callable[[str, str | None, bytes, list[tuple[str, bytes]]], Awaitable[Any]]


class OutboxSender:
    """Drains the outbox through `send(topic, key, value, headers)` (which returns once acknowledged).

    `recover()` runs before retrying after a failure: the node re-creates topics there, since a broker that
    restarted may have forgotten them (and producing to a missing topic would auto-create it wrongly).
    """

    def __init__(
        self,
        outbox: Outbox,
        send: Send,
        recover: Callable[[], Awaitable[None]],
        on_state: Callable[[bool, ShoalError | None], None] = lambda ok, err: None,
    ) -> None:
        self.outbox = outbox
        self._send = send
        self._recover = recover
        self._on_state = on_state
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.healthy = True
        self.last_error: ShoalError | None = None
        self.sent = 0

    def start(self) -> None:
        if self._task is None:
            self._wake.set()  # rows left from a previous run go first
            self._task = asyncio.create_task(self._run(), name="shoal-outbox")

    async def stop(self, timeout: float = 5.0) -> None:
        """Give queued rows `timeout` seconds to go out, then stop; what is left is sent on the next start."""
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drained(), timeout)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def notify(self) -> None:
        self._wake.set()

    async def drained(self) -> None:
        while await self.outbox.depth():
            self._wake.set()
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._failed(exc, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                self._wake.set()
                continue
            backoff = 0.1
            if not self.healthy:
                self.healthy, self.last_error = True, None
                self._on_state(True, None)

    async def _drain(self) -> None:
        while rows := await self.outbox.pending(0):
            results = await asyncio.gather(
                *(self._send(r.topic, r.key, r.value, r.headers) for r in rows), return_exceptions=True
            )
            done = [r.seq for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)]
            if done:
                await self.outbox.delete(done)
                self.sent += len(done)
            failures = [(r, res) for r, res in zip(rows, results, strict=True) if isinstance(res, BaseException)]
            if failures:
                row, error = failures[0]
                await self.outbox.note_failure(row.seq, str(error))
                raise error

    async def _failed(self, exc: BaseException, backoff: float) -> None:
        error = classify(exc)
        if self.healthy:
            log.warning("group outbox: sending failed, retrying (%s)", error.message)
        self.healthy, self.last_error = False, error
        self._on_state(False, error)
        await asyncio.sleep(backoff)
        try:
            await self._recover()
        except asyncio.CancelledError:
            raise
        except Exception as recover_error:
            log.debug("group outbox: recovery failed: %s", recover_error)
