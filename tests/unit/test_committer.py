"""Background offset commits: coalescing, retries where newer marks win, unassigned partitions, flush on close."""

from __future__ import annotations

import asyncio
from typing import Any

from core.group.committer import Committer
from tests.group.helpers import eventually


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
    committer = Committer(consumer, "t")
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
    committer = Committer(consumer, "t")
    committer.mark({"a": 5, "b": 1})
    await eventually(lambda: consumer.fail == 0, timeout=2)
    committer.mark({"a": 9})  # arrives during the retry delay
    await committer.flush(timeout=3)
    assert consumer.commits[-1] == {"a": 9, "b": 1}
    await committer.close()


async def test_partitions_no_longer_assigned_are_not_committed() -> None:
    consumer = ScriptedConsumer({"a"})
    committer = Committer(consumer, "t")
    committer.mark({"a": 2, "gone": 4})
    await committer.close()
    assert consumer.commits == [{"a": 2}]


async def test_close_with_nothing_marked_returns_at_once() -> None:
    consumer: Any = ScriptedConsumer(set())
    committer = Committer(consumer, "t")
    await asyncio.wait_for(committer.close(), 0.5)
    assert consumer.commits == []
