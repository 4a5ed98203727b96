"""Who holds which work key: the claims read off the group's `claims` topic, and the one rule that decides them.

Every member folds the same records in the same order (their offsets on the single-partition topic, which
every member reads from the beginning), so every member reaches the same verdict without asking anyone. The
rule, per work key, in offset order, with each record's **effective time**: its envelope time, but never
earlier than the effective time of the key's previous record (a sender whose clock runs behind cannot date
its claim before what the key has already seen):

- a `claimed` record **wins** when no earlier winning claim is still live at the new claim's effective time;
  otherwise it **loses** (and never holds the key, so a loser cannot block anyone later);
- a live winning claim ends early with a `released` record from the same agent and claim id;
- a `done` record from the holder keeps the key held until the done record's own time plus its `ttlms`, but
  never longer than `MAX_TTL_MS` after the claim's own time (so the claim record, which the claims topic keeps
  a day longer than that, core/group/topics.py, is always there while it holds the key);
- a `done` or `released` record dated after the claim it names expired counts for nothing (the key was free
  by then; this is also why forgetting dead keys, `prune`, never changes a verdict).

A record takes part only when its envelope time is a sane date within `MAX_SKEW` of the record's Kafka
timestamp. Both are written by the sender's machine (the envelope when the claim is made, the producer when
it is sent; a broker with `message.timestamp.type=LogAppendTime` writes the latter itself), so an honest
sender always passes, while an envelope dated in the far future or past (a forged or broken time), or a claim
that sat in an outbox for minutes, is ignored by every member alike. Nothing here reads the reader's clock to
decide: a member replaying the topic later would judge differently. A sender whose whole clock is off is
caught before it claims (core/group/claims.py checks this machine's clock against its peers'). Pure data and
no I/O: core/group/claims.py does the sending and waiting.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.timeline.ids import parse_iso

STATES = ("claimed", "released", "done")
MAX_TTL_MS = 7 * 24 * 3_600_000  # a protocol constant (every member must cap alike): a week
MAX_SKEW = timedelta(seconds=60)  # a protocol constant: envelope time vs Kafka timestamp, and clocks vs peers'
MAX_KEY_CHARS = 512
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # envelope times outside these are not claim times (and could
LATEST = datetime(9000, 1, 1, tzinfo=UTC)  # overflow `time + ttl`)
NEVER = datetime.max.replace(tzinfo=UTC)
PRUNE_EVERY = 60.0  # seconds between sweeps of keys nobody can hold any more
PRUNE_AFTER = timedelta(minutes=10)  # how long past its expiry a key's records are kept (covers clock skew)


@dataclass(frozen=True)
class Record:
    """One claim envelope as read: `at` is its envelope time, `position` its (partition, offset)."""

    workkey: str
    claimid: str
    state: str
    agentid: str
    at: datetime
    ttlms: int
    position: tuple[int, int]

    @property
    def until(self) -> datetime:
        return later(self.at, self.ttlms)


@dataclass(frozen=True)
class Claim:
    """A winning claim (what `try_claim` returns and `shoal claims list` shows)."""

    workkey: str
    claimid: str
    agentid: str
    state: str  # claimed | done | released
    claimedat: str
    expiresat: str
    ttlms: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_record(
    data: dict[str, Any], agentid: str, sent: str, position: tuple[int, int], kafka_ms: int | None = None
) -> Record | None:
    """A claim from a peer's payload, or None when it is not a well-formed one (then it takes no part).
    `kafka_ms`: the record's Kafka timestamp (None or <= 0 when the client did not get one: not checked)."""
    workkey, claimid, state, ttlms = data.get("workkey"), data.get("claimid"), data.get("state"), data.get("ttlms")
    if not isinstance(workkey, str) or not workkey or len(workkey) > MAX_KEY_CHARS:
        return None
    if not isinstance(claimid, str) or not claimid or len(claimid) > 128 or state not in STATES:
        return None
    if state != "released" and (not isinstance(ttlms, int) or isinstance(ttlms, bool) or ttlms < 1):
        return None
    at = parse_iso(sent)
    if at is None or not in_time(at, kafka_ms):
        return None
    ttl = min(ttlms, MAX_TTL_MS) if isinstance(ttlms, int) and not isinstance(ttlms, bool) else 0
    return Record(workkey, claimid, str(state), agentid, at, max(ttl, 0), position)


def in_time(at: datetime, kafka_ms: int | None) -> bool:
    """A sane date, within MAX_SKEW of the record's Kafka timestamp when there is one (module docstring)."""
    if not EARLIEST <= at <= LATEST:
        return False
    if kafka_ms is None or kafka_ms <= 0:
        return True
    return abs(at.timestamp() * 1000 - kafka_ms) <= MAX_SKEW.total_seconds() * 1000


def later(when: datetime, ms: int) -> datetime:
    """`when + ms`, or the end of the calendar where that would overflow (records are range-checked, but a
    Record can be made by hand)."""
    try:
        return when + timedelta(milliseconds=ms)
    except OverflowError:
        return NEVER


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Hold:
    record: Record
    state: str
    start: datetime  # the claim's effective time
    until: datetime

    def live_at(self, when: datetime) -> bool:
        return self.state != "released" and self.until > when

    def claim(self) -> Claim:
        r = self.record
        return Claim(r.workkey, r.claimid, r.agentid, self.state, iso(self.start), iso(self.until), r.ttlms)


@dataclass
class Folded:
    """A key's records folded: the last winner's hold, each claim id's verdict, every winner's hold by claim
    id, for each loser the hold that beat it, and the latest effective time."""

    hold: _Hold | None = None
    last: datetime | None = None
    verdicts: dict[str, bool] = field(default_factory=dict)
    winners: dict[str, _Hold] = field(default_factory=dict)
    beaten_by: dict[str, _Hold] = field(default_factory=dict)


def fold_all(records: list[Record]) -> Folded:
    """The rule of the module docstring over one key's records."""
    out = Folded()
    for record in sorted(records, key=lambda r: r.position):
        at = record.at if out.last is None else max(record.at, out.last)
        out.last = at
        hold = out.hold
        if record.state == "claimed":
            if record.claimid in out.verdicts:
                continue  # the same claim sent twice: its first copy decided it
            won = hold is None or not hold.live_at(at)
            out.verdicts[record.claimid] = won
            if won:
                out.hold = out.winners[record.claimid] = _Hold(record, "claimed", at, later(at, record.ttlms))
            elif hold is not None:
                out.beaten_by[record.claimid] = hold
        elif hold is not None and record.claimid == hold.record.claimid and record.agentid == hold.record.agentid:
            if not hold.live_at(at):
                continue  # released or done after the claim expired (or was released): counts for nothing
            if record.state == "released":
                hold.state = "released"
            else:  # done: finished work stays held for the done record's ttl, at most MAX_TTL from the claim
                hold.state, hold.until = "done", min(later(at, record.ttlms), later(hold.start, MAX_TTL_MS))
    return out


def fold(records: list[Record]) -> tuple[_Hold | None, dict[str, bool]]:
    """The last winner's hold and each claim id's verdict (see `fold_all`)."""
    folded = fold_all(records)
    return folded.hold, folded.verdicts


class ClaimBook:
    """The claims read so far, per work key (records keyed by position, so a re-read replaces itself)."""

    def __init__(self) -> None:
        self._keys: dict[str, dict[tuple[int, int], Record]] = {}
        self._latest: datetime | None = None  # the latest envelope time read: how far the topic has got
        self._pruned = time.monotonic()

    def add(self, record: Record) -> None:
        self._keys.setdefault(record.workkey, {})[record.position] = record
        self._latest = record.at if self._latest is None else max(self._latest, record.at)
        if time.monotonic() - self._pruned > PRUNE_EVERY:
            self.prune(datetime.now(UTC))

    def outcome(self, workkey: str, claimid: str) -> tuple[bool, Claim | None] | None:
        """(won, the claim itself when it won or the hold that beat it), or None when it has not been read."""
        folded = fold_all(list(self._keys.get(workkey, {}).values()))
        won = folded.verdicts.get(claimid)
        if won is None:
            return None
        hold = folded.winners.get(claimid) if won else folded.beaten_by.get(claimid)
        return won, hold.claim() if hold is not None else None

    def verdict(self, workkey: str, claimid: str) -> bool | None:
        """True: that claim won; False: it lost; None: it has not been read yet."""
        return fold(list(self._keys.get(workkey, {}).values()))[1].get(claimid)

    def holder(self, workkey: str) -> Claim | None:
        """The key's last winning claim (live or not: see `Claim.expiresat` and `state`)."""
        hold = fold(list(self._keys.get(workkey, {}).values()))[0]
        return hold.claim() if hold is not None else None

    def live(self, now: datetime | None = None) -> list[Claim]:
        """Claims holding their key now by the local clock, soonest expiry first (for display)."""
        now = now or datetime.now(UTC)
        out = []
        for records in self._keys.values():
            hold = fold(list(records.values()))[0]
            if hold is not None and hold.live_at(now):
                out.append(hold.claim())
        return sorted(out, key=lambda c: (c.expiresat, c.workkey))

    def prune(self, now: datetime) -> None:
        """Forget keys that no claim holds any more, well past expiry both by `now` and by the latest record
        read (so a reader that lags, or a peer's clock that runs ahead, cannot make it forget too early). A
        later record on such a key then meets no hold instead of a dead one, which decides it the same way."""
        self._pruned = time.monotonic()
        if self._latest is None:
            return
        horizon = min(now, self._latest) - PRUNE_AFTER
        for workkey in list(self._keys):
            folded = fold_all(list(self._keys[workkey].values()))
            dead = folded.hold is None or not folded.hold.live_at(horizon)
            if dead and (folded.last is None or folded.last < horizon):
                del self._keys[workkey]

    def __len__(self) -> int:
        return len(self._keys)
