"""The outbox sender against a scripted producer: hand-off, pipelining, order, failure and reload, deletes.

The real path (aiokafka against the Tansu broker, with broker outages) is in tests/group; these pin down the
logic that is hard to provoke there: which rows go out again after a failure, and in which order.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from core.group.envelope import make
from core.group.identity import Identity
from core.group.outbox import Outbox, OutboxSender, OutItem, OutRow, write_rows
from core.timeline.db import Database
from core.timeline.ids import TraceContext
from core.timeline.migrations import migrate
from tests.group.helpers import eventually


class ScriptedProducer:
    """Records what is produced; acknowledges at once, or holds acks, or fails sends, as the test says."""

    def __init__(self) -> None:
        self.produced: list[bytes] = []
        self.hold = False
        self.fail_next_acks = 0
        self.refuse = False
        self.held: list[asyncio.Future[Any]] = []

    async def __call__(self, topic: str, key: str | None, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        if self.refuse:
            raise ConnectionError("broker away")
        self.produced.append(value)
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail_next_acks:
            self.fail_next_acks -= 1
            ack.set_exception(ConnectionError("request timed out"))
        elif self.hold:
            self.held.append(ack)
        else:
            ack.set_result(None)
        return ack

    def release(self) -> None:
        for ack in self.held:
            ack.set_result(None)
        self.held.clear()


@pytest.fixture
async def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = Database(tmp_path / "o.db", migrate=migrate)
    await database.start()
    yield database
    await database.stop()


IDENTITY = Identity.generate()


async def write(db: Database, count: int, start: int = 0) -> list[OutRow]:
    envelopes = [
        make(IDENTITY, "g", "shoal.task.progress", {"n": start + n}, correlationid="c", trace=TraceContext.new_root())
        for n in range(count)
    ]
    items = [OutItem(e, "group.g.progress", "k") for e in envelopes]

    def insert(conn: sqlite3.Connection) -> list[OutRow]:
        return write_rows(conn, items)

    return await db.write(insert)


def numbers(values: list[bytes]) -> list[int]:
    import json

    return [json.loads(v)["data"]["n"] for v in values]


async def recovered() -> None:
    return None


def held_sender(db: Database) -> tuple[ScriptedProducer, OutboxSender]:
    """A started sender whose producer holds every acknowledgement until `release()`."""
    producer = ScriptedProducer()
    producer.hold = True
    sender = OutboxSender(Outbox(db), producer, recovered)
    sender.start()
    return producer, sender


async def test_handed_rows_go_out_without_a_table_read_and_are_deleted_after_the_ack(db: Database) -> None:
    producer = ScriptedProducer()
    sender = OutboxSender(Outbox(db), producer, recovered)
    sender.start()
    await eventually(lambda: sender._reload is False, timeout=5)  # the start-up read of the table is done
    producer.hold = True
    sender.hand(await write(db, 3))
    await eventually(lambda: len(producer.produced) == 3, timeout=5)
    assert await Outbox(db).depth() == 3  # not acknowledged yet: still in the table
    producer.release()
    await eventually(lambda: sender.sent == 3, timeout=5)
    assert await Outbox(db).depth() == 0
    assert numbers(producer.produced) == [0, 1, 2]
    await sender.stop()


async def test_sends_do_not_wait_for_earlier_acks(db: Database) -> None:
    producer, sender = held_sender(db)
    sender.hand(await write(db, 2))
    await eventually(lambda: len(producer.produced) == 2, timeout=5)
    sender.hand(await write(db, 2, start=2))
    await eventually(lambda: len(producer.produced) == 4, timeout=5)  # while the first two are unacknowledged
    assert numbers(producer.produced) == [0, 1, 2, 3]
    producer.release()
    await sender.stop()


async def test_rows_left_by_a_previous_run_go_first_and_once(db: Database) -> None:
    await write(db, 3)  # a crash left these
    producer = ScriptedProducer()
    sender = OutboxSender(Outbox(db), producer, recovered)
    sender.start()
    sender.hand(await write(db, 2, start=3))
    await eventually(lambda: sender.sent == 5, timeout=5)
    assert numbers(producer.produced) == [0, 1, 2, 3, 4]
    await sender.stop()


async def test_a_failed_ack_resends_from_the_table_in_order_after_recovery(db: Database) -> None:
    producer = ScriptedProducer()
    recoveries: list[int] = []
    states: list[bool] = []

    async def recover() -> None:
        recoveries.append(1)

    sender = OutboxSender(Outbox(db), producer, recover, lambda ok, err: states.append(ok))
    sender.start()
    producer.fail_next_acks = 1
    sender.hand(await write(db, 3))
    await eventually(lambda: sender.sent == 3, timeout=10)
    assert recoveries and states == [False, True] and sender.healthy
    assert numbers(producer.produced)[:3] == [0, 1, 2]
    assert sorted(set(numbers(producer.produced))) == [0, 1, 2]  # the failed one went again
    assert numbers(producer.produced).count(0) == 2
    assert await Outbox(db).depth() == 0
    await sender.stop()


async def test_broker_away_keeps_rows_and_reports_then_sends_everything(db: Database) -> None:
    producer = ScriptedProducer()
    producer.refuse = True
    states: list[bool] = []
    sender = OutboxSender(Outbox(db), producer, recovered, lambda ok, err: states.append(ok))
    sender.start()
    sender.hand(await write(db, 2))
    await eventually(lambda: states == [False], timeout=5)
    assert sender.last_error is not None and not sender.healthy
    sender.hand(await write(db, 1, start=2))  # written while the broker is away
    attempts = await db.read(lambda c: c.execute("SELECT max(attempts) FROM group_outbox").fetchone()[0])
    assert attempts >= 1 and await Outbox(db).depth() == 3
    producer.refuse = False
    await eventually(lambda: sender.sent == 3, timeout=10)
    assert numbers(producer.produced) == [0, 1, 2] and states[-1] is True
    await sender.stop()


async def test_stop_waits_for_the_queue_then_leaves_the_rest_for_next_time(db: Database) -> None:
    producer, sender = held_sender(db)
    sender.hand(await write(db, 2))
    await eventually(lambda: len(producer.produced) == 2, timeout=5)
    await sender.stop(timeout=0.2)  # never acknowledged: the rows stay for the next start
    assert await Outbox(db).depth() == 2
    await sender.stop()  # idempotent
    again = ScriptedProducer()
    sender = OutboxSender(Outbox(db), again, recovered)
    sender.start()
    await eventually(lambda: sender.sent == 2, timeout=5)
    assert numbers(again.produced) == [0, 1]
    await sender.stop()


async def test_an_acknowledgement_that_never_comes_counts_as_a_failure_and_the_row_goes_again(db: Database) -> None:
    producer = ScriptedProducer()
    producer.hold = True  # a producer stuck after a broker restart: the acks never come
    states: list[bool] = []
    sender = OutboxSender(Outbox(db), producer, recovered, lambda ok, err: states.append(ok), ack_timeout=0.3)
    sender.start()
    sender.hand(await write(db, 2))
    await eventually(lambda: len(producer.produced) >= 4, timeout=10)  # both sent again
    assert numbers(producer.produced)[:4] == [0, 1, 0, 1] and states[0] is False
    producer.release()
    await eventually(lambda: sender.sent >= 2, timeout=5)
    await eventually(lambda: sender._owned == set(), timeout=5)
    assert await Outbox(db).depth() == 0
    await sender.stop()
