"""The echo skill as the group robustness tests use it: a worker whose runs are counted, and its results read
off the responses topic; and a long task that reports `step n of m` as the test lets it go on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from core.group.envelope import TASK_RESULT
from core.group.topics import topic
from core.group.worker import SkillCall
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import read_topic

ECHO = [{"name": "echo", "handler": "echo"}]


class CountingEcho:
    """The echo handler, counting every task it actually runs."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, call: SkillCall) -> AsyncIterator[str]:
        self.calls.append(call.taskid)
        yield call.input


def counting_worker(core: Any) -> CountingEcho:
    runner = CountingEcho()
    core.group.worker.runners["echo"] = runner
    return runner


def results_for(records: list[Any], taskid: str) -> list[dict[str, Any]]:
    out = []
    for record in records:
        envelope = json.loads(record.value)
        if envelope["type"] == TASK_RESULT and envelope.get("data", {}).get("taskid") == taskid:
            out.append(envelope)
    return out


async def responses_until(broker: TansuBroker, group: str, taskid: str, count: int) -> list[dict[str, Any]]:
    records = await read_topic(
        broker.bootstrap,
        topic(group, "responses"),
        lambda rs: len(results_for(rs, taskid)) >= count,
        timeout=20,
    )
    return results_for(records, taskid)


STEPS = 3  # the steps of `SteppingSkill`


class SteppingSkill:
    """A long task: reports `step n of 3`, then waits for the test to let it go on."""

    def __init__(self) -> None:
        self.proceed = asyncio.Event()
        self.at = 0

    async def __call__(self, call: SkillCall) -> AsyncIterator[str]:
        for n in range(1, STEPS + 1):
            call.step(n, STEPS, f"reading part {n}")
            self.at = n
            await self.proceed.wait()
            self.proceed.clear()
        yield f"read {STEPS} parts of {call.input}"
