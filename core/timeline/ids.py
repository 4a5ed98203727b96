"""Identifiers: sortable event ids and W3C Trace Context ids."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

# Ids must be unique, not secret: a per-process generator seeded from the OS (and re-seeded in a forked
# child by the random module) costs no system call, and a system call in a hot path hands the GIL away.
_random = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_random.seed)


def new_id() -> str:
    """32 hex chars: 48-bit millisecond time then 80 random bits, so ids sort by creation time."""
    return f"{int(time.time() * 1000):012x}{_random.getrandbits(80):020x}"


def iso_utc(when: datetime) -> str:
    """RFC 3339 in UTC with a Z, as every timestamp Shoal writes (`now_iso` for now)."""
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text: object) -> datetime | None:
    """An RFC 3339 time as an aware datetime (one without a zone is taken as UTC); None for anything else.
    Times come from peers' envelopes and old rows, so an unreadable one is an answer, not an exception."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def seconds_since(text: object) -> float | None:
    """How long ago RFC 3339 time `text` was (negative for one in the future); None when unreadable."""
    when = parse_iso(text)
    return None if when is None else (datetime.now(UTC) - when).total_seconds()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _nonzero_hex(nbytes: int) -> str:
    while True:
        value = _random.getrandbits(nbytes * 8)
        if value:  # W3C: all-zero ids are invalid
            return f"{value:0{nbytes * 2}x}"


@dataclass(frozen=True)
class TraceContext:
    """A position in a trace: W3C trace-id (32 hex), this span's id (16 hex) and its parent's."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None

    @classmethod
    def new_root(cls) -> TraceContext:
        return cls(_nonzero_hex(16), _nonzero_hex(8), None)

    def child(self) -> TraceContext:
        return TraceContext(self.trace_id, _nonzero_hex(8), self.span_id)

    @property
    def traceparent(self) -> str:
        """The `traceparent` header value (version 00, sampled)."""
        return f"00-{self.trace_id}-{self.span_id}-01"

    @classmethod
    def from_traceparent(cls, header: str) -> TraceContext:
        parts = header.strip().split("-")
        if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
            raise ValueError(f"not a W3C traceparent: {header!r}")
        int(parts[1], 16), int(parts[2], 16)
        return cls(parts[1], parts[2], None)
