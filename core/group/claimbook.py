"""Who holds which work key: the claims read off the group's `claims` topic, and the one rule that decides them.

Every member folds the same records in the same order (their offsets on the single-partition topic, which
every member reads from the beginning), so every member reaches the same verdict without asking anyone and
without trusting its own clock. The rule, per work key, in offset order:

- a `claimed` record **wins** when no earlier winning claim is still live at the new claim's envelope time;
  otherwise it **loses** (and never holds the key, so a loser cannot block anyone later);
- a live winning claim ends early with a `released` record from the same agent and claim id;
- a `done` record from the holder keeps the key held until the done record's own time plus its `ttlms`.

"Live at the new claim's time" compares two envelope times written by two senders' clocks: skew between them
moves the expiry by that much, never the order of claims. Nothing here reads the local clock except `live()`,
which is for display. Pure data and no I/O: core/group/claims.py does the sending and waiting.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

STATES = ("claimed", "released", "done")
MAX_TTL_MS = 7 * 24 * 3_600_000  # a protocol constant (every member must cap alike): a week
MAX_KEY_CHARS = 512
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
        return self.at + timedelta(milliseconds=self.ttlms)


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


def parse_record(data: dict[str, Any], agentid: str, sent: str, position: tuple[int, int]) -> Record | None:
    """A claim from a peer's payload, or None when it is not a well-formed one (then it takes no part)."""
    workkey, claimid, state, ttlms = data.get("workkey"), data.get("claimid"), data.get("state"), data.get("ttlms")
    if not isinstance(workkey, str) or not workkey or len(workkey) > MAX_KEY_CHARS:
        return None
    if not isinstance(claimid, str) or not claimid or len(claimid) > 128 or state not in STATES:
        return None
    if state != "released" and (not isinstance(ttlms, int) or isinstance(ttlms, bool) or ttlms < 1):
        return None
    at = parse_time(sent)
    if at is None:
        return None
    ttl = min(ttlms, MAX_TTL_MS) if isinstance(ttlms, int) and not isinstance(ttlms, bool) else 0
    return Record(workkey, claimid, str(state), agentid, at, max(ttl, 0), position)


def parse_time(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Hold:
    record: Record
    state: str
    until: datetime

    def live_at(self, when: datetime) -> bool:
        return self.state != "released" and self.until > when

    def claim(self) -> Claim:
        r = self.record
        return Claim(r.workkey, r.claimid, r.agentid, self.state, iso(r.at), iso(self.until), r.ttlms)


def fold(records: list[Record]) -> tuple[_Hold | None, dict[str, bool]]:
    """The rule above over one key's records: the last winner's hold and each claim id's verdict."""
    hold: _Hold | None = None
    verdicts: dict[str, bool] = {}
    for record in sorted(records, key=lambda r: r.position):
        if record.state == "claimed":
            if record.claimid in verdicts:
                continue  # the same claim sent twice: its first copy decided it
            won = hold is None or not hold.live_at(record.at)
            verdicts[record.claimid] = won
            if won:
                hold = _Hold(record, "claimed", record.until)
        elif hold is not None and record.claimid == hold.record.claimid and record.agentid == hold.record.agentid:
            if record.state == "released":
                hold.state = "released"
            elif hold.state != "released":  # done: finished work stays held for the done record's ttl
                hold.state, hold.until = "done", record.until
    return hold, verdicts


class ClaimBook:
    """The claims read so far, per work key (records keyed by position, so a re-read replaces itself)."""

    def __init__(self) -> None:
        self._keys: dict[str, dict[tuple[int, int], Record]] = {}
        self._pruned = time.monotonic()

    def add(self, record: Record) -> None:
        self._keys.setdefault(record.workkey, {})[record.position] = record
        if time.monotonic() - self._pruned > PRUNE_EVERY:
            self.prune(datetime.now(UTC))

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
        """Forget keys that no claim holds any more, well past expiry (a new claim for them wins either way)."""
        self._pruned = time.monotonic()
        for workkey in list(self._keys):
            hold = fold(list(self._keys[workkey].values()))[0]
            if hold is None or not hold.live_at(now - PRUNE_AFTER):
                del self._keys[workkey]

    def __len__(self) -> int:
        return len(self._keys)
