"""Time for the scheduler: an injectable clock, the machine's time zone, and the stored time format.

Times are computed as aware datetimes and stored as UTC ISO 8601 strings in the timeline's own format
(microseconds, `Z`), so they compare correctly as strings in SQL. Schedules are *written* in local wall-clock
time ("every weekday at 8:00"), so the zone must be a real one with its DST rules (a `ZoneInfo`), not the fixed
offset `datetime.astimezone()` gives: a fixed offset would move an 8:00 job to 7:00 or 9:00 after a DST change.
The zone is looked up on every use, so a laptop that changes time zone follows the new one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path

Clock = Callable[[], datetime]  # returns an aware datetime (any zone); tests pass a fake one
ZoneGetter = Callable[[], tzinfo]


def system_clock() -> datetime:
    return datetime.now(UTC)


def local_zone() -> tzinfo:
    """The machine's time zone with its DST rules: $TZ, else the zone /etc/localtime names (Linux, macOS),
    else the zone file itself; a fixed offset only where no zone database exists (some Windows installs)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    localtime = Path("/etc/localtime")
    try:
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    try:
        with localtime.open("rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        pass
    return datetime.now().astimezone().tzinfo or UTC


def to_iso(moment: datetime) -> str:
    """The stored form: UTC, microseconds, `Z` (like `core.timeline.ids.now_iso`)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def from_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def maybe_iso(text: str | None) -> datetime | None:
    return from_iso(text) if text else None


def zone_key(zone: tzinfo, now: datetime) -> str:
    """What identifies the zone for noticing a change: its name (a `ZoneInfo` key) and its offset now, since a
    zone read from /etc/localtime's file is always called "localtime" whatever the file says. The offset also
    changes at DST, which only costs a check that finds nothing to move."""
    return f"{getattr(zone, 'key', None) or zone!r}|{now.astimezone(zone).utcoffset()}"
