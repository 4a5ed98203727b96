"""Checking a fetched batch: parse, route, verify, resolve; what a reader hands on and what it drops.

Ed25519 verification is most of the cost of reading (about 100 µs an envelope on a small CPU, five times
parsing). Large batches (a backlog) are verified on a few threads, in parallel with the event loop and the
database (libsodium releases the GIL; the Python around each check is done beforehand, on the loop); a
batch of a few envelopes (the latency path) is verified inline, where a hand-off would cost more.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.group.claimcheck import resolve
from core.group.envelope import Envelope, EnvelopeRejected, parse
from core.group.identity import PublicKey

if TYPE_CHECKING:
    from core.group.node import GroupNode

UNKNOWN_SENDER_GRACE = 5.0
UNKNOWN_SENDER_QUIET = 30.0  # after a sender's grace ran out, its envelopes are dropped without waiting again
_pool: ThreadPoolExecutor | None = None
_WORKERS = max(2, min(4, os.cpu_count() or 2))
INLINE_VERIFY = 32  # batches up to this many signatures are checked on the loop


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


async def verify_all(pairs: list[tuple[Envelope, PublicKey]]) -> list[bool]:
    """`envelope.verify(key)` for each pair, in order; large lists on the verify threads (libsodium runs
    without the GIL, so they check in parallel with each other and with the event loop)."""
    if len(pairs) <= INLINE_VERIFY:
        return [envelope.verify(key) for envelope, key in pairs]
    jobs = [(key, *envelope.signing_input()) for envelope, key in pairs]
    pool = verify_pool()
    size = -(-len(jobs) // (_WORKERS * 2))  # a little finer than the pool, so chunks even out
    loop = asyncio.get_running_loop()
    parts = await asyncio.gather(
        *(loop.run_in_executor(pool, _check_chunk, jobs[i : i + size]) for i in range(0, len(jobs), size))
    )
    verdicts = [ok for part in parts for ok in part]
    # A `False` may only mean the fast path's bytes were not the canonical ones (a peer that sends
    # non-canonical JSON): those get the full check. Forgeries pay twice, which is fine.
    return [ok or envelope.verify(key) for ok, (envelope, key) in zip(verdicts, pairs, strict=True)]


def verify_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="shoal-verify")
    return _pool


def _check_chunk(jobs: list[tuple[PublicKey, bytes, bytes]]) -> list[bool]:
    return [key.verify_raw(signature, message) for key, signature, message in jobs]


class Intake:
    """The checks of one reader. `replay` topics carry roster cards, which take effect at once."""

    def __init__(self, node: GroupNode, replay: set[str]) -> None:
        self.node = node
        self.replay = replay
        self.consumer: Any = None  # set by the reader once it has one (needed to wait for a card)
        self.replaying: Callable[[], bool] = lambda: False  # still catching up on the history (set by the reader)
        self._awaiting = False
        self._side_rejected: list[Rejected] = []  # bad cards met while waiting for a card
        self._unknown: dict[str, float] = {}  # agent id -> until when not to wait for its card again

    async def check(self, batch: dict[Any, list[Any]]) -> tuple[list[Incoming], list[Rejected]]:
        """Accepted envelopes (in record order per partition) and rejected records of a fetched batch."""
        rejected: list[Rejected] = []
        signed: list[tuple[Incoming, PublicKey]] = []
        for tp, records in batch.items():
            for record in records:
                if self._addressed_elsewhere(record.headers):
                    continue
                outcome = await self._route(record.value, tp.topic)
                if isinstance(outcome, EnvelopeRejected):
                    rejected.append(Rejected(outcome, tp.topic, tp.partition, record.offset))
                elif isinstance(outcome, tuple):
                    envelope, key = outcome
                    signed.append((Incoming(envelope, tp.topic, tp.partition, record.offset), key))
        verdicts = await verify_all([(incoming.envelope, key) for incoming, key in signed])
        accepted: list[Incoming] = []
        for (incoming, _key), ok in zip(signed, verdicts, strict=True):
            checked = await self._resolve(incoming.envelope, incoming.topic) if ok else _bad_signature(incoming)
            if isinstance(checked, EnvelopeRejected):
                rejected.append(Rejected(checked, incoming.topic, incoming.partition, incoming.offset))
            else:
                incoming.envelope = checked
                accepted.append(incoming)
        rejected += self._side_rejected
        self._side_rejected = []
        return accepted, rejected

    def _addressed_elsewhere(self, headers: Any) -> bool:
        """The `ce_recipient` header names another agent: skip without parsing (the body is checked if not)."""
        for name, value in headers or ():
            if name == "ce_recipient":
                return bool(value) and value != self.node.agent_id.encode()
        return False

    async def _route(self, value: bytes | None, topic: str) -> tuple[Envelope, PublicKey] | EnvelopeRejected | None:
        """(envelope, its sender's key) to verify; None for what is not ours to act on (or a roster card,
        applied here); a rejection for what must be dropped."""
        try:
            envelope = parse(value)
        except EnvelopeRejected as exc:
            return exc
        node = self.node
        if envelope.group != node.group_name:
            return EnvelopeRejected("wrong-group", f"envelope for group {envelope.group!r}", envelope.summary(topic))
        if envelope.recipient and envelope.recipient != node.agent_id:
            return None
        if node.roster.is_roster_type(envelope.type):  # self-certifying: checked with the key inside the card
            return self._apply_card(envelope, topic) if topic in self.replay else None
        key = node.roster.key_for(envelope.agentid)
        if key is None and self._unknown.get(envelope.agentid, 0.0) < time.monotonic():
            key = await self._await_card(envelope.agentid)
            if key is None:  # don't wait again for a while: a flood of forgeries must not stall the reader
                self._unknown[envelope.agentid] = time.monotonic() + UNKNOWN_SENDER_QUIET
        if key is None:
            return EnvelopeRejected("unknown-sender", f"no roster card for {envelope.agentid}", envelope.summary(topic))
        return envelope, key

    async def _resolve(self, envelope: Envelope, topic: str) -> Envelope | EnvelopeRejected:
        try:
            return await resolve(envelope, self.node.store)
        except EnvelopeRejected as exc:
            return exc
        except Exception as exc:  # the artifact store failed: the payload cannot be had
            return EnvelopeRejected("unresolvable", str(exc), envelope.summary(topic))

    def _apply_card(self, envelope: Envelope, topic: str) -> EnvelopeRejected | None:
        """A roster card takes effect at once (a later record in this batch may need its key)."""
        try:
            self.node.roster.apply(envelope, replayed=self.replaying())
        except ValueError as exc:
            return EnvelopeRejected("bad-signature", str(exc), envelope.summary(topic))
        return None

    async def _await_card(self, agentid: str) -> PublicKey | None:
        """Wait for the card of a sender not in the roster yet. A reader that reads the roster topic itself
        pauses its other partitions and reads only that one meanwhile (records already in hand wait)."""
        if not self.replay or self.consumer is None:
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
                        outcome = await self._route(record.value, tp.topic)
                        if isinstance(outcome, EnvelopeRejected):
                            self._side_rejected.append(Rejected(outcome, tp.topic, tp.partition, record.offset))
        finally:
            consumer.resume(*others)
            self._awaiting = False
        return key


def _bad_signature(incoming: Incoming) -> EnvelopeRejected:
    return EnvelopeRejected("bad-signature", "signature does not verify", incoming.envelope.summary(incoming.topic))
