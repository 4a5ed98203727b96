"""The durable outbox: every envelope is written to SQLite first, then sent.

Writing the timeline event and the outbox row in one transaction means what the timeline says was sent is
exactly what will be sent, even across a crash; with the broker down the agent keeps working and the rows
wait. Once a row is committed, its writer hands it to the sender in memory (no second read of the table on
the hot path); the sender gives it to the producer at once without waiting for earlier acknowledgements
(the producer keeps per-partition order), and deletes rows in batches once the broker has acknowledged
them. After a failure it backs off, lets the node recover, and reloads every row still in the table, so
nothing is lost; a row acknowledged but not yet deleted may go out twice, which readers absorb (inbox ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.errors import NetworkError, ShoalError, classify
from core.group.envelope import Envelope
from core.timeline.db import Database
from core.timeline.ids import now_iso

log = logging.getLogger(__name__)
BATCH = 500
MAX_BACKOFF = 5.0
DELETE_DELAY = 0.1  # acknowledged rows are deleted in batches this far apart (off the hot path)
ACK_CHECK = 1.0  # how often, while records are in flight, the sender looks for overdue acknowledgements


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


_INSERT = "INSERT INTO group_outbox (envelope_id, topic, key, value, headers, created_at) VALUES (?, ?, ?, ?, ?, ?)"


def write_rows(conn: sqlite3.Connection, items: list[OutItem]) -> list[OutRow]:
    """Append to the outbox inside the caller's transaction; returns the rows to hand to the sender."""
    now, rows = now_iso(), []
    for item in items:
        value, headers = item.envelope.to_bytes(), item.envelope.headers()
        text = json.dumps([[k, v.decode("utf-8", "replace")] for k, v in headers])
        cursor = conn.execute(_INSERT, (item.envelope.id, item.topic, item.key, value, text, now))
        assert cursor.lastrowid is not None
        rows.append(OutRow(cursor.lastrowid, item.envelope.id, item.topic, item.key, value, headers))
    return rows


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


# produce(topic, key, value, headers) queues the record and returns a future for its acknowledgement.
Produce = Callable[[str, str | None, bytes, list[tuple[str, bytes]]], Awaitable["asyncio.Future[Any]"]]


class OutboxSender:
    """Sends outbox rows through `produce` and deletes them once acknowledged.

    `recover()` runs before retrying after a failure: the node re-creates topics there, since a broker that
    restarted may have forgotten them (and producing to a missing topic would auto-create it wrongly).
    """

    def __init__(
        self,
        outbox: Outbox,
        produce: Produce,
        recover: Callable[[], Awaitable[None]],
        on_state: Callable[[bool, ShoalError | None], None] = lambda ok, err: None,
        ack_timeout: float = 30.0,
    ) -> None:
        self.outbox = outbox
        self.ack_timeout = ack_timeout  # an acknowledgement later than this counts as a failure
        self._produce = produce
        self._recover = recover
        self._on_state = on_state
        self._wake = asyncio.Event()
        self._queue: deque[OutRow] = deque()
        self._owned: set[int] = set()  # seqs queued, in flight or acknowledged and not yet deleted
        self._acked: list[int] = []
        self._sent_at: dict[int, float] = {}  # in-flight seq -> when it went to the producer
        self._failure: tuple[int, BaseException] | None = None  # (seq, error) of a failed send
        self._reload = True  # read the table: rows left by a previous run or by a failure
        self._task: asyncio.Task[None] | None = None
        self._deleter: asyncio.Task[None] | None = None
        self.healthy = True
        self.last_error: ShoalError | None = None
        self.sent = 0

    def start(self) -> None:
        if self._task is None:
            self._reload = True
            self._wake.set()
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
        deleter, self._deleter = self._deleter, None
        if deleter is not None:
            deleter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deleter
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._delete_acked(), timeout)  # fewer repeats on the next start
        self._queue.clear()
        self._owned.clear()

    def hand(self, rows: list[OutRow]) -> None:
        """Rows just committed to the table: send them without reading them back."""
        fresh = [r for r in rows if r.seq not in self._owned]
        self._owned.update(r.seq for r in fresh)
        self._queue.extend(fresh)
        self._wake.set()

    def notify(self) -> None:
        """Rows were written without being handed over: read the table."""
        self._reload = True
        self._wake.set()

    async def drained(self) -> None:
        while await self.outbox.depth():
            self._wake.set()
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), ACK_CHECK if self._sent_at else None)
            self._wake.clear()
            self._expire_acks()
            try:
                if self._failure is not None:
                    seq, error = self._failure
                    self._failure = None
                    await self.outbox.note_failure(seq, str(error))
                    raise error
                if self._reload:
                    self._reload = False
                    await self._load()
                while self._queue:
                    await self._send(self._queue.popleft())
            except asyncio.CancelledError as cancelled:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # stop() cancelled this task
                # The client cancelled one of its own waits (a broker going away can do that): a failure
                # like any other, never the end of this loop (the outbox would stop sending for good).
                await self._after_failure(
                    NetworkError(f"A send was cancelled ({cancelled}).", "It is retried."), backoff
                )
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            except Exception as exc:
                await self._after_failure(exc, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 0.1

    def _expire_acks(self) -> None:
        """A producer can keep a record's acknowledgement pending for a long time after a broker restart:
        past `ack_timeout` the row counts as failed and is sent again (a late acknowledgement still deletes
        it; a repeat on the wire is dropped by readers)."""
        now = time.monotonic()
        late = [seq for seq, at in self._sent_at.items() if now - at > self.ack_timeout]
        for seq in late:
            del self._sent_at[seq]
            self._owned.discard(seq)
        if late and self._failure is None:
            error = NetworkError(f"{len(late)} record(s) unacknowledged after {self.ack_timeout:g} s.", "Retrying.")
            self._failure = (min(late), error)

    async def _after_failure(self, exc: BaseException, backoff: float) -> None:
        """Drop the queue (in-flight rows stay owned), back off, let the node recover, read the table again."""
        self._owned.difference_update(r.seq for r in self._queue)
        self._queue.clear()
        await self._failed(exc, backoff)
        self._reload = True
        self._wake.set()

    async def _load(self) -> None:
        after = 0
        while rows := await self.outbox.pending(after):
            self.hand(rows)
            after = rows[-1].seq
        self._queue = deque(sorted(self._queue, key=lambda r: r.seq))  # rows handed meanwhile are newer

    async def _send(self, row: OutRow) -> None:
        try:
            ack = await self._produce(row.topic, row.key, row.value, row.headers)
        except BaseException as exc:
            self._owned.discard(row.seq)
            if isinstance(exc, Exception):
                await self.outbox.note_failure(row.seq, str(exc))
            raise
        self._sent_at[row.seq] = time.monotonic()
        ack.add_done_callback(lambda future: self._acknowledged(row, future))

    def _acknowledged(self, row: OutRow, future: asyncio.Future[Any]) -> None:
        self._sent_at.pop(row.seq, None)
        error = None if future.cancelled() else future.exception()
        if future.cancelled() or error is not None:
            self._owned.discard(row.seq)
            if self._failure is None:
                self._failure = (row.seq, error or NetworkError("The send was cancelled.", "It is retried."))
            self._wake.set()
            return
        self._acked.append(row.seq)
        if self._deleter is None or self._deleter.done():
            self._deleter = asyncio.create_task(self._delete_soon(), name="shoal-outbox-delete")
        if not self.healthy:
            self.healthy, self.last_error = True, None
            self._on_state(True, None)

    async def _delete_soon(self) -> None:
        await asyncio.sleep(DELETE_DELAY)
        await self._delete_acked()

    async def _delete_acked(self) -> None:
        while self._acked:
            seqs, self._acked = self._acked, []
            try:
                await self.outbox.delete(seqs)
            except Exception as exc:  # the rows go out again after a restart; readers drop the repeats
                log.warning("group outbox: could not delete %d sent rows: %s", len(seqs), exc)
            self._owned.difference_update(seqs)
            self.sent += len(seqs)

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
