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
from core.group.membership import (
    CONTROL_ADMIT,
    CONTROL_CHALLENGE,
    CONTROL_DENY,
    CONTROL_JOIN,
    CONTROL_REVOKE,
    CONTROL_TYPES,
    CONTROL_ZONE,
)
from core.group.zonegate import open_zone

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
    timestamp: int | None = None  # the record's Kafka timestamp, ms (claims check envelope times against it)


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
        self._side_signed: list[tuple[Incoming, PublicKey]] = []  # control envelopes read meanwhile
        self._unknown: dict[str, float] = {}  # agent id -> until when not to wait for its card again

    async def check(self, batch: dict[Any, list[Any]]) -> tuple[list[Incoming], list[Rejected]]:
        """Accepted envelopes (in record order per partition) and rejected records of a fetched batch."""
        rejected: list[Rejected] = []
        signed: list[tuple[Incoming, PublicKey]] = []
        # Roster and control records first: an admission or a card later in the batch must count before a
        # record of another topic waits for it (and records read while waiting must not overtake them). The
        # claims topic is replayed too, but its records are signed by members like any other: after the cards.
        for tp, records in sorted(batch.items(), key=lambda item: _after_cards(item[0].topic, self.replay)):
            for record in records:
                if self._addressed_elsewhere(record.headers):
                    continue
                outcome = await self._route(record.value, tp.topic)
                if isinstance(outcome, EnvelopeRejected):
                    rejected.append(Rejected(outcome, tp.topic, tp.partition, record.offset))
                elif isinstance(outcome, tuple):
                    envelope, key = outcome
                    signed.append((Incoming(envelope, tp.topic, tp.partition, record.offset, record.timestamp), key))
        signed += self._side_signed
        self._side_signed = []
        verdicts = await verify_all([(incoming.envelope, key) for incoming, key in signed])
        accepted: list[Incoming] = []
        for (incoming, _key), ok in zip(signed, verdicts, strict=True):
            if ok and self._not_ours(incoming.envelope):
                continue  # a private zone's payload for others: not even fetched when it travels by reference
            checked: Envelope | EnvelopeRejected | None = (
                await self._resolve(incoming.envelope, incoming.topic) if ok else _bad_signature(incoming)
            )
            if isinstance(checked, Envelope):
                checked = open_zone(self.node, checked, incoming.topic)
            if checked is None:
                continue  # sealed for a zone this agent is not in: not ours, like a record addressed elsewhere
            if isinstance(checked, EnvelopeRejected):
                rejected.append(Rejected(checked, incoming.topic, incoming.partition, incoming.offset))
            else:
                incoming.envelope = checked
                accepted.append(incoming)
        rejected += self._side_rejected
        self._side_rejected = []
        return accepted, rejected

    def _not_ours(self, envelope: Envelope) -> bool:
        """A private zone's payload by reference, for a zone this agent is not in: sealed for others, so not
        worth fetching (an inline one is skipped by the zone gate once it finds no key of ours)."""
        zones = self.node.zones
        if zones is None or not envelope.attrs.get("dataref") or not zones.is_private(envelope.zone):
            return False
        return not zones.allows(self.node.agent_id, envelope.zone)

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
        if envelope.type in CONTROL_TYPES:
            return self._control(envelope, topic)
        membership = node.membership
        key = node.roster.key_for(envelope.agentid) or membership.key_for(envelope.agentid)
        ready = key is not None and membership.allows(envelope.agentid)
        if not ready and self._unknown.get(envelope.agentid, 0.0) < time.monotonic():
            ready = await self._await_sender(envelope.agentid)
            key = node.roster.key_for(envelope.agentid) or membership.key_for(envelope.agentid)
            if not ready:  # don't wait again for a while: a flood of forgeries must not stall the reader
                self._quiet(envelope.agentid)
        if not membership.allows(envelope.agentid):
            status = membership.status(envelope.agentid)
            reason = "revoked" if status == "revoked" else "not-admitted"
            return EnvelopeRejected(reason, f"{envelope.agentid} is not a member ({status})", envelope.summary(topic))
        if key is None:
            return EnvelopeRejected("unknown-sender", f"no roster card for {envelope.agentid}", envelope.summary(topic))
        return envelope, key

    def _control(self, envelope: Envelope, topic: str) -> tuple[Envelope, PublicKey] | EnvelopeRejected | None:
        """Onboarding envelopes: a join is checked with the key inside it; admissions and revocations with
        their signer's admission, and take effect at once (a later record may be from the newly admitted)."""
        node = self.node
        if envelope.type == CONTROL_JOIN:
            try:
                key = PublicKey(str(envelope.data.get("publickey", "")))
            except ValueError:
                return EnvelopeRejected("malformed", "a join without a valid public key", envelope.summary(topic))
            if key.agent_id != envelope.agentid:
                return EnvelopeRejected("bad-signature", "the join's key is not the sender's", envelope.summary(topic))
            return envelope, key
        found = (
            node.membership.signer_key(envelope)
            or node.roster.key_for(envelope.agentid)
            or node.onboarding.key_for(envelope.agentid)
            or (
                node.membership.held_key(envelope.agentid)
                if envelope.type in (CONTROL_CHALLENGE, CONTROL_DENY)
                else None
            )
        )
        if found is None:
            if not node.membership.enforced:
                return None  # an open group has no onboarding to follow
            return EnvelopeRejected("not-admitted", f"{envelope.agentid} is not a member", envelope.summary(topic))
        if envelope.type in (CONTROL_ADMIT, CONTROL_REVOKE, CONTROL_ZONE):
            if not envelope.verify(found):
                return EnvelopeRejected("bad-signature", "signature does not verify", envelope.summary(topic))
            zones = node.zones
            refused = (
                zones.apply(envelope)
                if envelope.type == CONTROL_ZONE and zones is not None
                else node.membership.apply(envelope)
            )
            if refused is not None:
                return refused
        return envelope, found

    async def _resolve(self, envelope: Envelope, topic: str) -> Envelope | EnvelopeRejected:
        try:
            return await resolve(envelope, self.node.store)
        except EnvelopeRejected as exc:
            return exc
        except Exception as exc:  # the artifact store failed: the payload cannot be had
            return EnvelopeRejected("unresolvable", str(exc), envelope.summary(topic))

    def _apply_card(self, envelope: Envelope, topic: str) -> EnvelopeRejected | None:
        """A roster card takes effect at once (a later record in this batch may need its key). In a closed
        group, the card of an agent not admitted (yet) is held back until its admission is read."""
        try:
            self.node.roster.check_card(envelope)
            if not self.node.membership.hold_card(envelope, self.replaying()):
                self.node.roster.apply(envelope, replayed=self.replaying())
        except ValueError as exc:
            return EnvelopeRejected("bad-signature", str(exc), envelope.summary(topic))
        return None

    async def _replay_read_up(self, consumer: Any, others: list[Any]) -> bool:
        """In a closed group, once the replayed topics are read to their end, waiting longer for a stranger's
        admission only stalls the reader (a flood of throwaway keys would stop it for seconds each)."""
        if not self.node.membership.enforced:
            return False
        replayed = [tp for tp in consumer.assignment() if tp not in others]
        return await _at_highwater(consumer, replayed)

    def _quiet(self, agentid: str) -> None:
        """Don't wait for `agentid`'s card for a while; entries whose quiet time is over go (one per sender that
        never turned up would otherwise stay for good)."""
        now = time.monotonic()
        if len(self._unknown) >= 64:
            self._unknown = {a: until for a, until in self._unknown.items() if until > now}
        self._unknown[agentid] = now + UNKNOWN_SENDER_QUIET

    async def _await_sender(self, agentid: str) -> bool:
        """Wait for the card (and in a closed group the admission) of a sender not known yet. A reader that
        reads the roster and control topics itself pauses its other partitions and reads only those
        meanwhile (records already in hand wait)."""
        node = self.node

        def ready() -> bool:
            known = node.roster.key_for(agentid) or node.membership.key_for(agentid)  # an admission holds the key
            return known is not None and node.membership.allows(agentid)

        if not self.replay or self.consumer is None:  # one grace period for the card and the admission
            deadline = time.monotonic() + UNKNOWN_SENDER_GRACE
            if (
                node.membership.key_for(agentid) is None
                and await node.roster.wait_for_key(agentid, UNKNOWN_SENDER_GRACE) is None
            ):
                return False
            return await node.membership.wait_admitted(agentid, max(0.0, deadline - time.monotonic()))
        if self._awaiting:  # a record from another unknown sender on the roster topic: no nesting
            return False
        self._awaiting = True
        consumer = self.consumer
        others = [tp for tp in consumer.assignment() if tp.topic not in self.replay]
        consumer.pause(*others)
        deadline = time.monotonic() + UNKNOWN_SENDER_GRACE
        try:
            idle = 0
            while not ready() and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=100, max_records=500)
                idle = idle + 1 if not batch and await self._replay_read_up(consumer, others) else 0
                if idle >= 2:
                    break  # all the roster and control topics hold is read (twice): the sender is not a member
                for tp, records in batch.items():
                    for record in records:
                        outcome = await self._route(record.value, tp.topic)
                        if isinstance(outcome, EnvelopeRejected):
                            self._side_rejected.append(Rejected(outcome, tp.topic, tp.partition, record.offset))
                        elif isinstance(outcome, tuple):
                            incoming = Incoming(outcome[0], tp.topic, tp.partition, record.offset, record.timestamp)
                            self._side_signed.append((incoming, outcome[1]))
        finally:
            consumer.resume(*others)
            self._awaiting = False
        return ready()


async def _at_highwater(consumer: Any, partitions: list[Any]) -> bool:
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


def _after_cards(topic: str, replay: set[str]) -> bool:
    return topic not in replay or topic.endswith(".claims")


def _bad_signature(incoming: Incoming) -> EnvelopeRejected:
    return EnvelopeRejected("bad-signature", "signature does not verify", incoming.envelope.summary(incoming.topic))
