"""Consumer loops: read a batch, check every envelope, record it, then commit.

The order is the protocol's guarantee (§5): an offset is committed only after the envelope is in the local
timeline, and the inbox table (keyed by envelope id) makes a redelivery a no-op. Nothing a peer sends can
stop a reader: bad records are dropped and audited, handler failures are logged, broker errors retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from core.group.committer import Committer, flush_on_revoke
from core.group.intake import Incoming, Intake, Rejected
from core.group.lag import Position
from core.group.probe import digest

if TYPE_CHECKING:
    from core.group.node import GroupNode

log = logging.getLogger(__name__)


Handler = Callable[[list[Incoming], list[Rejected]], Awaitable[None]]


class Reader:
    """One consumer and the task that drains it.

    `subscribe=True` joins a consumer group (work queues: the group splits partitions between takers);
    otherwise every partition is assigned to this reader (broadcast and addressed topics). `replay` topics
    are read from the beginning every time (the roster) and never counted as ingested; the others resume
    at the committed offset, or at the end the first time. One consumer for several topics keeps the
    broker polls (each consumer fetches every fetch_max_wait_ms) and their CPU down.
    """

    def __init__(
        self,
        node: GroupNode,
        name: str,
        topics: list[str],
        handler: Handler,
        *,
        group_id: str | None,
        subscribe: bool = False,
        replay: tuple[str, ...] = (),
    ) -> None:
        self.node = node
        self.name = name
        self.topics = topics
        self.handler = handler
        self.group_id = group_id
        self.subscribe = subscribe
        self.replay = set(replay)
        self.intake = Intake(node, self.replay)
        self.intake.replaying = lambda: not self.caught_up.is_set()
        self._last_seen: dict[Any, tuple[int, str]] = {}  # partition -> (offset, digest) of the last record read
        self._before_outage: dict[Any, tuple[int, str]] | None = None
        # For lag (core/group/lag.py): per partition, (first offset, its Kafka timestamp) of each fetched batch
        # not handled yet, and (next offset, timestamp of the last record) of what was handled.
        self._pending: dict[Any, deque[tuple[int, int | None]]] = {}
        self._handled: dict[Any, tuple[int, int | None]] = {}
        self._generation = 0  # bumped by a rebalance: a batch fetched before it no longer updates the above
        self.consumer: Any = None
        self.committer: Committer | None = None
        self._task: asyncio.Task[None] | None = None
        self.ingested = 0
        self.caught_up = asyncio.Event()  # set once everything already there was read

    async def start(self) -> None:
        if self.consumer is not None:
            return
        from aiokafka import AIOKafkaConsumer

        from core.group.kafka_config import consumer_kwargs

        consumer = AIOKafkaConsumer(**consumer_kwargs(self.node.settings, self.group_id, earliest=True))
        await consumer.start()
        self.committer = Committer(consumer, self.name, self._verify, self._lost) if self.group_id is not None else None
        try:
            if self.subscribe:
                assert self.committer is not None
                consumer.subscribe(self.topics, listener=flush_on_revoke(self.committer, self._forget))
            else:
                await self._assign(consumer)
        except BaseException:
            await consumer.stop()
            raise
        self.consumer = self.intake.consumer = consumer
        self._task = asyncio.create_task(self._run(), name=f"shoal-reader-{self.name}")

    async def _assign(self, consumer: Any) -> None:
        from aiokafka import TopicPartition

        await consumer.topics()  # fetch metadata so partition counts are known
        partitions = [
            TopicPartition(t, p) for t in self.topics for p in sorted(consumer.partitions_for_topic(t) or {0})
        ]
        consumer.assign(partitions)
        replayed = [tp for tp in partitions if tp.topic in self.replay]
        if replayed:
            await consumer.seek_to_beginning(*replayed)
        for tp in partitions:
            if tp.topic in self.replay:
                continue
            committed = await consumer.committed(tp) if self.group_id else None
            if committed is None:
                await consumer.seek_to_end(tp)
            await consumer.position(tp)  # resolve now: what is sent after start() must not be skipped

    async def stop(self, timeout: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout)
        committer, self.committer = self.committer, None
        if committer is not None:
            await committer.close(timeout)
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            try:
                await asyncio.wait_for(consumer.stop(), timeout)
            except asyncio.CancelledError:
                # With the broker away, aiokafka's fetcher re-raises the cancellation of its own pending fetch
                # from stop(): swallow that one, never a cancellation of this task.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            except Exception as exc:
                log.debug("group reader %s: closing the consumer failed: %s", self.name, exc)

    async def _run(self) -> None:
        """Fetch, check, deliver; while one batch is being recorded the next is fetched and checked (its
        signatures verified), so the database and the verify threads work side by side. Batches reach the
        handler one at a time, in order."""
        delivering: tuple[asyncio.Task[bool], dict[Any, list[Any]]] | None = None
        backoff = 0.2
        try:
            while True:
                try:
                    batch = await self.consumer.getmany(timeout_ms=1000 if delivering is None else 0, max_records=500)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("group reader %s: fetch failed: %s", self.name, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.2
                if not batch and delivering is None:
                    self.caught_up.set()
                    continue
                generation = self._generation
                for tp, records in batch.items():
                    if records:
                        self._last_seen[tp] = (records[-1].offset, digest(records[-1].value))
                        self._pending.setdefault(tp, deque()).append((records[0].offset, records[0].timestamp))
                checked = await self.intake.check(batch) if batch else None
                if delivering is not None:
                    task, previous = delivering
                    delivering = None
                    if not await task:
                        self._rewind(previous, batch)
                        await asyncio.sleep(backoff)
                        continue
                    if not self.caught_up.is_set() and await self._at_end():
                        self.caught_up.set()  # a busy topic (heartbeats) may never give an empty fetch
                if checked is not None:
                    deliver = self._deliver(batch, *checked, generation=generation)
                    task = asyncio.create_task(deliver, name=f"shoal-deliver-{self.name}")
                    delivering = (task, batch)
        finally:
            if delivering is not None:
                delivering[0].cancel()

    async def _at_end(self) -> bool:
        """Every assigned partition read up to its high watermark (as of the latest fetch)."""
        partitions = self.consumer.assignment()
        if not partitions:
            return False
        for tp in partitions:
            highwater = self.consumer.highwater(tp)
            if highwater is None or await self.consumer.position(tp) < highwater:
                return False
        return True

    def lag(self) -> dict[tuple[str, int], int]:
        """Records not handled yet, behind the high watermark of the latest fetch, per assigned partition (no
        broker call, so /metrics can read it at scrape time). Partitions not fetched yet are left out."""
        return {(p.topic, p.partition): max(0, p.highwater - p.next_offset) for p in self.positions()}

    def positions(self) -> list[Position]:
        """Per assigned partition: the high watermark, the next record to handle and a timestamp for it (the
        first record of the oldest batch still waiting, else the last one handled); see core/group/lag.py."""
        if self.consumer is None:
            return []
        out: list[Position] = []
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            pending, handled, seen = self._pending.get(tp), self._handled.get(tp), self._last_seen.get(tp)
            if pending:
                out.append(Position(tp.topic, tp.partition, highwater, pending[0][0], pending[0][1], True))
            elif handled is not None:
                out.append(Position(tp.topic, tp.partition, highwater, handled[0], handled[1], False))
            else:
                next_offset = seen[0] + 1 if seen is not None else highwater
                out.append(Position(tp.topic, tp.partition, highwater, next_offset, None, False))
        return out

    async def _deliver(
        self, batch: dict[Any, list[Any]], accepted: list[Incoming], rejected: list[Rejected], *, generation: int
    ) -> bool:
        """Hand a checked batch to the handler (which records it), then mark its offsets for commit.
        False if the handler failed: nothing is marked and the reader reads the batch again."""
        try:
            if accepted or rejected:
                await self.handler(accepted, rejected)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("group reader %s: a batch failed; reading it again", self.name)
            return False
        self.ingested += sum(1 for i in accepted if i.topic not in self.replay)
        for tp, records in batch.items() if generation == self._generation else ():
            if records:
                self._handled[tp] = (records[-1].offset + 1, records[-1].timestamp)
                pending = self._pending.get(tp)
                if pending:
                    pending.popleft()
        if self.committer is not None:
            offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if tp.topic not in self.replay}
            if offsets:
                self.committer.mark(offsets)
        return True

    async def _verify(self, partitions: list[Any]) -> list[Any]:
        """The partitions whose last record read here is no longer on the broker at its offset."""
        from core.group.probe import records_at

        before = self._before_outage if self._before_outage is not None else self._last_seen
        known = {tp: before[tp] for tp in partitions if tp in before}
        found = await records_at(self.node.settings, {tp: offset for tp, (offset, _) in known.items()})
        self._before_outage = None
        return [tp for tp, (_offset, digest) in known.items() if found.get(tp) != digest]

    def suspect_outage(self) -> None:
        """The node lost the broker: remember what was read last before it, and check it before committing."""
        if self.committer is None:
            return
        if self._before_outage is None:
            self._before_outage = dict(self._last_seen)
        self.committer.suspect()

    async def _lost(self, partitions: list[Any]) -> None:
        """The broker forgot these partitions (their committed offsets are gone): read them from the start.
        Whatever was read before comes again and the inbox drops it; what was written since is not skipped."""
        assigned = self.consumer.assignment()
        partitions = [tp for tp in partitions if tp in assigned]
        if partitions:
            await self.consumer.seek_to_beginning(*partitions)
            for tp in partitions:
                self._last_seen.pop(tp, None)
                self._pending.pop(tp, None)
                self._handled.pop(tp, None)

    def _forget(self, partitions: set[Any]) -> None:
        """A rebalance took `partitions` away or handed them over: forget what lag was reckoned from."""
        self._generation += 1
        for tp in partitions:
            self._last_seen.pop(tp, None)
            self._pending.pop(tp, None)
            self._handled.pop(tp, None)

    def _rewind(self, *batches: dict[Any, list[Any]]) -> None:
        """Seek every partition in `batches` back to its first record there (the handler failed)."""
        first: dict[Any, int] = {}
        for batch in batches:
            for tp, records in batch.items():
                if records:
                    first[tp] = min(first.get(tp, records[0].offset), records[0].offset)
        for tp, offset in first.items():
            self._pending.pop(tp, None)  # both batches are read again
            if tp in self.consumer.assignment():
                self.consumer.seek(tp, offset)
