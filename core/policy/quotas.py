"""Token quotas: tokens spent per quota, per target, per period, kept in SQLite (table `policy_usage`, m008).

A quota is an account, not a burst guard: usage survives restarts, and a period rolls over at local midnight
(`day`) or on the 1st of the month at 00:00 (`month`), by the injectable clock. Before a model call, `reserve`
checks and books the call's estimated input tokens in one write transaction, so turns running at the same time
cannot all pass on the same remaining allowance; it refuses once the period's tokens are spent (the call that
crosses the line is allowed and counted). `settle` replaces the estimate with what the call really used, or
keeps it when the call failed or was stopped before reporting its usage.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from core.errors import QuotaExceeded
from core.policy.engine import PolicyEngine, RuleRef, matches
from core.policy.schema import Quota
from core.timeline.db import Database
from core.timeline.ids import now_iso


def local_now() -> datetime:
    return datetime.now().astimezone()


def period_of(quota: Quota, now: datetime) -> tuple[str, datetime]:
    """The period's key ("day:2026-11-21", "month:2026-11") and when it resets (local time)."""
    if quota.period == "day":
        start = now.date()
        reset = datetime.combine(start + timedelta(days=1), time(0), tzinfo=now.tzinfo)
        return f"day:{start.isoformat()}", reset
    first = date(now.year + (now.month == 12), now.month % 12 + 1, 1)
    return f"month:{now.year:04d}-{now.month:02d}", datetime.combine(first, time(0), tzinfo=now.tzinfo)


@dataclass(frozen=True)
class Reservation:
    """Tokens booked ahead of a model call: the rows they were added to, and how many."""

    rows: tuple[tuple[str, str, str], ...]  # (quota, target, period)
    tokens: int


@dataclass(frozen=True)
class QuotaUsage:
    name: str
    scope: str
    target: str  # what was counted ("openai:openrouter.ai", "peer:<agent id>"), or the glob if nothing yet
    used: int
    limit: int
    period: str  # day | month
    resets_at: datetime
    origin: str

    @property
    def resets(self) -> str:
        return f"{self.resets_at:%Y-%m-%d %H:%M}"


class QuotaBook:
    """The quotas of one engine over the agent's database."""

    def __init__(self, db: Database, engine: PolicyEngine, *, clock: Callable[[], datetime] = local_now) -> None:
        self.db = db
        self.quotas = engine.quotas
        self.clock = clock

    def matching(self, scope: str, names: tuple[str, ...]) -> list[tuple[Quota, RuleRef]]:
        return [(q, ref) for q, ref in self.quotas if q.scope == scope and matches(q.target, names)]

    async def check(self, scope: str, key: str, names: tuple[str, ...]) -> None:
        """Raise QuotaExceeded (naming the quota and when it resets) if a matching quota is used up."""
        found = await self.over(scope, key, names)
        if found is not None:
            raise found[1]

    async def over(self, scope: str, key: str, names: tuple[str, ...]) -> tuple[RuleRef, QuotaExceeded] | None:
        """The first matching quota that is used up for `key`, with the error that says so."""
        found = self.matching(scope, names)
        if not found:
            return None
        now = self.clock()
        periods = [(quota, ref, *period_of(quota, now)) for quota, ref in found]

        def read(conn: sqlite3.Connection) -> list[int]:
            return [_used(conn, quota.name, key, period) for quota, _ref, period, _reset in periods]

        for (quota, ref, _period, reset), used in zip(periods, await self.db.read(read), strict=True):
            if used >= quota.tokens:
                return ref, _exceeded(quota, ref, key, used, reset)
        return None

    async def reserve(
        self, accounts: list[tuple[str, str, tuple[str, ...]]], tokens: int
    ) -> tuple[Reservation | None, tuple[RuleRef, QuotaExceeded] | None]:
        """Check every matching quota of `accounts` ((scope, key, names) each) and, when none is used up, add
        `tokens` (the call's estimate) to all of them, in one write transaction. Returns the reservation (None
        when no quota matched), or the first used-up quota with the error that says so (nothing is added)."""
        now = self.clock()
        found = [
            (quota, ref, key, *period_of(quota, now))
            for scope, key, names in accounts
            for quota, ref in self.matching(scope, names)
        ]
        if not found:
            return None, None
        tokens = max(tokens, 0)

        def write(conn: sqlite3.Connection) -> tuple[int, int] | None:
            for n, (quota, _ref, key, period, _reset) in enumerate(found):
                used = _used(conn, quota.name, key, period)
                if used >= quota.tokens:
                    return n, used
            _add(conn, [(quota.name, key, period, tokens, now_iso()) for quota, _r, key, period, _x in found])
            return None

        over = await self.db.write(write)
        if over is not None:
            quota, ref, key, _period, reset = found[over[0]]
            return None, (ref, _exceeded(quota, ref, key, over[1], reset))
        return Reservation(tuple((q.name, key, period) for q, _r, key, period, _x in found), tokens), None

    async def settle(self, reservation: Reservation, tokens: int | None) -> None:
        """Replace a reservation's estimate with the tokens the call really used (None: keep the estimate)."""
        if tokens is None or tokens == reservation.tokens:
            return
        delta, now = tokens - reservation.tokens, now_iso()

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE policy_usage SET tokens = MAX(0, tokens + ?), updated_at = ? "
                "WHERE quota = ? AND target = ? AND period = ?",
                [(delta, now, *row) for row in reservation.rows],
            )

        await self.db.write(write)

    async def record(self, scope: str, key: str, names: tuple[str, ...], tokens: int) -> None:
        """Add `tokens` to every matching quota's current period for `key`."""
        found = self.matching(scope, names)
        if not found or tokens <= 0:
            return
        now = self.clock()
        rows = [(quota.name, key, period_of(quota, now)[0], tokens, now_iso()) for quota, _ref in found]

        await self.db.write(lambda conn: _add(conn, rows))

    async def usage(self) -> list[QuotaUsage]:
        """Each quota's use in its current period, per target counted (the glob itself when none yet)."""
        now = self.clock()
        periods = [(quota, ref, *period_of(quota, now)) for quota, ref in self.quotas]

        def read(conn: sqlite3.Connection) -> list[list[tuple[str, int]]]:
            sql = "SELECT target, tokens FROM policy_usage WHERE quota = ? AND period = ? ORDER BY target"
            return [[(str(r[0]), int(r[1])) for r in conn.execute(sql, (q.name, p))] for q, _r, p, _x in periods]

        out = []
        for (quota, ref, _period, reset), rows in zip(periods, await self.db.read(read), strict=True):
            for target, used in rows or [(", ".join(quota.target), 0)]:
                out.append(QuotaUsage(quota.name, quota.scope, target, used, quota.tokens, quota.period, reset,
                                      ref.origin))  # fmt: skip
        return out


def _exceeded(quota: Quota, ref: RuleRef, key: str, used: int, reset: datetime) -> QuotaExceeded:
    this = "today" if quota.period == "day" else "this month"
    return QuotaExceeded(
        f"Quota {quota.name!r} ({ref.origin}) is used up: {used:,} of {quota.tokens:,} tokens {this} for {key}.",
        f"It resets at {reset:%Y-%m-%d %H:%M}. To go on before then, raise its tokens in the policy file or use "
        "another model.",
    )


def _add(conn: sqlite3.Connection, rows: list[tuple[str, str, str, int, str]]) -> None:
    conn.executemany(
        "INSERT INTO policy_usage (quota, target, period, tokens, updated_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (quota, target, period) DO UPDATE SET tokens = tokens + excluded.tokens, "
        "updated_at = excluded.updated_at",
        rows,
    )


def _used(conn: sqlite3.Connection, quota: str, key: str, period: str) -> int:
    row = conn.execute(
        "SELECT tokens FROM policy_usage WHERE quota = ? AND target = ? AND period = ?", (quota, key, period)
    ).fetchone()
    return int(row[0]) if row else 0
