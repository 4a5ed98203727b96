"""Claims on the real broker: three agents offered the same research event do it once; a claim expires, a
released one is free at once, a done one keeps peers off; the same scheduled job on three machines runs once;
`shoal claims list` shows what is held; a claim dated far from when it was sent counts for nothing, an agent
whose clock the group disagrees with does not claim, and a claim slow to come back is followed, not dropped.
The rule itself (core/group/claimbook.py) is checked without a broker at the end, including clocks that
disagree, forgetting dead keys, and the verdict `try_claim` returns when a later claim arrives with ours."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError, NetworkError
from core.group.claimbook import MAX_SKEW, NEVER, ClaimBook, Record, fold, iso, parse_record
from core.group.claims import CLAIM, Claims, clock_offset
from core.group.envelope import canonical
from core.service import AgentCore
from core.timeline.ids import parse_iso
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.fixtures.schedule import FakeClock, attach_scheduler, wait_runs
from tests.group.helpers import RawPeer, eventually, group_overrides, member_env, run_cli

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
        expiry = parse_iso(short.expiresat)
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
        await eventually(lambda: datetime.now(UTC) > parse_iso(finished.expiresat), timeout=5)  # type: ignore[operator]
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


def dated(peer: RawPeer, event_type: str, data: dict[str, Any], when: datetime, **attrs: Any) -> dict[str, Any]:
    """A peer's envelope whose `time` says `when` (signed again), sent with a Kafka timestamp of now."""
    envelope = {**peer.envelope(event_type, data, **attrs), "time": iso(when)}
    body = {k: v for k, v in envelope.items() if k != "signature"}
    return {**body, "signature": peer.identity.sign(canonical(body))}


def peer_claim(peer: RawPeer, key: str, when: datetime, ttlms: int = 60_000) -> dict[str, Any]:
    data = {"workkey": key, "claimid": uuid.uuid4().hex, "ttlms": ttlms, "expiresat": iso(when), "state": "claimed"}
    return dated(peer, CLAIM, data, when, correlationid=key)


async def test_a_claim_dated_far_from_when_it_was_sent_counts_for_nothing(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    group = new_group()
    over = group_overrides(kafka_broker, group, "ada", tmp_path / "ada")
    async with scripted_core(["done"], overrides=over) as (core, _), RawPeer(kafka_broker, group, "mallory") as m:
        node = core.group.node
        await node.wait_online(15)
        await m.announce()
        await eventually(lambda: node.roster.key_for(m.agent_id) is not None)
        held = await node.claims.try_claim("job", 600)
        assert held is not None
        now = datetime.now(UTC)
        end_of_time = peer_claim(m, "victim", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), ttlms=1)
        an_hour_ahead = peer_claim(m, "job", now + timedelta(hours=1))  # would take ada's live key
        for envelope in (end_of_time, an_hour_ahead, peer_claim(m, "marker", now)):
            await m.send("claims", envelope, key=envelope["data"]["workkey"])
        await eventually(lambda: node.claims.holder("marker") is not None)  # read: so are the two before it
        assert node.claims.holder("victim") is None and len(node.claims.live()) == 2, "no overflow, nothing held"
        assert node.claims.book.verdict("job", an_hour_ahead["data"]["claimid"]) is None
        assert (holder := node.claims.holder("job")) is not None and holder.claimid == held.claimid
        env = member_env(kafka_broker, group, "cli", tmp_path / "cli")
        listed = await run_cli(env, "claims", "list", "--json")
        assert listed.code == 0, listed.stderr
        assert {c["workkey"]: c["holdername"] for c in json.loads(listed.stdout)} == {"job": "ada", "marker": "mallory"}
        assert await node.claims.try_claim("victim", 30) is not None, "the key stays free for an honest claim"


async def test_an_agent_whose_clock_the_group_disagrees_with_does_not_claim(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    from core.group.envelope import ROSTER_ANNOUNCE

    group = new_group()
    over = group_overrides(kafka_broker, group, "ada", tmp_path / "ada")
    async with (
        scripted_core(["done"], overrides=over) as (core, _),
        RawPeer(kafka_broker, group, "bo") as bo,
        RawPeer(kafka_broker, group, "cy") as cy,
    ):
        node = core.group.node
        await node.wait_online(15)
        ahead = datetime.now(UTC) + timedelta(hours=1)  # bo's clock (or ada's, who can tell?) is an hour off
        card = dated(bo, ROSTER_ANNOUNCE, bo.card(), ahead, correlationid=bo.agent_id)
        await bo.send("announce", card, key=bo.agent_id)
        await eventually(lambda: node.roster.get(bo.agent_id) is not None)
        with pytest.raises(ConfigError, match="clock is about 3600 s behind"):
            await node.claims.try_claim("digest", 60)
        await cy.announce()  # a second peer agrees with ada: the odd one out is bo
        await eventually(lambda: node.roster.get(cy.agent_id) is not None)
        claim = await node.claims.try_claim("digest", 60)
        assert claim is not None
        assert node.claims.book.outcome("digest", claim.claimid) == (True, claim), "the refusal sent no claim"
        assert [c.claimid for c in node.claims.live()] == [claim.claimid]


async def test_a_claim_slow_to_come_back_is_followed_so_somebody_does_the_work(
    kafka_broker: TansuBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with members(kafka_broker, tmp_path, ("ada", "bo")) as cores:
        ada, bo = cores["ada"].group.node, cores["bo"].group.node
        inbox = next(r for r in ada.readers if r.name == "inbox")
        real, gate = inbox.handler, asyncio.Event()

        async def lagging(accepted: Any, rejected: Any) -> None:  # ada's inbox falls behind until `gate`
            await gate.wait()
            await real(accepted, rejected)

        inbox.handler = lagging
        key = "schedule:papers@2026-11-21T08:00:00Z"
        attempt = asyncio.create_task(ada.claims.try_claim(key, 600, wait=0.5))
        await eventually(lambda: bo.claims.holder(key) is not None)  # ada's claim is on the broker: bo sees it
        assert await bo.claims.try_claim(key, 600) is None, "bo skips: ada's claim came first"
        await eventually(lambda: f"the claim for {key} is not back after 0.5 s; following it" in caplog.text)
        assert not attempt.done(), "past its wait, ada neither gave up nor released the claim"
        gate.set()
        inbox.handler = real
        claim = await attempt
        assert claim is not None and claim.agentid == ada.agent_id, "ada does the work bo skipped for"
        [event] = await claim_events(cores["ada"], key)
        assert event.status == "ok"
        assert (holder := bo.claims.holder(key)) is not None and holder.state == "claimed", "and never released it"


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


def test_a_claim_time_out_of_range_or_far_from_its_kafka_timestamp_is_ignored() -> None:
    data = {"workkey": "k", "claimid": "c", "ttlms": 1000, "state": "claimed"}
    sent_ms = int(T0.timestamp() * 1000)
    assert parse_record(data, "a", iso(T0), (0, 1), sent_ms) is not None
    assert parse_record(data, "a", "9999-12-31T23:59:59.999Z", (0, 1)) is None, "out of range even unchecked"
    assert parse_record(data, "a", "0001-01-01T00:00:00Z", (0, 1)) is None
    late = iso(T0 + MAX_SKEW + timedelta(seconds=1))
    assert parse_record(data, "a", late, (0, 1), sent_ms) is None, "dated ahead of when it was produced"
    assert parse_record(data, "a", iso(T0 - MAX_SKEW - timedelta(seconds=1)), (0, 1), sent_ms) is None
    assert parse_record(data, "a", late, (0, 1), None) is not None, "no Kafka timestamp: only the range counts"
    # a hand-made record at the end of the calendar does not overflow the rule or the views
    book = ClaimBook()
    book.add(Record("far", "c", "claimed", "a", datetime(9999, 12, 31, 23, 59, tzinfo=UTC), 60_000, (0, 1)))
    assert (holder := book.holder("far")) is not None and holder.expiresat == iso(NEVER)
    assert [c.workkey for c in book.live(T0)] == ["far"]


def test_done_after_expiry_counts_for_nothing_so_forgetting_a_key_changes_no_verdict() -> None:
    late_done = rec(2, "ada", "done", at=15 * 60, ttl=3600, cid="ada-c")  # the work overran the 60 s claim
    later = rec(3, "bo", at=20 * 60)
    everything, forgetful = ClaimBook(), ClaimBook()
    for record in (rec(1, "ada"), late_done, later):
        everything.add(record)
    forgetful.add(rec(1, "ada"))
    forgetful.add(Record("other", "x", "released", "cy", T0 + timedelta(minutes=12), 0, (0, 9)))  # read so far
    forgetful.prune(T0 + timedelta(minutes=12))
    assert forgetful.holder("k") is None, "the dead key was forgotten"
    forgetful.add(late_done)
    forgetful.add(later)
    assert everything.verdict("k", "bo-c") is True and forgetful.verdict("k", "bo-c") is True
    # a done in time still keeps peers off past the claim's own ttl
    _, verdicts = fold([rec(1, "ada", ttl=60), rec(2, "ada", "done", at=59, ttl=3600), rec(3, "bo", at=120)])
    assert verdicts["bo-c"] is False
    # pruning waits for the records read, not only the local clock: a lagging reader forgets nothing early
    lagging = ClaimBook()
    lagging.add(rec(1, "ada"))
    lagging.prune(T0 + timedelta(hours=1))
    assert lagging.holder("k") is not None


def test_a_claim_never_dates_itself_before_the_keys_previous_record() -> None:
    # ada released at 100 s; bo's clock runs 90 s behind, so its claim says 10 s: it starts at 100 s anyway,
    # and cy (whose clock is right) cannot take it at 75 s of bo's ttl
    records = [rec(1, "ada", ttl=200), rec(2, "ada", "released", at=100), rec(3, "bo", at=10), rec(4, "cy", at=145)]
    hold, verdicts = fold(records)
    assert verdicts == {"ada-c": True, "bo-c": True, "cy-c": False}
    assert hold is not None and hold.claim().claimedat == iso(T0 + timedelta(seconds=100))


def test_the_clock_check_refuses_only_when_most_peers_disagree() -> None:
    from core.group.identity import Identity, PublicKey
    from core.group.roster import Member

    wall, mono = T0.timestamp(), 1000.0

    def peer(name: str, clock_off: float, heard_ago: float = 1.0) -> Member:
        identity = Identity.generate()
        sent = T0 - timedelta(seconds=heard_ago) + timedelta(seconds=clock_off)
        key = PublicKey(identity.public_b64)
        return Member(identity.agent_id, name, key, last_seen=mono - heard_ago, last_announce=iso(sent))

    me = peer("me", 0.0)
    assert clock_offset([me], me.agentid, mono=mono, wall=wall) is None, "alone: nobody to disagree with"
    assert clock_offset([me, peer("bo", 3600)], me.agentid, mono=mono, wall=wall) == pytest.approx(3600)
    assert clock_offset([me, peer("bo", 3600), peer("cy", 2)], me.agentid, mono=mono, wall=wall) is None
    behind = [peer("bo", -3600), peer("cy", -3590), peer("dee", 1)]
    assert clock_offset(behind, me.agentid, mono=mono, wall=wall) == pytest.approx(-3595)


class StubNode:
    """What `Claims` uses of a node, without Kafka: `sent` holds the payloads it published."""

    agent_id = "me"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.roster = type("Roster", (), {"get": staticmethod(lambda _id: None), "members": staticmethod(list)})()
        self.timeline = type("Timeline", (), {"record": staticmethod(lambda *a, **k: asyncio.sleep(0))})()

    def on_early(self, *_args: Any) -> None:
        pass

    async def publish(self, _type: str, data: dict[str, Any], **_options: Any) -> None:
        self.sent.append(dict(data))


def incoming(data: dict[str, Any], agent: str, at: datetime, offset: int, sent: datetime | None = None) -> Any:
    envelope = type("Envelope", (), {"data": data, "agentid": agent, "time": iso(at)})()
    stamp = int((sent or at).timestamp() * 1000)
    return type("Incoming", (), {"envelope": envelope, "partition": 0, "offset": offset, "timestamp": stamp})()


async def test_try_claim_returns_its_own_claim_when_a_later_winner_comes_in_the_same_batch() -> None:
    node = StubNode()
    claims = Claims(node)  # type: ignore[arg-type]
    attempt = asyncio.create_task(claims.try_claim("k", 0.05, wait=5))
    await eventually(lambda: bool(node.sent))
    now = datetime.now(UTC)
    claims._observe(incoming(node.sent[0], "me", now, 10), None)  # type: ignore[arg-type]
    peer = {"workkey": "k", "claimid": "peer", "ttlms": 60_000, "state": "claimed"}
    claims._observe(incoming(peer, "bo", now + timedelta(seconds=1), 11), None)  # type: ignore[arg-type]
    claim = await attempt
    assert claim is not None and claim.claimid == node.sent[0]["claimid"] and claim.agentid == "me"
    assert claims.holder("k") is not None and claims.holder("k").agentid == "bo"  # type: ignore[union-attr]


async def test_a_claim_that_comes_back_too_late_to_count_is_a_network_error() -> None:
    node = StubNode()
    claims = Claims(node)  # type: ignore[arg-type]
    attempt = asyncio.create_task(claims.try_claim("k", 600, wait=5))
    await eventually(lambda: bool(node.sent))
    made = datetime.now(UTC)
    late = made + MAX_SKEW + timedelta(seconds=5)  # it sat in the outbox through a broker outage
    claims._observe(incoming(node.sent[0], "me", made, 10, sent=late), None)  # type: ignore[arg-type]
    with pytest.raises(NetworkError, match="did not come back in time to count"):
        await attempt
    assert len(node.sent) == 1, "nothing to release: the claim counts for nobody"


def test_a_claim_record_outlives_the_longest_hold_it_can_start() -> None:
    from core.group import topics
    from core.group.claimbook import MAX_TTL_MS
    from core.settings import GroupSettings

    week = MAX_TTL_MS / 1000
    # a done near the end of a week-long claim, asking for another week: held a week from the claim, no more
    hold, _ = fold([rec(1, "ada", ttl=week), rec(2, "ada", "done", at=week - 60, ttl=week)])
    assert hold is not None and hold.state == "done" and hold.until == T0 + timedelta(seconds=week)
    specs = {s.name: s for s in topics.group_topics(GroupSettings(name="team", retention_hours=2))}
    assert specs["group.team.claims"].retention_ms == topics.CLAIMS_RETENTION_MS > MAX_TTL_MS
    assert specs["group.team.requests"].retention_ms == 2 * 3_600_000
    long = {s.name: s for s in topics.group_topics(GroupSettings(name="team", retention_hours=24 * 30))}
    assert long["group.team.claims"].retention_ms == 24 * 30 * 3_600_000
