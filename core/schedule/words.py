"""A schedule in words: "every weekday at 08:00", "every 30 minutes", "once on Tue 1 Dec 2026 at 08:00".

Lists (CLI, desktop, HTTP) show this rather than the raw expression, which stays available beside it. Common
cron shapes are put into words; anything else is shown as the expression itself, never guessed at.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from core.schedule.clock import from_iso, local_zone
from core.schedule.spec import CRON_MACROS, Spec, interval_seconds

DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DAY_ALIASES = {name[:3].lower(): index for index, name in enumerate(DAY_NAMES)}
_UNIT_WORDS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def describe(spec: Spec, zone: tzinfo | None = None) -> str:
    if spec.kind == "interval":
        return "every " + interval_words(interval_seconds(spec.expr))
    if spec.kind == "once":
        local = spec.at().astimezone(zone or local_zone())
        return f"once, {local:%a} {local.day} {local:%b %Y} at {local:%H:%M}"
    return cron_words(spec.expr)


def when(moment: datetime | str | None, *, zone: tzinfo | None = None, now: datetime | None = None) -> str:
    """A time as a person reads it in a list: "today 08:00", "tomorrow 08:00", "Mon 7 Dec 08:00", "—"."""
    if moment is None or moment == "":
        return "—"
    local = (from_iso(moment) if isinstance(moment, str) else moment).astimezone(zone or local_zone())
    today = (now or datetime.now(UTC)).astimezone(local.tzinfo).date()
    names = {today: "today", today + timedelta(days=1): "tomorrow", today - timedelta(days=1): "yesterday"}
    day = names.get(local.date()) or f"{local:%a} {local.day} {local:%b}" + (
        f" {local.year}" if local.year != today.year else ""
    )
    return f"{day} {local:%H:%M}"


def relative(moment: datetime | str | None, now: datetime) -> str:
    """ "in 5 min", "3 h ago", "in 2 days"."""
    if moment is None or moment == "":
        return ""
    delta = (from_iso(moment) if isinstance(moment, str) else moment) - now
    seconds = abs(delta.total_seconds())
    if seconds < 60:
        amount = "under a minute"
    elif seconds < 3600:
        amount = f"{seconds // 60:.0f} min"
    elif seconds < 2 * 86400:
        amount = f"{seconds / 3600:.0f} h"
    else:
        amount = f"{seconds / 86400:.0f} days"
    return f"in {amount}" if delta.total_seconds() >= 0 else f"{amount} ago"


def interval_words(seconds: int) -> str:
    parts = []
    for word, size in _UNIT_WORDS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append((count, word))
    if len(parts) == 1 and parts[0][0] == 1:
        return parts[0][1]  # "every hour"
    if len(parts) == 1 and parts[0][1] == "day" and parts[0][0] % 7 == 0:
        weeks = parts[0][0] // 7
        return "week" if weeks == 1 else f"{weeks} weeks"
    return " ".join(f"{count} {word}{'s' * (count != 1)}" for count, word in parts)


def cron_words(expr: str) -> str:
    minute, hour, dom, month, dow = CRON_MACROS.get(expr, expr).split(" ")
    if (dom, month, dow) == ("*", "*", "*"):
        if hour == "*" and minute.startswith("*/") and minute[2:].isdigit():
            return f"every {minute[2:]} minutes"
        if hour == "*" and minute == "*":
            return "every minute"
        if hour == "*" and minute.isdigit():
            return "every hour" + ("" if minute == "0" else f" at :{int(minute):02d}")
        if hour.startswith("*/") and hour[2:].isdigit() and minute.isdigit():
            return f"every {hour[2:]} hours" + ("" if minute == "0" else f" at :{int(minute):02d}")
    times = _times(minute, hour)
    if times is None or month != "*":
        return f"cron {expr}"
    if dom == "*":
        days = _days(dow)
        return f"{days} at {times}" if days else f"cron {expr}"
    if dow == "*" and dom.isdigit():
        return f"on the {_ordinal(int(dom))} of every month at {times}"
    return f"cron {expr}"


def _times(minute: str, hour: str) -> str | None:
    if not minute.isdigit():
        return None
    hours = hour.split(",")
    if not all(h.isdigit() for h in hours):
        return None
    clock = [f"{int(h):02d}:{int(minute):02d}" for h in hours]
    return clock[0] if len(clock) == 1 else ", ".join(clock[:-1]) + " and " + clock[-1]


def _days(dow: str) -> str | None:
    if dow == "*":
        return "every day"
    numbers = _day_numbers(dow)
    if numbers is None:
        return None
    if numbers == {1, 2, 3, 4, 5}:
        return "every weekday"
    if numbers == {0, 6}:
        return "every weekend day"
    if len(numbers) == 1:
        return f"every {DAY_NAMES[next(iter(numbers))]}"
    order = sorted(numbers, key=lambda d: (d + 6) % 7)  # Monday first
    return "on " + ", ".join(DAY_NAMES[d][:3] for d in order)


def _day_numbers(dow: str) -> set[int] | None:
    out: set[int] = set()
    for part in dow.lower().split(","):
        bounds = part.split("-")
        if len(bounds) > 2:
            return None
        try:
            ends = [_day(b) for b in bounds]
        except ValueError:
            return None
        if len(ends) == 2 and ends[1] < ends[0]:
            return None
        out.update(range(ends[0], ends[-1] + 1))
    return {d % 7 for d in out}


def _day(text: str) -> int:
    if text in _DAY_ALIASES:
        return _DAY_ALIASES[text]
    value = int(text)  # ValueError for anything else (steps, L, #)
    if not 0 <= value <= 7:
        raise ValueError(text)
    return value


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
