"""Background offset commits: coalescing, retries where newer marks win, unassigned partitions, flush on close."""

from __future__ import annotations

import asyncio
from typing import Any

from core.group.committer import Committer
from tests.group.helpers import eventually


async def _verified(partitions: list[Any]) -> list[Any]:
    return []


async def _nothing_lost(partitions: list[Any]) -> None:
    raise AssertionError(f"nothing should be lost: {partitions}")


class ScriptedConsumer:
    def __init__(self, assigned: set[str]) -> None:
        self.assigned = assigned
        self.commits: list[dict[str, int]] = []
        self.fail = 0
        self.gate: asyncio.Event | None = None

    def assignment(self) -> set[str]:
        return self.assigned

    async def commit(self, offsets: dict[str, int]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise ConnectionError("coordinator away")
        self.commits.append(dict(offsets))


async def test_marks_made_while_a_commit_is_in_flight_go_in_one_later_commit() -> None:
    consumer = ScriptedConsumer({"a", "b"})
    consumer.gate = asyncio.Event()
    committer = Committer(consumer, "t", _verified, _nothing_lost)
    committer.mark({"a": 1})
    await asyncio.sleep(0.01)
    committer.mark({"a": 2})
    committer.mark({"a": 3, "b": 7})
    consumer.gate.set()
    await committer.close()
    assert consumer.commits == [{"a": 1}, {"a": 3, "b": 7}]


async def test_a_failed_commit_is_retried_and_newer_marks_win() -> None:
    consumer = ScriptedConsumer({"a", "b"})
    consumer.fail = 1
    committer = Committer(consumer, "t", _verified, _nothing_lost)
    committer.mark({"a": 5, "b": 1})
    await eventually(lambda: consumer.fail == 0, timeout=2)
    committer.mark({"a": 9})  # arrives during the retry delay
    await committer.flush(timeout=3)
    assert consumer.commits[-1] == {"a": 9, "b": 1}
    await committer.close()


async def test_partitions_no_longer_assigned_are_not_committed() -> None:
    consumer = ScriptedConsumer({"a"})
    committer = Committer(consumer, "t", _verified, _nothing_lost)
    committer.mark({"a": 2, "gone": 4})
    await committer.close()
    assert consumer.commits == [{"a": 2}]


async def test_close_with_nothing_marked_returns_at_once() -> None:
    consumer: Any = ScriptedConsumer(set())
    committer = Committer(consumer, "t", _verified, _nothing_lost)
    await asyncio.wait_for(committer.close(), 0.5)
    assert consumer.commits == []


async def test_after_an_outage_partitions_the_broker_lost_are_handed_back_not_committed() -> None:
    consumer = ScriptedConsumer({"a", "b"})
    lost: list[list[str]] = []
    asked: list[list[str]] = []

    async def verify(partitions: list[str]) -> list[str]:
        asked.append(sorted(partitions))
        if len(asked) == 1:
            raise ConnectionError("broker still away")  # stays suspicious, asks again
        return ["a"]  # the record read last at a's offset is not there any more

    async def on_lost(partitions: list[str]) -> None:
        lost.append(sorted(partitions))

    committer = Committer(consumer, "t", verify, on_lost)
    committer.mark({"a": 40, "b": 3})
    await committer.flush()
    committer.suspect()  # the node went offline; the broker restarted with empty storage
    committer.mark({"a": 41, "b": 4})
    await committer.flush(timeout=3)
    await committer.close()
    assert asked == [["a", "b"], ["a", "b"]] and lost == [["a"]]
    assert consumer.commits == [{"a": 40, "b": 3}, {"b": 4}]


async def test_without_suspicion_nothing_is_verified() -> None:
    consumer = ScriptedConsumer({"a"})

    async def verify(partitions: list[str]) -> list[str]:
        raise AssertionError("not suspicious: no need to ask the broker")

    committer = Committer(consumer, "t", verify, _nothing_lost)
    committer.mark({"a": 1})
    await committer.close()
    assert consumer.commits == [{"a": 1}] and not committer.suspected
