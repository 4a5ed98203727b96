"""The scheduler when something goes wrong: the end of a run fails to write, a dead owner's pid is reused, a job
cannot be started (a damaged row, a failing database), the time zone changes, a job is deleted by another
process while it runs. Each case used to block a job (or all of them) until a restart, or to spin the loop."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.errors import StorageError, UserError
from core.schedule import Run, Scheduler, execution, owners
from core.schedule.clock import to_iso
from core.schedule.owners import HOST, STALE_AFTER
from tests.fixtures.cores import scripted_core
from tests.fixtures.schedule import MONDAY_7AM, FakeClock, attach_scheduler, wait_runs

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def ended(runs: list[Run], count: int = 1) -> bool:
    return sum(r.status in ("ok", "failed", "cancelled") for r in runs) >= count


async def test_a_run_whose_end_fails_to_write_once_is_still_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    """The end is written again without its event, instead of leaving the row `running` (every later time
    `skipped`, Run now "already running") until a restart."""
    monkeypatch.setattr(execution, "FINISH_RETRY_DELAYS", (0.0, 0.0), raising=False)
    async with scripted_core(["first", "second"]) as (core, _provider):
        scheduler = attach_scheduler(core, FakeClock())
        job = await scheduler.add_job("Ping", every="1h")
        record, failures = core.timeline.record, [1]

        async def flaky(kind: str, **kwargs: Any) -> Any:
            if kind == "schedule.run" and failures:
                failures.pop()
                raise StorageError("database is locked", "Try again.")
            return await record(kind, **kwargs)

        monkeypatch.setattr(core.timeline, "record", flaky)
        run = await scheduler.run_now(job.id)
        assert run.status == "ok" and (await scheduler.get_run(run.id)).status == "ok"
        again = await scheduler.run_now(job.id)
        assert again.status == "ok" and again.summary == "second"


async def test_a_run_whose_end_cannot_be_written_at_all_does_not_block_its_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Even when every write of the end fails, the row is no longer held by this process: the next claim
    closes it as failed instead of refusing the job until a restart."""
    monkeypatch.setattr(execution, "FINISH_RETRY_DELAYS", (0.0, 0.0), raising=False)
    async with scripted_core(["lost", "next"]) as (core, _provider):
        scheduler = attach_scheduler(core, FakeClock())
        job = await scheduler.add_job("Ping", every="1h")
        record, real_bare, failing = core.timeline.record, getattr(scheduler.store, "finish_bare", None), [True]

        async def no_end(kind: str, **kwargs: Any) -> Any:  # the turn itself is recorded; the run's end is not
            if kind == "schedule.run" and failing:
                raise StorageError("disk I/O error", "Free some space.")
            return await record(kind, **kwargs)

        async def no_bare_end(*args: Any, **kwargs: Any) -> Any:
            if failing:
                raise StorageError("disk I/O error", "Free some space.")
            assert real_bare is not None
            return await real_bare(*args, **kwargs)

        monkeypatch.setattr(core.timeline, "record", no_end)
        monkeypatch.setattr(scheduler.store, "finish_bare", no_bare_end, raising=False)
        with pytest.raises(StorageError):
            await scheduler.run_now(job.id)
        [stuck] = await scheduler.runs()
        assert stuck.status == "running"
        failing.clear()
        again = await scheduler.run_now(job.id)
        assert again.status == "ok" and again.summary == "next"
        closed = await scheduler.get_run(stuck.id)
        assert closed.status == "failed" and closed.error == "Shoal stopped before this run finished."


async def test_a_same_process_row_the_scheduler_does_not_hold_is_stale() -> None:
    async with scripted_core(["ran"]) as (core, _provider):
        scheduler = attach_scheduler(core, FakeClock())
        job = await scheduler.add_job("Ping", every="1h")
        await _orphan(core, job.id, scheduler._owner)  # this scheduler's owner, but not a run it has in flight
        assert (await scheduler.run_now(job.id)).status == "ok"
        assert (await scheduler.get_run("orphan")).status == "failed"


async def test_an_orphaned_run_whose_pid_was_reused_is_stale() -> None:
    """After a crash and a reboot another process can hold the dead owner's pid: its start time tells them apart."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc: the owner's start time cannot be read here")
    reused = os.getppid()  # alive, and not the process that claimed the run
    async with scripted_core(["ran"]) as (core, _provider):
        scheduler = attach_scheduler(core, FakeClock())
        job = await scheduler.add_job("Ping", every="1h")
        await _orphan(core, job.id, f"{HOST}:{reused}:deadbeef:00000000.1")
        assert (await scheduler.run_now(job.id)).status == "ok"
        assert (await scheduler.get_run("orphan")).status == "failed"


def test_owner_staleness_by_start_time_and_age() -> None:
    now = datetime.now(UTC)
    alive = os.getppid()
    mark = owners.process_start(alive)
    if mark is None:
        pytest.skip("no /proc: the owner's start time cannot be read here")
    assert not owners.is_stale(f"{HOST}:{alive}:tok:{mark}", now, now)
    assert owners.is_stale(f"{HOST}:{alive}:tok:{mark}9", now, now), "the same pid, started at another time"
    old_format = f"{HOST}:{alive}:tok"  # no start time: trusted, but only for STALE_AFTER
    assert not owners.is_stale(old_format, now, now)
    assert owners.is_stale(old_format, now - STALE_AFTER - timedelta(minutes=1), now)
    assert owners.is_stale(f"other-host:{alive}:tok:{mark}", now - STALE_AFTER - timedelta(minutes=1), now)


async def _orphan(core: Any, job_id: str, owner: str) -> None:
    def write(conn: Any) -> None:
        conn.execute(
            "INSERT INTO schedule_runs (id, job_id, status, trigger, owner, created_at) "
            "VALUES ('orphan', ?, 'running', 'manual', ?, ?)",
            (job_id, owner, to_iso(datetime.now(UTC))),
        )

    await core.db.write(write)


async def test_a_damaged_job_is_recorded_once_and_does_not_block_the_others() -> None:
    clock = FakeClock()
    async with scripted_core(["healthy"]) as (core, _provider):
        scheduler = attach_scheduler(core, clock)
        bad = await scheduler.add_job("Damaged", every="5m", name="damaged")
        good = await scheduler.add_job("Fine", at="07:10", name="fine")
        await core.db.write(lambda conn: conn.execute("UPDATE schedule_jobs SET expr = '0m' WHERE id = ?", (bad.id,)))
        await scheduler.start()
        clock.advance(minutes=10)
        runs = await wait_runs(scheduler, lambda runs: any(r.status == "ok" for r in runs))
        assert next(r for r in runs if r.status == "ok").job_id == good.id, "the damaged job blocked the tick"
        await asyncio.sleep(0.3)  # several more passes: the same error is recorded once, not on each
        [fault] = [r for r in await scheduler.runs() if r.job_id == bad.id]
        assert fault.status == "failed" and fault.error is not None and "ZeroDivisionError" in fault.error
        assert (await scheduler.get_job(bad.id)).last_status == "failed"


async def test_a_job_that_keeps_failing_to_start_does_not_spin_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    async with scripted_core([]) as (core, _provider):
        scheduler = attach_scheduler(core, clock, poll=0.05)
        await scheduler.add_job("Ping", every="5m")
        attempts: list[int] = []

        async def failing_claim(*args: Any, **kwargs: Any) -> Any:
            attempts.append(1)
            raise StorageError("database is locked", "Close other programs using it.")

        monkeypatch.setattr(scheduler.store, "claim", failing_claim)
        await scheduler.start()
        clock.advance(minutes=5)
        scheduler.wake()
        await asyncio.sleep(0.5)
        assert 1 <= len(attempts) <= 15, f"{len(attempts)} attempts in 0.5 s with a poll of 0.05 s"
        assert scheduler.running


async def test_cron_jobs_follow_a_change_of_time_zone() -> None:
    """A daily 08:00 job keeps 08:00 on the new wall clock; a one-off keeps its instant; an interval its phase."""
    clock, zone = FakeClock(), _Zone(BERLIN)
    async with scripted_core([]) as (core, _provider):
        scheduler = Scheduler(core, clock=clock, zone=zone, poll=0.05)
        core.schedule = scheduler
        daily = await scheduler.add_job("Morning", cron="0 8 * * *")
        once = await scheduler.add_job("Call", at="2026-06-02 09:00")
        every = await scheduler.add_job("Poll", every="2h")
        assert daily.next_run == "2026-06-02T06:00:00.000000Z"  # 08:00 in Berlin (07:00 UTC now is 09:00 there)
        await scheduler.start()
        await asyncio.sleep(0.1)
        zone.now = NEW_YORK
        moved = await _wait_job(scheduler, daily.id, lambda job: job.next_run == "2026-06-01T12:00:00.000000Z")
        assert moved.enabled  # 08:00 in New York, today: it is 03:00 there
        assert (await scheduler.get_job(once.id)).next_run == once.next_run, "a one-off keeps its instant"
        assert (await scheduler.get_job(every.id)).next_run == every.next_run, "an interval is elapsed time"


async def test_a_zone_change_while_shoal_was_closed_is_applied_at_start() -> None:
    clock = FakeClock()
    async with scripted_core([]) as (core, _provider):
        job = await attach_scheduler(core, clock, zone=BERLIN).add_job("Morning", cron="0 8 * * *")
    async with scripted_core([]) as (core, _provider):
        scheduler = attach_scheduler(core, clock, zone=NEW_YORK)
        await scheduler.start()
        await _wait_job(scheduler, job.id, lambda job: job.next_run == "2026-06-01T12:00:00.000000Z")


class _Zone:
    def __init__(self, zone: tzinfo) -> None:
        self.now = zone

    def __call__(self) -> tzinfo:
        return self.now


async def _wait_job(scheduler: Scheduler, job_id: str, condition: Any) -> Any:
    for _ in range(300):
        job = await scheduler.get_job(job_id)
        if condition(job):
            return job
        await asyncio.sleep(0.01)
    raise AssertionError(f"the job never met the condition: next_run {job.next_run}")


async def test_editing_a_one_off_while_its_first_run_goes_arms_it_again() -> None:
    clock = FakeClock()
    async with scripted_core(["slow " * 60, "again"], delay=0.02) as (core, _provider):
        scheduler = attach_scheduler(core, clock)
        job = await scheduler.add_job("Book the dentist", at="07:05")
        await scheduler.start()
        clock.advance(minutes=5)
        await wait_runs(scheduler, lambda runs: [r.status for r in runs] == ["running"])
        edited = await scheduler.update_job(job.id, at="2026-06-02 09:00")
        assert edited.enabled and edited.next_run == "2026-06-02T09:00:00.000000Z"
        await wait_runs(scheduler, ended, timeout=10)
        assert (await scheduler.get_job(job.id)).enabled, "the end of the first run leaves the new time armed"


async def test_a_job_removed_by_another_process_has_its_run_cancelled() -> None:
    from core.history import History
    from core.schedule import ScheduleStore

    clock = FakeClock()
    async with scripted_core(["slow " * 200], delay=0.02) as (core, _provider):
        scheduler = attach_scheduler(core, clock)
        job = await scheduler.add_job("Long job", at="07:01")
        await scheduler.start()
        clock.advance(minutes=1)
        await wait_runs(scheduler, lambda runs: [r.status for r in runs] == ["running"])
        async with History(core.settings) as other:  # like `shoal schedule remove` in a terminal
            await ScheduleStore(other.db, clock=clock, zone=lambda: UTC).remove(job.id)
        for _ in range(200):
            if not scheduler._inflight:
                break
            await asyncio.sleep(0.01)
        assert not scheduler._inflight, "the run went on after its job was deleted"
        [event] = await core.timeline.events(session_id=job.session_id, kind="schedule.run")
        assert event.status == "cancelled"


async def test_the_runs_of_a_job_are_pruned_to_the_newest(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.schedule import ledger

    monkeypatch.setattr(ledger, "KEEP_RUNS", 3, raising=False)
    async with scripted_core(["one", "two", "three", "four", "five"]) as (core, _provider):
        scheduler = attach_scheduler(core, FakeClock())
        job = await scheduler.add_job("Ping", every="1h")
        other = await scheduler.add_job("Other", every="1h")
        kept = await scheduler.run_now(other.id)
        for _ in range(4):
            await scheduler.run_now(job.id)
        runs = await scheduler.runs(job.id)
        assert [r.summary for r in runs] == ["five", "four", "three"]
        assert await scheduler.runs(other.id) == [await scheduler.get_run(kept.id)], "per job"


async def test_a_name_wins_over_an_id_prefix_and_a_clash_is_refused() -> None:
    async with scripted_core([]) as (core, _provider):
        scheduler = attach_scheduler(core, FakeClock())
        feed = await scheduler.add_job("Read the feed", every="1h", name="feed")
        other = await scheduler.add_job("Something else", every="1h", name="other")
        assert (await scheduler.get_job("Feed")).id == feed.id
        new_id = "feed" + other.id[4:]
        rename = "UPDATE schedule_jobs SET id = ? WHERE id = ?"
        await core.db.write(lambda conn: conn.execute(rename, (new_id, other.id)))
        with pytest.raises(UserError, match="name of one job and the start of another's id") as clash:
            await scheduler.remove_job("feed")
        assert feed.id[:8] in clash.value.message and new_id[:8] in clash.value.message
        assert len(await scheduler.list_jobs()) == 2, "nothing was deleted"
        assert (await scheduler.get_job(new_id[:8])).id == new_id
        assert (await scheduler.get_job(feed.short_id)).id == feed.id


async def test_a_long_absence_is_decided_off_the_event_loop() -> None:
    """An every-minute job missed for a month: counting 10,000 times must not freeze the loop (the UI's)."""
    clock = FakeClock()
    async with scripted_core([]) as (core, _provider):
        job = await attach_scheduler(core, clock).add_job("Tick", cron="* * * * *", catch_up="skip")
    clock.advance(days=30, seconds=20)
    async with scripted_core(["tick"]) as (core, _provider):
        scheduler = attach_scheduler(core, clock)
        gaps: list[float] = []
        loop = asyncio.get_running_loop()

        async def heartbeat() -> None:
            while True:
                before = loop.time()
                await asyncio.sleep(0.01)
                gaps.append(loop.time() - before)

        beat = asyncio.create_task(heartbeat())
        await scheduler.start()
        runs = await wait_runs(scheduler, lambda runs: len(runs) == 2 and ended(runs), timeout=20)
        beat.cancel()
        assert max(gaps) < 0.25, f"the event loop stalled for {max(gaps):.2f} s"
        [missed] = [r for r in runs if r.status == "missed"]
        assert missed.count == 10_000 and missed.summary.startswith("10,000+ runs missed"), missed.summary
        assert (await scheduler.get_job(job.id)).next_run == to_iso(MONDAY_7AM + timedelta(days=30, minutes=1))


async def test_a_claim_rolled_back_by_a_failing_database_holds_no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Held inside the transaction (so no other claim sees the run unheld), released when it rolls back: the
    retries of a failing database would otherwise leave a held run id behind each time."""
    from core.schedule import ledger
    from core.schedule.rules import Decision

    clock = FakeClock()
    async with scripted_core([]) as (core, _provider):
        scheduler = attach_scheduler(core, clock)
        job = await scheduler.add_job("Ping", every="5m")
        owner = owners.new_owner()

        def failing_events(*_args: Any) -> None:
            raise StorageError("disk I/O error", "Free some space.")

        monkeypatch.setattr(ledger.Timeline, "insert_events", failing_events)
        due = datetime.fromisoformat(job.next_run or "")
        decision = Decision(due, "schedule", 0, None, None, due + timedelta(minutes=5), "")
        for _ in range(3):
            with pytest.raises(StorageError):
                await scheduler.store.claim(job, decision, owner)
        assert owners.held(owner) == set(), "nothing is held for runs that were never written"
        assert await scheduler.runs(job.id) == []
        monkeypatch.undo()
        claim = await scheduler.store.claim(job, decision, owner)
        assert claim is not None and claim.run is not None and owners.held(owner) == {claim.run.id}
        owners.release(owner)
