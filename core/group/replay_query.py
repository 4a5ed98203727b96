"""What `shoal replay` reads: a topic, where to start and stop, and which envelopes to keep.

Kept apart from the reading (core/group/replay.py) so the command line, the desktop dialog and the tests all
turn the same words into the same query, and a typo is a `UserError` before any broker is contacted.

Positions are written the way a person debugging a group thinks of them: `beginning`, an offset for every
partition (`120`), offsets of chosen partitions (`0:120,3:40`), a moment (`2026-11-21T10:00:00Z`, RFC 3339;
without a zone it is local time) or an age (`90s`, `10m`, `2h`, `1d`: that long before now).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from core.errors import UserError
from core.group.topics import topic as topic_of

_AGE = re.compile(r"(\d+)\s*(s|m|h|d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PARTITION_OFFSET = re.compile(r"(\d+):(\d+)")
POSITION_HELP = "beginning, an offset (120), partition:offset (0:120,1:40), an RFC 3339 time, or an age (10m, 2h)"


@dataclass(frozen=True)
class Position:
    """A start or stop point. Exactly one of: nothing set (the beginning, or no bound), `offset` (every
    partition), `offsets` (only these partitions), `time` (a moment, UTC)."""

    offset: int | None = None
    offsets: dict[int, int] = field(default_factory=dict)
    time: datetime | None = None

    @property
    def unbounded(self) -> bool:
        return self.offset is None and not self.offsets and self.time is None

    def offset_for(self, partition: int) -> int | None:
        """The offset this position names for `partition` (None: none, e.g. a time or the beginning)."""
        return self.offsets.get(partition, self.offset)

    def describe(self) -> str:
        if self.time is not None:
            return self.time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self.offsets:
            return ",".join(f"{p}:{o}" for p, o in sorted(self.offsets.items()))
        return "beginning" if self.offset is None else str(self.offset)


BEGINNING = Position()


def parse_position(text: str | int | None, *, now: datetime | None = None, what: str = "--from") -> Position:
    """`text` as a Position; UserError naming `what` when it is none of the accepted forms."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "beginning", "earliest", "start")):
        return BEGINNING
    if isinstance(text, int):
        return _offset(text, what)
    value = text.strip()
    if value.lstrip("-").isdigit():
        return _offset(int(value), what)
    if all(_PARTITION_OFFSET.fullmatch(part.strip()) for part in value.split(",")):
        pairs = [_PARTITION_OFFSET.fullmatch(part.strip()) for part in value.split(",")]
        return Position(offsets={int(m.group(1)): int(m.group(2)) for m in pairs if m})
    age = _AGE.fullmatch(value.lower())
    if age:
        since = timedelta(seconds=int(age.group(1)) * _UNITS[age.group(2)])
        return Position(time=(now or datetime.now(UTC)) - since)
    try:
        when = datetime.fromisoformat(value[:-1] + "Z" if value.endswith("z") else value)
    except ValueError:
        raise UserError(f"{what} {text!r} is not a position.", f"Use {POSITION_HELP}.") from None
    if when.tzinfo is None:
        when = when.astimezone()  # a person typing a time without a zone means their own clock
    return Position(time=when.astimezone(UTC))


def _offset(value: int, what: str) -> Position:
    if value < 0:
        raise UserError(f"{what} {value} is negative.", f"Offsets start at 0; or use {POSITION_HELP}.")
    return Position(offset=value)


def topic_name(group: str, name: str) -> str:
    """A full topic name from a suffix (`requests`, `skill.coder.requests`) or a full `group.<name>.…` name."""
    name = name.strip()
    if not name:
        raise UserError("No topic given.", "Name one: requests, responses, skill.<skill>.requests, audit, …")
    return name if name.startswith("group.") else topic_of(group, name)


def normal_type(name: str) -> str:
    """`task.request` and `shoal.task.request` both name the event type `shoal.task.request`."""
    name = name.strip()
    return name if name.startswith("shoal.") else f"shoal.{name}"


@dataclass(frozen=True)
class ReplayQuery:
    """One replay: `topic` (suffix or full name), from `start` up to `stop` (inclusive; the end of the topic
    as it was when reading started is always a bound), at most `limit` envelopes, of one correlation id
    (prefix accepted) and of some event types (any, when empty)."""

    topic: str
    start: Position = BEGINNING
    stop: Position = BEGINNING  # unbounded: up to the end as of the start of reading
    limit: int | None = None
    correlation: str = ""
    types: tuple[str, ...] = ()

    @classmethod
    def from_text(
        cls,
        topic: str,
        start: str | None = None,
        stop: str | None = None,
        *,
        limit: int | None = None,
        correlation: str = "",
        types: tuple[str, ...] | list[str] = (),
        now: datetime | None = None,
    ) -> ReplayQuery:
        """A query from what a person typed (CLI flags, dialog fields)."""
        if limit is not None and limit < 1:
            raise UserError(f"--limit {limit} lists nothing.", "Give a positive number, or leave it out.")
        stop_at = BEGINNING
        if stop and stop.strip().lower() not in ("end", "now", ""):
            stop_at = parse_position(stop, now=now, what="--to")
        return cls(
            topic,
            parse_position(start, now=now),
            stop_at,
            limit,
            correlation.strip(),
            tuple(normal_type(t) for t in types if t.strip()),
        )

    def selects(self, event_type: str | None, correlation: str | None) -> bool:
        """Whether the filters keep an envelope of this type and correlation id (None: unreadable record,
        kept only when no filter is set)."""
        if self.types and event_type not in self.types:
            return False
        return not self.correlation or (correlation or "").startswith(self.correlation)

    def in_time(self, moment: datetime | None) -> bool:
        """Whether a record of this moment lies between a time `start` and a time `stop`."""
        if moment is None:
            return self.start.time is None and self.stop.time is None
        if self.start.time is not None and moment < self.start.time:
            return False
        return self.stop.time is None or moment <= self.stop.time
