"""Claims: "I am doing this", said before work that peers might duplicate, so only one of them does it.

An agent publishes a `shoal.claim` for a work key on the group's `claims` topic, waits until it has read its
own claim back, and then knows whether it won: every member folds the same records in the same offset order
(core/group/claimbook.py), so the verdict needs no round trip. Expiry compares envelope times, so clocks must
agree within MAX_SKEW: an agent whose clock most peers' cards disagree with refuses to claim. A winner says
`done` when the work is finished (peers then skip the key until the done record's ttl runs out) or `released`
when it gave up (the key is free at once); a winner that says nothing holds the key until its ttl runs out.
A claim that is slow to come back is followed, never given up: it may have won, and peers that read it skip.

    async with node.claims.hold("research:2026-11-21T08:00Z", ttl=600) as claim:
        if claim is None:
            return  # a peer has it; a `group.claim` event with status `skipped` says who
        ...

Each attempt is recorded in the timeline as a `group.claim` event (`ok`: won, `skipped`: a peer holds the
key). The protocol side is docs/protocol.md §4 (`shoal.claim`); the user side docs/coordination.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, NetworkError, UserError
from core.group.claimbook import MAX_KEY_CHARS, MAX_SKEW, MAX_TTL_MS, Claim, ClaimBook, iso, parse_record
from core.timeline.ids import TraceContext, new_id, parse_iso
from core.timeline.store import Event

if TYPE_CHECKING:
    from core.group.intake import Incoming
    from core.group.node import GroupNode
    from core.group.roster import Member

log = logging.getLogger(__name__)
CLAIM = "shoal.claim"
SUFFIX = "claims"
DEFAULT_WAIT = 10.0  # seconds to wait for our own claim to come back before saying it is late (then followed)
Verdict = tuple[bool, Claim | None] | None  # (won, our claim or the hold that beat it); None: void


class Claims:
    """A node's claims: `try_claim`, `hold`, `release`, `done`, and the live claims every member agrees on."""

    def __init__(self, node: GroupNode) -> None:
        self.node = node
        self.book = ClaimBook()
        self._waiting: dict[str, tuple[str, asyncio.Future[Verdict]]] = {}  # claim id -> (work key, verdict)
        self._void: set[str] = set()  # own claims read back but ignored (out of time): decided by nobody
        self._settling = False
        node.on_early(CLAIM, self._observe)

    # --- asking --------------------------------------------------------------------------------

    async def try_claim(
        self,
        workkey: str,
        ttl: float,
        *,
        wait: float = DEFAULT_WAIT,
        session_id: str = "",
        parent: TraceContext | None = None,
    ) -> Claim | None:
        """The claim when this agent won `workkey` for `ttl` seconds; None when a peer holds it.

        A claim that has not come back after `wait` seconds is still followed, for as long as it could hold
        the key (its ttl): it may be on the broker and have won, and peers that read it skip the key, so giving
        it up would leave the work to nobody. Raises NetworkError when it was never decided: it came back void
        (sent more than MAX_SKEW after it was made, e.g. once a broker outage ended) or its ttl ran out first.
        Raises ConfigError, before claiming, when this machine's clock disagrees with most peers' cards."""
        ttlms = _ttl_ms(ttl)
        _check_key(workkey)
        self._check_clock()
        claimid = new_id()
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._waiting[claimid] = (workkey, future)
        expires = datetime.now(UTC) + timedelta(milliseconds=ttlms)
        data = {"workkey": workkey, "claimid": claimid, "ttlms": ttlms, "expiresat": iso(expires), "state": "claimed"}
        trace = parent.child() if parent else TraceContext.new_root()
        try:
            await self._send(data, trace, session_id)
            verdict = await self._follow(workkey, future, wait, ttlms / 1000)
        except asyncio.CancelledError:  # the caller gave up: a claim nobody will act on must not hold the key
            with contextlib.suppress(Exception):
                await asyncio.shield(self._send({**data, "state": "released"}, trace, session_id))
            raise
        finally:
            self._waiting.pop(claimid, None)
            self._void.discard(claimid)
        if verdict is None:
            raise NetworkError(
                f"The group did not decide the claim for {workkey!r}: it did not come back in time to count.",
                "Check that the group's broker is reachable (`shoal group test`); the work was not started.",
            )
        won, holder = verdict  # our own claim when it won, else the hold that beat it (not a later winner)
        await self._record(workkey, claimid, won, holder, trace, session_id)
        return holder if won else None

    async def release(self, claim: Claim, *, session_id: str = "") -> None:
        """Give the key up at once (the work failed or was not needed): the next claim for it wins."""
        data = {"workkey": claim.workkey, "claimid": claim.claimid, "state": "released"}
        await self._send(data, TraceContext.new_root(), session_id)

    async def done(self, claim: Claim, keep: float | None = None, *, session_id: str = "") -> None:
        """The work is finished: keep peers off the key for `keep` seconds from now (default: the claim's ttl)."""
        ttlms = _ttl_ms(keep) if keep is not None else claim.ttlms
        expires = datetime.now(UTC) + timedelta(milliseconds=ttlms)
        data = {"workkey": claim.workkey, "claimid": claim.claimid, "ttlms": ttlms, "expiresat": iso(expires),
                "state": "done"}  # fmt: skip
        await self._send(data, TraceContext.new_root(), session_id)

    @contextlib.asynccontextmanager
    async def hold(
        self, workkey: str, ttl: float, *, finish: str = "done", wait: float = DEFAULT_WAIT, session_id: str = ""
    ) -> AsyncIterator[Claim | None]:
        """`try_claim`, then on leaving: `done` (or `released` with `finish="released"`) after success, `released`
        after an exception or cancellation. Yields None when a peer holds the key (do not do the work)."""
        claim = await self.try_claim(workkey, ttl, wait=wait, session_id=session_id)
        if claim is None:
            yield None
            return
        try:
            yield claim
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.release(claim, session_id=session_id))
            raise
        if finish == "released":
            await self.release(claim, session_id=session_id)
        else:
            await self.done(claim, session_id=session_id)

    # --- what is known -------------------------------------------------------------------------

    def live(self) -> list[Claim]:
        """Claims holding their key now (by this machine's clock), soonest expiry first."""
        return self.book.live()

    def holder(self, workkey: str) -> Claim | None:
        return self.book.holder(workkey)

    def holder_name(self, claim: Claim | None) -> str:
        if claim is None:
            return ""
        member = self.node.roster.get(claim.agentid)
        return member.name if member else claim.agentid[:12]

    # --- internals -----------------------------------------------------------------------------

    async def _send(self, data: dict[str, Any], trace: TraceContext, session_id: str) -> None:
        await self.node.publish(
            CLAIM,
            data,
            suffix=SUFFIX,
            key=data["workkey"],  # every claim for one key lands on one partition, in order
            correlationid=data["workkey"],  # `shoal trace <work key>` shows every agent's claims for it
            parent=trace,
            session_id=session_id,
        )

    def _observe(self, incoming: Incoming, _event: Event) -> None:
        """Every verified claim envelope, in the order the reader hands them over (repeats included: a record is
        keyed by its position). Verdicts are settled once the whole batch is in the book."""
        envelope = incoming.envelope
        position = (incoming.partition, incoming.offset)
        record = parse_record(envelope.data, envelope.agentid, envelope.time, position, incoming.timestamp)
        if record is None:
            log.info(
                "group: ignored a claim from %s: malformed, or dated more than %g s from when it was sent",
                envelope.agentid,
                MAX_SKEW.total_seconds(),
            )
            claimid = envelope.data.get("claimid")
            if envelope.agentid == self.node.agent_id and claimid in self._waiting:
                self._void.add(str(claimid))  # our own claim, too late to count: nobody will decide it
                self._settle_soon()
            return
        self.book.add(record)
        self._settle_soon()

    def _settle_soon(self) -> None:
        if self._waiting and not self._settling:
            self._settling = True
            asyncio.get_running_loop().call_soon(self._settle)

    def _settle(self) -> None:
        self._settling = False
        for claimid, (workkey, future) in list(self._waiting.items()):
            if future.done():
                continue
            verdict = self.book.outcome(workkey, claimid)
            if verdict is not None:
                future.set_result(verdict)
            elif claimid in self._void:
                future.set_result(None)

    async def _follow(self, workkey: str, future: asyncio.Future[Verdict], wait: float, ttl: float) -> Verdict:
        """The claim's verdict: within `wait`, or later while the claim could still hold the key (None if not)."""
        try:
            return await asyncio.wait_for(asyncio.shield(future), wait)
        except TimeoutError:
            if ttl <= wait:
                return None
        log.warning("group: the claim for %s is not back after %g s; following it (it may have won)", workkey, wait)
        try:
            return await asyncio.wait_for(asyncio.shield(future), ttl - wait)
        except TimeoutError:
            return None  # it has expired: whatever became of it, it holds the key no longer

    def _check_clock(self) -> None:
        """Refuse to claim with a clock most peers disagree with: its claims would expire early or late for
        them (every member trusts the envelope times; see core/group/claimbook.py)."""
        offset = clock_offset(self.node.roster.members(), self.node.agent_id)
        if offset is not None:
            direction = "behind" if offset > 0 else "ahead of"
            raise ConfigError(
                f"This machine's clock is about {abs(offset):.0f} s {direction} most of the group's members' "
                f"(claims allow {MAX_SKEW.total_seconds():g} s), so it does not claim work.",
                "Synchronise the clock (turn on automatic time / NTP) and check the time zone setting.",
            )

    async def _record(
        self, workkey: str, claimid: str, won: bool, holder: Claim | None, trace: TraceContext, session_id: str
    ) -> None:
        """A `group.claim` event: `ok` when this agent won the key, `skipped` when a peer holds it."""
        who = {"agentid": holder.agentid, "name": self.holder_name(holder)} if holder else {}
        payload = {
            "workkey": workkey,
            "claimid": claimid,
            "outcome": "won" if won else "skipped",
            "holder": who,
            "expiresat": holder.expiresat if holder else "",
        }
        if not won:
            log.info("group: %s is held by %s; skipped", workkey, who.get("name", "?"))
        await self.node.timeline.record(
            "group.claim",
            session_id=session_id,
            trace=trace.child(),
            correlation_id=workkey,
            name=workkey,
            status="ok" if won else "skipped",
            payload=payload,
        )


def clock_offset(
    members: Iterable[Member], own_id: str, *, mono: float | None = None, wall: float | None = None
) -> float | None:
    """Seconds by which peers' clocks run ahead of this one (median of those off by more than MAX_SKEW) when
    most peers are that far off; None when at least half agree, or there is nobody to compare with.

    A peer's offset is its latest card's envelope time minus when it was heard here (a replayed card counts as
    heard when it was sent, so a long-gone member does not count as off)."""
    mono = time.monotonic() if mono is None else mono
    wall = time.time() if wall is None else wall
    offsets = []
    for member in members:
        sent = parse_iso(member.last_announce)
        if member.agentid == own_id or sent is None or not member.last_seen:
            continue
        offsets.append(sent.timestamp() - (wall - (mono - member.last_seen)))
    far = [offset for offset in offsets if abs(offset) > MAX_SKEW.total_seconds()]
    if not offsets or len(far) * 2 <= len(offsets):
        return None
    return statistics.median(far)


def _ttl_ms(seconds: float) -> int:
    if not seconds > 0:
        raise UserError(f"A claim needs a positive ttl, not {seconds!r} s.", "Give how long the work may take.")
    return min(MAX_TTL_MS, max(1, round(seconds * 1000)))


def _check_key(workkey: str) -> None:
    if not workkey or len(workkey) > MAX_KEY_CHARS:
        raise UserError(
            f"A work key must be 1 to {MAX_KEY_CHARS} characters.", "Name the work briefly, e.g. research:2026-11-21."
        )
