"""The lag monitor's rules with a fake clock and fake readers: the figures, when a warning starts (only after
lag stayed over a limit for `lag_warn_after`), when it clears (after staying under as long), the timeline
events it writes (real SQLite), and its lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from core.group.lag import LagMonitor, LagRow, Position, seconds_behind
from core.settings import GroupSettings
from core.timeline.db import Database
from core.timeline.migrations import migrate
from core.timeline.store import Timeline
from tests.group.helpers import eventually

WALL = 1_800_000_000.0  # the fake wall clock, in seconds


@dataclass
class FakeReader:
    name: str = "inbox"
    group_id: str | None = "shoal.g.agent.a1"
    partitions: dict[tuple[str, int], Position] = field(default_factory=dict)

    def set(self, topic: str, partition: int, highwater: int, next_offset: int, age: float | None = None) -> None:
        """A partition `highwater - next_offset` records behind whose next record is `age` seconds old."""
        stamp = None if age is None else int((WALL - age) * 1000)
        self.partitions[(topic, partition)] = Position(topic, partition, highwater, next_offset, stamp, True)

    def positions(self) -> list[Position]:
        return list(self.partitions.values())


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def timeline(tmp_path: Path) -> AsyncIterator[Timeline]:
    db = Database(tmp_path / "lag.db", migrate=migrate)
    await db.start()
    yield Timeline(db)
    await db.stop()


def monitor_over(timeline: Timeline, *readers: FakeReader, **limits: Any) -> tuple[LagMonitor, Clock]:
    settings = GroupSettings(**{"lag_warn_messages": 100, "lag_warn_seconds": 30, "lag_warn_after": 10, **limits})
    node = SimpleNamespace(readers=list(readers), settings=settings, timeline=timeline)
    clock = Clock()
    return LagMonitor(node, interval=0.01, clock=clock, wall=lambda: WALL), clock  # type: ignore[arg-type]


async def lag_events(timeline: Timeline) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e.name, e.status, e.payload) for e in await timeline.events(kind="group.lag")]


def test_seconds_behind_is_the_age_of_the_next_record_and_zero_when_caught_up() -> None:
    stamp = int((WALL - 42.5) * 1000)
    assert seconds_behind(Position("t", 0, 10, 4, stamp, True), 6, WALL) == 42.5
    assert seconds_behind(Position("t", 0, 10, 10, stamp, False), 0, WALL) == 0.0
    assert seconds_behind(Position("t", 0, 10, 4, None, False), 6, WALL) is None  # no timestamp known yet
    ahead = int((WALL + 5) * 1000)  # a producer whose clock runs ahead
    assert seconds_behind(Position("t", 0, 10, 4, ahead, True), 6, WALL) == 0.0


async def test_a_warning_starts_only_after_lag_stays_over_the_limit(timeline: Timeline) -> None:
    reader = FakeReader()
    monitor, clock = monitor_over(timeline, reader)
    reader.set("group.g.memory", 0, highwater=50, next_offset=0, age=1)
    assert await monitor.tick() == [] and monitor.snapshot()[0].messages == 50  # under the limits
    reader.set("group.g.memory", 0, highwater=500, next_offset=0, age=1)
    assert await monitor.tick() == []  # over, but only just now
    clock.now += 9.9
    assert await monitor.tick() == [] and monitor.warnings == []
    reader.set("group.g.memory", 1, highwater=10, next_offset=10)  # another partition, caught up
    clock.now += 0.1
    [started] = await monitor.tick()
    assert started == LagRow("group.g.memory", 0, "inbox", "shoal.g.agent.a1", 500, 1.0, True)
    assert monitor.warnings == [started]
    assert [(r.partition, r.warning, r.seconds) for r in monitor.snapshot()] == [(0, True, 1.0), (1, False, 0.0)]
    clock.now += 5
    assert await monitor.tick() == []  # still warning: written once
    [(name, status, payload)] = await lag_events(timeline)
    assert (name, status) == ("group.g.memory[0]", "warning")
    assert payload["messages"] == 500 and payload["group"] == "shoal.g.agent.a1" and payload["reader"] == "inbox"
    assert payload["limits"] == {"messages": 100, "seconds": 30, "after": 10}


async def test_a_dip_under_the_limit_restarts_the_wait(timeline: Timeline) -> None:
    reader = FakeReader()
    monitor, clock = monitor_over(timeline, reader)
    reader.set("t", 0, highwater=500, next_offset=0, age=1)
    await monitor.tick()
    clock.now += 8
    reader.set("t", 0, highwater=500, next_offset=450, age=1)  # under for one sample
    await monitor.tick()
    reader.set("t", 0, highwater=900, next_offset=450, age=1)
    clock.now += 1
    await monitor.tick()
    clock.now += 9
    assert await monitor.tick() == []  # 18 s since it first went over, but only 9 s in one stretch
    clock.now += 1
    assert [r.warning for r in await monitor.tick()] == [True]


async def test_the_warning_clears_after_staying_under_as_long(timeline: Timeline) -> None:
    reader = FakeReader()
    monitor, clock = monitor_over(timeline, reader)
    listened: list[list[LagRow]] = []
    monitor.add_listener(listened.append)
    reader.set("t", 3, highwater=500, next_offset=0, age=2)
    await monitor.tick()
    clock.now += 10
    await monitor.tick()
    assert len(monitor.warnings) == 1 and len(listened) == 1 and listened[0][0].warning
    reader.set("t", 3, highwater=500, next_offset=500)  # caught up
    clock.now += 1
    assert await monitor.tick() == [] and monitor.warnings[0].messages == 0  # caught up, not cleared yet
    reader.set("t", 3, highwater=700, next_offset=500, age=1)  # over again: the clearing wait restarts
    clock.now += 5
    await monitor.tick()
    reader.set("t", 3, highwater=700, next_offset=700)
    clock.now += 1
    await monitor.tick()
    clock.now += 9.9
    assert await monitor.tick() == []
    clock.now += 0.1
    [cleared] = await monitor.tick()
    assert not cleared.warning and cleared.messages == 0 and cleared.seconds == 0.0
    assert monitor.warnings == [] and listened[-1] == []
    assert [(name, status) for name, status, _ in await lag_events(timeline)] == [("t[3]", "warning"), ("t[3]", "ok")]


async def test_seconds_behind_alone_warns_a_stuck_reader_and_zero_turns_a_check_off(timeline: Timeline) -> None:
    reader = FakeReader()
    monitor, _ = monitor_over(timeline, reader, lag_warn_messages=0, lag_warn_after=0)
    reader.set("t", 0, highwater=100_000, next_offset=0, age=29)  # 0: the record count never warns
    assert await monitor.tick() == []
    reader.set("t", 0, highwater=3, next_offset=2, age=31)  # one record, but a stale one
    assert [r.seconds for r in await monitor.tick()] == [31.0]

    quiet = FakeReader(name="skill-x", group_id="shoal.g.skill.x")
    off, _ = monitor_over(timeline, quiet, lag_warn_messages=0, lag_warn_seconds=0, lag_warn_after=0)
    quiet.set("t", 0, highwater=10**9, next_offset=0, age=10**6)
    assert await off.tick() == [] and off.snapshot()[0].messages == 10**9


async def test_a_partition_that_goes_away_while_warning_is_cleared(timeline: Timeline) -> None:
    reader = FakeReader(name="skill-x", group_id="shoal.g.skill.x")
    monitor, _ = monitor_over(timeline, reader, lag_warn_after=0)
    reader.set("q", 1, highwater=1000, next_offset=0, age=1)
    assert [r.warning for r in await monitor.tick()] == [True]
    reader.partitions.clear()  # a rebalance gave the partition to another taker
    [cleared] = await monitor.tick()
    assert (cleared.topic, cleared.partition, cleared.warning) == ("q", 1, False)
    assert monitor.snapshot() == [] and monitor.warnings == []
    assert [status for _, status, _ in await lag_events(timeline)] == ["warning", "ok"]


async def test_start_is_idempotent_and_stop_ends_the_one_task(timeline: Timeline) -> None:
    reader = FakeReader()
    monitor, _ = monitor_over(timeline, reader, lag_warn_after=0)
    reader.set("t", 0, highwater=5000, next_offset=0, age=1)
    monitor.start()
    task = monitor._task
    monitor.start()
    assert monitor._task is task and monitor.running
    await eventually(lambda: bool(monitor.warnings), timeout=5)
    names = [t.get_name() for t in asyncio.all_tasks()]
    assert names.count("shoal-group-lag") == 1
    await monitor.stop(timeout=1.0)
    await monitor.stop(timeout=1.0)
    assert not monitor.running and task is not None and task.done()
    assert monitor.snapshot() == [] and monitor.warnings == []  # a rejoin starts clean
    monitor.start()
    assert monitor.running
    await monitor.stop()


async def test_a_rebalance_makes_a_reader_forget_what_its_lag_was_reckoned_from() -> None:
    """A skill queue partition handled up to offset 3, taken by another taker (who handled 3 to 6) and handed
    back: ada's old bookkeeping would say 3 records behind for ever. A batch fetched before the rebalance and
    handled after it must not bring it back either."""
    from aiokafka import TopicPartition

    from core.group.reader import Reader

    tp = TopicPartition("q", 0)
    consumer = SimpleNamespace(assignment=lambda: {tp}, highwater=lambda _tp: 6)

    async def handler(_accepted: Any, _rejected: Any) -> None:
        return None

    reader = Reader(SimpleNamespace(), "skill-echo", ["q"], handler, group_id="g", subscribe=True)  # type: ignore[arg-type]
    reader.consumer = consumer
    stamp = int((WALL - 60) * 1000)
    reader._handled[tp] = (3, stamp)
    assert [p.highwater - p.next_offset for p in reader.positions()] == [3]
    before = reader._generation
    reader._forget({tp})  # what the rebalance listener does when the partition is revoked, then assigned
    assert reader.positions() == [Position("q", 0, 6, 6, None, False)]
    record = SimpleNamespace(offset=2, timestamp=stamp)
    assert await reader._deliver({tp: [record]}, [], [], generation=before)
    assert reader.positions() == [Position("q", 0, 6, 6, None, False)], "the late batch changes nothing"
    assert await reader._deliver({tp: [SimpleNamespace(offset=5, timestamp=stamp)]}, [], [], generation=before + 1)
    assert reader.positions() == [Position("q", 0, 6, 6, stamp, False)], "a batch fetched since then counts"
