"""Identifiers: sortable event ids and W3C Trace Context ids."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime


def new_id() -> str:
    """32 hex chars: 48-bit millisecond time then 80 random bits, so ids sort by creation time."""
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _nonzero_hex(nbytes: int) -> str:
    while True:
        value = os.urandom(nbytes).hex()
        if value.strip("0"):  # W3C: all-zero ids are invalid
            return value


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
