"""Consumer loops: read a batch, check every envelope, record it, then commit.

The order is the protocol's guarantee (§5): an offset is committed only after the envelope is in the local
timeline, and the inbox table (keyed by envelope id) makes a redelivery a no-op. Nothing a peer sends can
stop a reader: bad records are dropped and audited, handler failures are logged, broker errors retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.group.claimcheck import resolve
from core.group.committer import Committer, flush_on_revoke
from core.group.envelope import Envelope, EnvelopeRejected, parse
from core.group.identity import PublicKey

if TYPE_CHECKING:
    from core.group.node import GroupNode

log = logging.getLogger(__name__)
UNKNOWN_SENDER_GRACE = 5.0


@dataclass
class Incoming:
    envelope: Envelope
    topic: str
    partition: int
    offset: int


@dataclass
class Rejected:
    error: EnvelopeRejected
    topic: str
    partition: int
    offset: int


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
        self.consumer: Any = None
        self.committer: Committer | None = None
        self._task: asyncio.Task[None] | None = None
        self.ingested = 0
        self.caught_up = asyncio.Event()  # set once everything already there was read
        self._awaiting = False
        self._side_rejected: list[Rejected] = []  # bad cards met while waiting for a card (`_await_card`)
        self._unknown: dict[str, float] = {}  # agent id -> until when not to wait for its card again

    async def start(self) -> None:
        if self.consumer is not None:
            return
        from aiokafka import AIOKafkaConsumer

        from core.group.kafka_config import consumer_kwargs

        consumer = AIOKafkaConsumer(**consumer_kwargs(self.node.settings, self.group_id, earliest=True))
        await consumer.start()
        self.committer = Committer(consumer, self.name) if self.group_id is not None else None
        try:
            if self.subscribe:
                assert self.committer is not None
                consumer.subscribe(self.topics, listener=flush_on_revoke(self.committer))
            else:
                await self._assign(consumer)
        except BaseException:
            await consumer.stop()
            raise
        self.consumer = consumer
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
        backoff = 0.2
        while True:
            try:
                batch = await self.consumer.getmany(timeout_ms=1000, max_records=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("group reader %s: fetch failed: %s", self.name, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            if not batch:
                self.caught_up.set()
                continue
            try:
                await self._process(batch)
                if not self.caught_up.is_set() and await self._at_end():
                    self.caught_up.set()  # a busy topic (heartbeats) may never give an empty fetch
            except asyncio.CancelledError:
                raise
            except Exception:
                # Not committed: the batch comes again after a restart, and the inbox makes that harmless.
                log.exception("group reader %s: a batch failed", self.name)
                await asyncio.sleep(backoff)

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

    async def _process(self, batch: dict[Any, list[Any]]) -> None:
        accepted: list[Incoming] = []
        rejected: list[Rejected] = []
        for tp, records in batch.items():
            for record in records:
                if self._addressed_elsewhere(record.headers):
                    continue
                outcome = await self._check(record.value, tp.topic)
                if outcome is not None and not isinstance(outcome, EnvelopeRejected) and tp.topic in self.replay:
                    outcome = self._apply_card(outcome, tp.topic)
                if isinstance(outcome, EnvelopeRejected):
                    rejected.append(Rejected(outcome, tp.topic, tp.partition, record.offset))
                elif outcome is not None:
                    accepted.append(Incoming(outcome, tp.topic, tp.partition, record.offset))
        rejected += self._side_rejected
        self._side_rejected = []
        if accepted or rejected:
            await self.handler(accepted, rejected)
        self.ingested += sum(1 for i in accepted if i.topic not in self.replay)
        if self.committer is not None:
            offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if tp.topic not in self.replay}
            if offsets:
                self.committer.mark(offsets)

    def _apply_card(self, envelope: Envelope, topic: str) -> Envelope | EnvelopeRejected | None:
        """A roster card takes effect at once (a later record in this batch may need its key); cards are
        not handed on. Anything else on a roster topic is, like on any topic."""
        if not self.node.roster.is_roster_type(envelope.type):
            return envelope
        try:
            self.node.roster.apply(envelope)
        except ValueError as exc:
            return EnvelopeRejected("bad-signature", str(exc), envelope.summary(topic))
        return None

    async def _await_card(self, agentid: str) -> PublicKey | None:
        """Wait for the card of a sender not in the roster yet. This reader reads the roster topic itself, so
        it pauses its other partitions and reads only that one meanwhile (records already in hand wait)."""
        if not self.replay:
            return await self.node.roster.wait_for_key(agentid, UNKNOWN_SENDER_GRACE)
        if self._awaiting:  # a non-card record from another unknown sender on the roster topic: no nesting
            return None
        self._awaiting = True
        consumer = self.consumer
        others = [tp for tp in consumer.assignment() if tp.topic not in self.replay]
        consumer.pause(*others)
        deadline = time.monotonic() + UNKNOWN_SENDER_GRACE
        try:
            while (key := self.node.roster.key_for(agentid)) is None and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=100, max_records=500)
                for tp, records in batch.items():
                    for record in records:
                        outcome = await self._check(record.value, tp.topic)
                        if outcome is not None and not isinstance(outcome, EnvelopeRejected):
                            outcome = self._apply_card(outcome, tp.topic)
                        if isinstance(outcome, EnvelopeRejected):
                            self._side_rejected.append(Rejected(outcome, tp.topic, tp.partition, record.offset))
        finally:
            consumer.resume(*others)
            self._awaiting = False
        return key

    def _addressed_elsewhere(self, headers: Any) -> bool:
        """The `ce_recipient` header names another agent: skip without parsing (the body is checked if not)."""
        for name, value in headers or ():
            if name == "ce_recipient":
                return bool(value) and value != self.node.agent_id.encode()
        return False

    async def _check(self, value: bytes | None, topic: str) -> Envelope | EnvelopeRejected | None:
        """The envelope if this agent should act on it, None if it is simply not addressed to us."""
        try:
            envelope = parse(value)
        except EnvelopeRejected as exc:
            return exc
        node = self.node
        if envelope.group != node.group_name:
            return EnvelopeRejected("wrong-group", f"envelope for group {envelope.group!r}", envelope.summary(topic))
        if envelope.recipient and envelope.recipient != node.agent_id:
            return None
        if node.roster.is_roster_type(envelope.type):
            return envelope  # self-certifying: the roster verifies the card with the key inside it
        key = node.roster.key_for(envelope.agentid)
        if key is None and self._unknown.get(envelope.agentid, 0.0) < time.monotonic():
            key = await self._await_card(envelope.agentid)
            if key is None:  # don't wait again for a while: a flood of forgeries must not stall the reader
                self._unknown[envelope.agentid] = time.monotonic() + 30.0
        if key is None:
            return EnvelopeRejected("unknown-sender", f"no roster card for {envelope.agentid}", envelope.summary(topic))
        if not envelope.verify(key):
            return EnvelopeRejected("bad-signature", "signature does not verify", envelope.summary(topic))
        try:
            return await resolve(envelope, node.store)
        except EnvelopeRejected as exc:
            return exc
        except Exception as exc:  # the artifact store failed: the payload cannot be had
            return EnvelopeRejected("unresolvable", str(exc), envelope.summary(topic))
