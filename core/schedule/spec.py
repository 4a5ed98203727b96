"""What a schedule says and when it fires: cron expressions, intervals and one-off times.

Three kinds, each parsed from what a person types and stored normalised in `schedule_jobs.expr`:

- `cron`: five fields (minute hour day-of-month month day-of-week) or a macro (`@daily`), evaluated in local
  wall-clock time by croniter (imported only when a cron time is computed: it pulls in dateutil).
- `interval`: `every 30m`, `2h`, `1d`, `1h30m`, at least a minute. Measured in elapsed time from the previous
  scheduled time, so the phase survives restarts and DST does not apply (a fixed time of day needs cron).
- `once`: an ISO local date and time (`2026-12-01 08:00`), or `08:00` for the next time the clock shows it;
  stored with its UTC offset so it means the same instant whatever happens to the zone later.

DST rules, for cron (written down in docs/schedule.md): a wall-clock time that happens twice when the clocks go
back runs once, at its first occurrence; a time that does not exist when they go forward runs at the first
minute after the gap (02:30 runs at 03:00). Every computation is on aware datetimes; callers store UTC.
Errors say which field is wrong and what would be right, because "invalid cron expression" helps nobody.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal, cast

from core.errors import UserError

Kind = Literal["cron", "interval", "once"]
KINDS: tuple[Kind, ...] = ("cron", "interval", "once")
MIN_INTERVAL = timedelta(minutes=1)
MAX_INTERVAL = timedelta(days=366)
_SEARCH_LIMIT = 2000  # candidate times looked at before a cron expression is taken to never fire
MISSED_CAP = 10_000  # missed times counted at most; more is reported as "10,000+"

CRON_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-6 (0 is Sunday) or sun-sat"),
)
CRON_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400),
}
_INTERVAL_PART = re.compile(r"(\d+)\s*([a-z]+)")
_CLOCK_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_HAS_TIME = re.compile(r"\d[T ]\s*\d", re.IGNORECASE)  # a date then a time, as fromisoformat reads them


class ScheduleExpressionError(UserError):
    """A schedule a person typed cannot be used; `field` names the cron field at fault, if one is."""

    def __init__(self, message: str, fix: str, *, kind: str, field: str | None = None) -> None:
        super().__init__(message, fix)
        self.kind = kind
        self.field = field


@dataclass(frozen=True)
class Spec:
    """A parsed schedule. `expr` is the normalised text stored in the database."""

    kind: Kind
    expr: str

    # --- times ---------------------------------------------------------------------------------

    def next_after(self, after: datetime, zone: tzinfo, *, anchor: datetime | None = None) -> datetime | None:
        """The first time strictly after `after`, or None (a one-off whose time has passed). An interval
        keeps the phase of `anchor` (a previous scheduled time), so missed intervals never shift later runs."""
        if self.kind == "once":
            at = self.at()
            return at if at > after else None
        if self.kind == "interval":
            step = self.step
            if anchor is None:
                return after + step
            if anchor > after:
                return anchor
            return anchor + step * ((after - anchor) // step + 1)
        return self._cron_next(after, zone)

    def last_at_or_before(self, moment: datetime, zone: tzinfo, *, anchor: datetime | None = None) -> datetime | None:
        """The newest time at or before `moment` (an interval counts from `anchor`), or None."""
        if self.kind == "once":
            at = self.at()
            return at if at <= moment else None
        if self.kind == "interval":
            if anchor is None or anchor > moment:
                return None
            return anchor + self.step * ((moment - anchor) // self.step)
        return self._cron_prev(moment, zone)

    def count_between(self, first: datetime, moment: datetime, zone: tzinfo, *, cap: int = MISSED_CAP) -> int:
        """How many times from `first` (itself a scheduled time) up to and including `moment`, at most `cap`
        (callers say "10,000+" then). A cron schedule is walked with one iterator: building one per time made
        counting a long absence of an every-minute job take seconds."""
        if first > moment:
            return 0
        if self.kind == "once":
            return 1
        if self.kind == "interval":
            return min(cap, (moment - first) // self.step + 1)
        count = 1
        for nxt in self._cron_walk(first, zone):
            if nxt > moment or count >= cap:
                break
            count += 1
        return count

    def upcoming(
        self, after: datetime, zone: tzinfo, count: int = 3, *, anchor: datetime | None = None
    ) -> list[datetime]:
        """The next `count` times after `after` (fewer for a one-off)."""
        times: list[datetime] = []
        nxt = self.next_after(after, zone, anchor=anchor)
        while nxt is not None and len(times) < count:
            times.append(nxt)
            nxt = self.next_after(nxt, zone, anchor=nxt)
        return times

    # --- the parts of each kind ----------------------------------------------------------------

    @property
    def step(self) -> timedelta:
        return timedelta(seconds=interval_seconds(self.expr))

    def at(self) -> datetime:
        return datetime.fromisoformat(self.expr)

    def _cron(self, start: datetime) -> Any:
        from croniter import croniter

        return croniter(CRON_MACROS.get(self.expr, self.expr), start)

    def _cron_next(self, after: datetime, zone: tzinfo) -> datetime:
        for moment in self._cron_walk(after, zone):
            return moment
        raise _never(self.expr)

    def _cron_walk(self, after: datetime, zone: tzinfo) -> Iterator[datetime]:
        """The times strictly after `after`, in order, from one croniter. A time in an hour that repeats can map
        to one already given (or to before `after`): it is skipped. Ends when the expression never fires."""
        from croniter import CroniterBadDateError

        it = self._cron(after.astimezone(zone).replace(tzinfo=None))
        last, stuck = after, 0
        try:
            while stuck < _SEARCH_LIMIT:
                moment = wall_clock(it.get_next(datetime), zone)
                if moment > last:
                    last, stuck = moment, 0
                    yield moment
                else:
                    stuck += 1
        except CroniterBadDateError:
            return

    def _cron_prev(self, moment: datetime, zone: tzinfo) -> datetime | None:
        from croniter import CroniterBadDateError

        it = self._cron((moment.astimezone(zone) + timedelta(seconds=1)).replace(tzinfo=None))
        try:
            for _ in range(_SEARCH_LIMIT):
                found = wall_clock(it.get_prev(datetime), zone)
                if found <= moment:
                    return found
        except CroniterBadDateError:
            return None
        return None


def wall_clock(naive: datetime, zone: tzinfo) -> datetime:
    """A local wall-clock time as an aware datetime. A time that happens twice (clocks going back) is its first
    occurrence; a time that does not exist (clocks going forward) becomes the first minute after the gap."""
    aware = naive.replace(tzinfo=zone, fold=0)
    if _exists(aware):
        return aware
    probe = naive.replace(second=0, microsecond=0)
    for _ in range(24 * 60):  # gaps are an hour, sometimes 30 minutes; a day is a generous bound
        probe += timedelta(minutes=1)
        candidate = probe.replace(tzinfo=zone)
        if _exists(candidate):
            return candidate
    return aware


def _exists(aware: datetime) -> bool:
    back = aware.astimezone(UTC).astimezone(aware.tzinfo)
    return back.replace(tzinfo=None) == aware.replace(tzinfo=None, fold=0)


# --- parsing -------------------------------------------------------------------------------------


def parse_spec(
    *, cron: str | None = None, every: str | None = None, at: str | None = None, zone: tzinfo, now: datetime
) -> Spec:
    """Exactly one of `cron`, `every` or `at`, as a person typed it. A one-off time must be in the future."""
    given = [(kind, text) for kind, text in (("cron", cron), ("interval", every), ("once", at)) if text is not None]
    if len(given) != 1:
        raise ScheduleExpressionError(
            "Say when the job runs: give exactly one of a cron expression, an interval or a time."
            if not given
            else "Give only one of a cron expression, an interval or a time.",
            'For example --cron "0 8 * * 1-5", --every 30m or --at "2026-12-01 08:00".',
            kind="none",
        )
    kind, text = given[0]
    if kind == "cron":
        return parse_cron(text, zone=zone, now=now)
    if kind == "interval":
        return parse_interval(text)
    spec = parse_once(text, zone=zone, now=now)
    if spec.at() <= now:
        local = spec.at().astimezone(zone)
        raise ScheduleExpressionError(
            f"{local:%Y-%m-%d %H:%M} is in the past.", "Give a future date and time.", kind="once"
        )
    return spec


def stored_spec(kind: str, expr: str) -> Spec:
    """A schedule read back from the database (already validated when it was written)."""
    if kind not in KINDS:
        raise ScheduleExpressionError(f"Unknown schedule kind {kind!r}.", "Edit the job.", kind=kind)
    return Spec(cast(Kind, kind), expr)


def parse_cron(text: str, *, zone: tzinfo = UTC, now: datetime | None = None) -> Spec:
    expr = " ".join(text.split())
    if expr.lower() in CRON_MACROS:
        return Spec("cron", expr.lower())
    fields = expr.split(" ") if expr else []
    if len(fields) != 5:
        raise ScheduleExpressionError(
            f"The cron expression {text!r} has {len(fields)} field{'s' * (len(fields) != 1)}; it needs 5.",
            "Write minute hour day-of-month month day-of-week, e.g. 0 8 * * 1-5 (weekdays at 8:00), "
            "or a macro such as @daily.",
            kind="cron",
        )
    from croniter import croniter

    for index, ((name, allowed), value) in enumerate(zip(CRON_FIELDS, fields, strict=True)):
        probe = ["*"] * 5
        probe[index] = value
        try:
            croniter(" ".join(probe))
        except (ValueError, KeyError, TypeError) as exc:  # croniter's errors are ValueErrors
            raise ScheduleExpressionError(
                f"The {name} field {value!r} of the cron expression {expr!r} is not valid ({_reason(exc)}).",
                f"The {name} field takes {allowed}: a value, a list (1,15), a range (1-5), a step (*/10) or *.",
                kind="cron",
                field=name,
            ) from None
    try:
        croniter(expr)
    except (ValueError, KeyError, TypeError) as exc:
        raise ScheduleExpressionError(
            f"The cron expression {expr!r} is not valid ({_reason(exc)}).",
            "Check it field by field: minute hour day-of-month month day-of-week.",
            kind="cron",
        ) from None
    spec = Spec("cron", expr)
    spec.next_after(now or datetime.now(UTC), zone)  # one that never fires (30 February) is refused now
    return spec


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "out of range" in text:
        return "out of range"
    if "step" in text:
        return "a step must be 1 or more"
    return "not a number, name, range, list or step"


def _never(expr: str) -> ScheduleExpressionError:
    return ScheduleExpressionError(
        f"The cron expression {expr!r} never matches a real date.",
        "Check the day-of-month and month fields (there is no 30 February).",
        kind="cron",
    )


def parse_interval(text: str) -> Spec:
    raw = " ".join(text.lower().split())
    body = raw.removeprefix("every").strip()
    seconds = 0
    if body in _UNITS:  # "every hour"
        seconds = _UNITS[body]
    else:
        consumed = 0
        for match in _INTERVAL_PART.finditer(body):
            unit = _UNITS.get(match.group(2))
            if unit is None or body[consumed : match.start()].strip(" ,and"):
                seconds = -1
                break
            seconds += int(match.group(1)) * unit
            consumed = match.end()
        if seconds <= 0 or body[consumed:].strip():
            raise ScheduleExpressionError(
                f"{text!r} is not an interval.",
                "Write a number and a unit: 30m, 2h, 1d, 1h30m (s, m, h, d, w).",
                kind="interval",
            )
    step = timedelta(seconds=seconds)
    if step < MIN_INTERVAL:
        raise ScheduleExpressionError(
            f"Every {format_interval(seconds)} is too often.", "The shortest interval is 1 minute.", kind="interval"
        )
    if step > MAX_INTERVAL:
        raise ScheduleExpressionError(
            f"Every {format_interval(seconds)} is too long.",
            "Use at most 366 days, or a cron expression for yearly jobs.",
            kind="interval",
        )
    return Spec("interval", format_interval(seconds))


def interval_seconds(expr: str) -> int:
    return sum(int(n) * _UNITS[unit] for n, unit in _INTERVAL_PART.findall(expr))


def format_interval(seconds: int) -> str:
    """30m, 2h, 1d, 1h30m: the normalised form."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_once(text: str, *, zone: tzinfo, now: datetime) -> Spec:
    raw = text.strip()
    clock = _CLOCK_TIME.match(raw)
    try:
        if clock:  # "08:00": the next time the clock shows it
            hour, minute = int(clock.group(1)), int(clock.group(2))
            local_now = now.astimezone(zone)
            moment = wall_clock(local_now.replace(hour=hour, minute=minute, second=0, microsecond=0, tzinfo=None), zone)
            if moment <= now:
                moment = wall_clock((local_now + timedelta(days=1)).replace(
                    hour=hour, minute=minute, second=0, microsecond=0, tzinfo=None), zone)  # fmt: skip
        else:
            parsed = datetime.fromisoformat(raw)
            if not _HAS_TIME.search(raw):  # fromisoformat takes a bare date as midnight: nobody means that
                raise ScheduleExpressionError(
                    f"{text!r} is a date without a time.",
                    f'Add the local time, e.g. "{parsed:%Y-%m-%d} 09:00".',
                    kind="once",
                )
            moment = parsed if parsed.tzinfo is not None else wall_clock(parsed, zone)
    except ValueError:
        raise ScheduleExpressionError(
            f"{text!r} is not a date and time.",
            'Write it as YYYY-MM-DD HH:MM in local time, e.g. "2026-12-01 08:00", or HH:MM for the next one.',
            kind="once",
        ) from None
    local = moment.astimezone(zone)
    return Spec("once", local.isoformat(timespec="seconds" if local.second else "minutes"))
