"""Claims on the real broker: three agents offered the same research event do it once; a claim expires, a
released one is free at once, a done one keeps peers off; the same scheduled job on three machines runs once;
`shoal claims list` shows what is held. The rule itself (core/group/claimbook.py) is checked without a broker
at the end, including clocks that disagree."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.group.claimbook import ClaimBook, Record, fold, parse_time
from core.group.claims import CLAIM
from core.service import AgentCore
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.fixtures.schedule import FakeClock, attach_scheduler, wait_runs
from tests.group.helpers import eventually, group_overrides, member_env, run_cli

NAMES = ("ada", "bo", "cy")


def new_group() -> str:
    return f"c{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def members(
    broker: TansuBroker, tmp_path: Path, names: tuple[str, ...] = NAMES, script: list[Any] | None = None
) -> AsyncIterator[dict[str, AgentCore]]:
    """In-process agents in one fresh group, online and seeing each other."""
    group = new_group()
    async with contextlib.AsyncExitStack() as stack:
        cores: dict[str, AgentCore] = {}
        for name in names:
            over = group_overrides(broker, group, name, tmp_path / name)
            cores[name], _ = await stack.enter_async_context(scripted_core(list(script or ["done"]), overrides=over))
        for core in cores.values():
            await core.group.node.wait_online(15)
        await eventually(lambda: all(len(c.group.members()) == len(names) for c in cores.values()), timeout=20)
        yield cores


async def claim_events(core: AgentCore, key: str) -> list[Any]:
    return [e for e in await core.timeline.events(kind="group.claim") if e.name == key]


async def test_three_agents_offered_the_same_event_do_the_work_once(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    key = "research:event-42"
    async with members(kafka_broker, tmp_path) as cores:
        work: list[str] = []

        async def offered(name: str) -> None:
            async with cores[name].group.node.claims.hold(key, ttl=60) as claim:
                if claim is not None:
                    work.append(name)

        await asyncio.gather(*(offered(name) for name in cores))
        assert len(work) == 1, f"the work was done by {work}"
        [winner] = work
        winner_id = cores[winner].group.node.agent_id
        for name, core in cores.items():
            [event] = await claim_events(core, key)
            if name == winner:
                assert event.status == "ok" and event.payload["outcome"] == "won"
            else:
                assert event.status == "skipped" and event.payload["outcome"] == "skipped"
                assert event.payload["holder"] == {"agentid": winner_id, "name": winner}
        # every member folds the same records to the same holder: the winner, whose work is done
        await eventually(
            lambda: all(
                (h := c.group.node.claims.holder(key)) is not None and h.agentid == winner_id and h.state == "done"
                for c in cores.values()
            )
        )
        # offered the event again, nobody redoes finished work while the done claim lasts
        again = await asyncio.gather(*(c.group.node.claims.try_claim(key, 60) for c in cores.values()))
        assert again == [None, None, None]


async def test_expiry_release_done_and_claims_list(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    async with members(kafka_broker, tmp_path, ("ada", "bo")) as cores:
        ada, bo = cores["ada"].group.node.claims, cores["bo"].group.node.claims

        short = await ada.try_claim("digest:short", 1.0)
        assert short is not None and short.state == "claimed"
        assert await bo.try_claim("digest:short", 30) is None, "a live claim is respected"
        expiry = parse_time(short.expiresat)
        assert expiry is not None
        await eventually(lambda: datetime.now(UTC) > expiry + timedelta(milliseconds=50), timeout=5)
        taken = await bo.try_claim("digest:short", 30)
        assert taken is not None and taken.agentid == cores["bo"].group.node.agent_id, "an expired claim is free"

        held = await ada.try_claim("digest:release", 600)
        assert held is not None and await bo.try_claim("digest:release", 600) is None
        await ada.release(held)
        await eventually(lambda: (h := bo.holder("digest:release")) is not None and h.state == "released")
        again = await bo.try_claim("digest:release", 600)
        assert again is not None, "a released claim is taken at once, long before its ttl"

        finished = await ada.try_claim("digest:done", 0.5)
        assert finished is not None
        await ada.done(finished, keep=600)
        await eventually(lambda: (h := bo.holder("digest:done")) is not None and h.state == "done")
        await eventually(lambda: datetime.now(UTC) > parse_time(finished.expiresat), timeout=5)  # type: ignore[operator]
        assert await bo.try_claim("digest:done", 30) is None, "done keeps peers off past the claim's own ttl"

        env = member_env(kafka_broker, cores["ada"].settings.group.name, "cli", tmp_path / "cli")
        listed = await run_cli(env, "claims", "list", "--json")
        assert listed.code == 0, listed.stderr
        live = {c["workkey"]: c for c in json.loads(listed.stdout)}
        assert set(live) == {"digest:short", "digest:release", "digest:done"}
        assert live["digest:done"]["state"] == "done" and live["digest:done"]["holdername"] == "ada"
        assert live["digest:release"]["holdername"] == "bo" and live["digest:short"]["holdername"] == "bo"
        table = await run_cli(env, "claims", "list")
        assert "digest:done" in table.stdout and "ada" in table.stdout and "done" in table.stdout


async def test_a_scheduled_job_on_three_machines_runs_once(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    answer = "Three new papers on tidal energy."
    async with members(kafka_broker, tmp_path, script=[answer]) as cores:
        clock = FakeClock()
        schedulers = {name: attach_scheduler(core, clock) for name, core in cores.items()}
        for scheduler in schedulers.values():  # the same job, added on each machine
            await scheduler.add_job("Look for new papers", cron="0 8 * * 1-5", name="Research", group_claim="papers")
            await scheduler.start()
        clock.advance(hours=1, seconds=5)
        runs = {
            name: (await wait_runs(s, lambda rs: any(r.status in ("ok", "skipped", "failed") for r in rs), 30))[0]
            for name, s in schedulers.items()
        }
        statuses = sorted(run.status for run in runs.values())
        assert statuses == ["ok", "skipped", "skipped"], {n: (r.status, r.summary, r.error) for n, r in runs.items()}
        [winner] = [name for name, run in runs.items() if run.status == "ok"]
        assert runs[winner].summary == answer
        key = f"schedule:papers@{runs[winner].scheduled_for}"
        for name, run in runs.items():
            if name != winner:
                assert run.summary == f"Run by {winner} in group {cores[name].settings.group.name} (claim {key})."
                [event] = await claim_events(cores[name], key)
                assert (
                    event.status == "skipped"
                    and event.session_id == (await schedulers[name].get_job("Research")).session_id
                )


# --- the rule, without a broker ------------------------------------------------------------------------------

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def rec(
    offset: int, agent: str, state: str = "claimed", *, at: float = 0.0, ttl: float = 60.0, cid: str = ""
) -> Record:
    return Record("k", cid or f"{agent}-c", state, agent, T0 + timedelta(seconds=at), int(ttl * 1000), (0, offset))


def test_the_earliest_live_claim_by_offset_wins_whatever_the_clocks_say() -> None:
    # bo's clock runs 30 s ahead, so its claim carries the later time, but ada's claim is later on the topic
    hold, verdicts = fold([rec(2, "ada", at=0), rec(1, "bo", at=30), rec(3, "cy", at=1)])
    assert verdicts == {"bo-c": True, "ada-c": False, "cy-c": False}
    assert hold is not None and hold.record.agentid == "bo"


def test_expiry_release_and_done_follow_the_records() -> None:
    _, verdicts = fold([rec(1, "ada", ttl=10), rec(2, "bo", at=11)])
    assert verdicts["bo-c"], "a claim is free once the holder's ttl passed (by the new claim's envelope time)"
    _, verdicts = fold([rec(1, "ada"), rec(2, "bo", "released", cid="ada-c"), rec(3, "cy", at=1)])
    assert not verdicts["cy-c"], "only the holder itself can release its claim"
    _, verdicts = fold([rec(1, "ada"), rec(2, "bo", at=1), rec(3, "ada", "released", at=2), rec(4, "cy", at=3)])
    assert verdicts == {"ada-c": True, "bo-c": False, "cy-c": True}, "a loser never holds the key"
    hold, verdicts = fold([rec(1, "ada", ttl=5), rec(2, "ada", "done", at=4, ttl=100), rec(3, "bo", at=50)])
    assert not verdicts["bo-c"] and hold is not None and hold.state == "done"
    _, verdicts = fold([rec(1, "ada"), rec(2, "ada", at=1)])
    assert verdicts == {"ada-c": True}, "the same claim read twice is one claim"


def test_the_book_lists_live_claims_and_forgets_dead_keys() -> None:
    book = ClaimBook()
    book.add(rec(1, "ada", ttl=60))
    book.add(Record("old", "x", "claimed", "bo", T0 - timedelta(hours=2), 1000, (0, 0)))
    assert [c.workkey for c in book.live(T0 + timedelta(seconds=1))] == ["k"]
    assert book.live(T0 + timedelta(seconds=61)) == []
    book.prune(T0 + timedelta(seconds=30))
    assert len(book) == 1 and book.holder("k") is not None and book.holder("old") is None


def test_a_claim_envelope_matches_the_schema() -> None:
    from jsonschema import Draft202012Validator

    from core.group.envelope import make
    from core.group.identity import Identity
    from core.timeline.ids import TraceContext
    from tests.unit.test_envelope_rules import SCHEMA_PATH

    schema = json.loads(SCHEMA_PATH.read_text())
    data = {"workkey": "research:1", "claimid": "abc", "ttlms": 1000, "expiresat": "2026-11-21T08:00:01Z",
            "state": "claimed"}  # fmt: skip
    envelope = make(Identity.generate(), "team", CLAIM, data, correlationid="research:1", trace=TraceContext.new_root())
    Draft202012Validator(schema).validate(envelope.attrs)
    bad = make(Identity.generate(), "team", CLAIM, {**data, "state": "taken"}, correlationid="x",
               trace=TraceContext.new_root())  # fmt: skip
    assert not Draft202012Validator(schema).is_valid(bad.attrs)
