"""Consumer lag of a group member: how far behind each consumed partition is, and a warning when it stays so.

Two figures per (topic, partition) a reader consumes, sampled about once a second from what the readers
already know (no broker call, so sampling costs nothing while the broker is slow or away):

- **messages behind**: the partition's high watermark (as of the reader's latest fetch) minus the offset of
  the next record the reader has not *handled* yet (recorded in the timeline; fetched-but-waiting records
  count as behind, because a slow handler is what makes an agent lag);
- **seconds behind**: how old the oldest unhandled record is, `now - its Kafka timestamp` (a producer's
  create time on Tansu and on topics with the default `message.timestamp.type`). When that record was
  fetched (it waits in the reader's pipeline) its timestamp is exact. When it was not fetched yet, the
  timestamp of the last handled record on the partition stands in for it: the next record was produced no
  earlier, so the figure is an upper bound, exact for a single producer and close for several. 0 when
  caught up; never negative (a producer's clock may be ahead).

A reader stuck in its handler stops fetching, so its high watermark (and the message count) freezes, but
the seconds keep growing: a stuck agent is caught by `lag_warn_seconds` whatever the count says.

A partition **warns** when it stays over `group.lag_warn_messages` or `group.lag_warn_seconds` (0 turns a
check off) for `group.lag_warn_after` seconds; the warning clears once it has stayed under both for the
same time (so a lag that hovers around a threshold does not flap). Each start and clear is logged once and
written to the timeline as a `group.lag` event (status `warning` / `ok`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.group.node import GroupNode

log = logging.getLogger(__name__)
SAMPLE_INTERVAL = 1.0
LagListener = Callable[[list["LagRow"]], None]


@dataclass(frozen=True)
class Position:
    """What a reader knows about one partition: the high watermark from its latest fetch, the offset of the
    next record to handle, and the Kafka timestamp (ms) of that record (`exact`) or of the last one handled."""

    topic: str
    partition: int
    highwater: int
    next_offset: int
    timestamp_ms: int | None
    exact: bool


@dataclass(frozen=True)
class LagRow:
    """One consumed partition in a sample (what the CLI, /metrics and the desktop show)."""

    topic: str
    partition: int
    reader: str
    group: str  # consumer group ("" for a member without one: an ephemeral CLI member)
    messages: int
    seconds: float | None  # None when no timestamp is known yet
    warning: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seconds_behind(position: Position, messages: int, now: float) -> float | None:
    """Age of the oldest unhandled record in seconds (see the module docstring for the estimate)."""
    if messages <= 0:
        return 0.0
    if position.timestamp_ms is None or position.timestamp_ms <= 0:
        return None
    return max(0.0, round(now - position.timestamp_ms / 1000, 3))


@dataclass
class _Watch:
    """The warning state of one partition: since when it is over (or, while warning, under) the thresholds."""

    over_since: float | None = None
    under_since: float | None = None
    warning: bool = False
    row: LagRow | None = None


class LagMonitor:
    """Samples the node's readers every `interval` seconds (`start`/`stop`, one task, idempotent)."""

    def __init__(
        self,
        node: GroupNode,
        *,
        interval: float = SAMPLE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.interval = interval
        self.clock = clock  # for how long a partition stays over or under
        self.wall = wall  # against the records' timestamps
        self._watches: dict[tuple[str, str, int], _Watch] = {}
        self._rows: list[LagRow] = []
        self._listeners: list[LagListener] = []
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="shoal-group-lag")

    async def stop(self, timeout: float = 2.0) -> None:
        """Stop sampling (within `timeout`) and forget the state: a rejoin starts from a clean slate."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout)
        self._watches.clear()
        self._rows = []

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # a reader being replaced mid-sample: try again next time
                log.debug("group lag: sampling failed", exc_info=True)
            await asyncio.sleep(self.interval)

    # --- what others read ----------------------------------------------------------------------

    def snapshot(self) -> list[LagRow]:
        """The latest sample, sorted by topic and partition."""
        return list(self._rows)

    @property
    def warnings(self) -> list[LagRow]:
        return [row for row in self._rows if row.warning]

    def add_listener(self, listener: LagListener) -> None:
        """`listener(warning rows)` after every sample in which a warning started or cleared."""
        self._listeners.append(listener)

    def remove_listener(self, listener: LagListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # --- sampling ------------------------------------------------------------------------------

    async def tick(self) -> list[LagRow]:
        """Sample once, record the warnings that started or cleared; returns those transitions."""
        changes = self.sample()
        for row in changes:
            await self._record(row)
        if changes:
            warnings = self.warnings
            for listener in list(self._listeners):
                try:
                    listener(warnings)
                except Exception:
                    log.exception("group lag listener failed")
        return changes

    def sample(self) -> list[LagRow]:
        """Read every reader now and update the warning states. Returns the rows whose warning changed."""
        settings = self.node.settings
        now, wall = self.clock(), self.wall()
        rows: list[LagRow] = []
        changes: list[LagRow] = []
        seen: set[tuple[str, str, int]] = set()
        for reader in list(self.node.readers):
            for position in reader.positions():
                key = (reader.name, position.topic, position.partition)
                seen.add(key)
                messages = max(0, position.highwater - position.next_offset)
                seconds = seconds_behind(position, messages, wall)
                over = over_limits(messages, seconds, settings.lag_warn_messages, settings.lag_warn_seconds)
                watch = self._watches.setdefault(key, _Watch())
                changed = _step(watch, over, now, settings.lag_warn_after)
                row = LagRow(
                    position.topic,
                    position.partition,
                    reader.name,
                    reader.group_id or "",
                    messages,
                    seconds,
                    watch.warning,
                )
                watch.row = row
                rows.append(row)
                if changed:
                    changes.append(row)
        for key in [k for k in self._watches if k not in seen]:  # unassigned (a rebalance) or its reader gone
            watch = self._watches.pop(key)
            if watch.warning and watch.row is not None:
                changes.append(LagRow(**{**watch.row.to_dict(), "warning": False}))
        self._rows = sorted(rows, key=lambda r: (r.topic, r.partition, r.reader))
        return changes

    async def _record(self, row: LagRow) -> None:
        """Log once and write a `group.lag` event for a warning that started or cleared."""
        from core.timeline.ids import TraceContext

        settings = self.node.settings
        where = f"{row.topic}[{row.partition}]"
        seconds = "?" if row.seconds is None else f"{row.seconds:.1f}"
        if row.warning:
            log.warning(
                "group lag: %s (reader %s) is %d records / %s s behind, over the limits (%d records, %g s) for %g s",
                where,
                row.reader,
                row.messages,
                seconds,
                settings.lag_warn_messages,
                settings.lag_warn_seconds,
                settings.lag_warn_after,
            )
        else:
            log.info(
                "group lag: %s (reader %s) caught up: %d records / %s s behind",
                where,
                row.reader,
                row.messages,
                seconds,
            )
        payload = {
            **row.to_dict(),
            "limits": {
                "messages": settings.lag_warn_messages,
                "seconds": settings.lag_warn_seconds,
                "after": settings.lag_warn_after,
            },
        }
        try:
            await self.node.timeline.record(
                "group.lag",
                session_id="",
                trace=TraceContext.new_root(),
                correlation_id=row.group,
                name=where,
                status="warning" if row.warning else "ok",
                payload=payload,
            )
        except Exception:  # the database closing under a stopping node: the log line stays
            log.debug("group lag: could not record the event", exc_info=True)


def over_limits(messages: int, seconds: float | None, max_messages: int, max_seconds: float) -> bool:
    """Over either threshold (a threshold of 0 is off)."""
    too_many = max_messages > 0 and messages > max_messages
    too_old = max_seconds > 0 and seconds is not None and seconds > max_seconds
    return too_many or too_old


def _step(watch: _Watch, over: bool, now: float, after: float) -> bool:
    """Advance one partition's warning state; True when the warning started or cleared."""
    if over:
        watch.under_since = None
        if watch.over_since is None:
            watch.over_since = now
        if not watch.warning and now - watch.over_since >= after:
            watch.warning = True
            return True
        return False
    watch.over_since = None
    if not watch.warning:
        return False
    if watch.under_since is None:
        watch.under_since = now
    if now - watch.under_since >= after:
        watch.warning = False
        watch.under_since = None
        return True
    return False
