"""The scheduler over a real AgentCore (real SQLite, scripted model) and a clock the test moves: a job runs and
its answer lands in its thread, the timeline and the runs table; jobs survive a restart; missed runs follow the
rule; the concurrency limit and no-overlap hold; a failing run is recorded and the scheduler keeps going."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core import events as ev
from core.errors import EndpointUnreachableError, UserError
from core.schedule import Job, Run, ScheduleExpressionError
from core.schedule.clock import from_iso, to_iso
from core.schedule.owners import HOST
from core.service import AgentCore
from core.settings import load_settings
from tests.fixtures.cores import scripted_core
from tests.fixtures.schedule import MONDAY_7AM, FakeClock, attach_scheduler, wait_runs

ANSWER = "You have 3 unread notes: the plumber, the tide table, and Lisbon."


def finished(runs: list[Run], count: int = 1) -> bool:
    return sum(r.status in ("ok", "failed", "cancelled") for r in runs) >= count


async def test_a_due_job_runs_into_its_thread_the_timeline_and_the_runs_table() -> None:
    clock = FakeClock()
    async with scripted_core([ANSWER]) as (core, provider):
        scheduler = attach_scheduler(core, clock)
        seen: list[tuple[Run, Job]] = []
        scheduler.on_run_finished(lambda run, job: seen.append((run, job)))
        job = await scheduler.add_job("Summarise my unread notes", cron="0 8 * * 1-5", name="Morning notes")
        assert job.next_run == "2026-06-01T08:00:00.000000Z" and job.enabled and job.describe().startswith("every")
        await scheduler.start()
        await asyncio.sleep(0.15)
        assert await scheduler.runs() == [], "nothing runs before its time"
        clock.advance(hours=1, seconds=5)
        [run] = await wait_runs(scheduler, finished)
        assert (run.status, run.trigger, run.summary) == ("ok", "schedule", ANSWER)
        assert run.scheduled_for == "2026-06-01T08:00:00.000000Z" and run.session_id == job.session_id
        assert [m.content for m in await core.sessions.messages(job.session_id)] == [job.prompt, ANSWER]
        assert provider.calls[0][-1].content == job.prompt

        trace = await core.timeline.events(trace_id=run.trace_id)
        kinds = [e.kind for e in trace]
        assert kinds[0] == "user.message" and kinds[-1] == "schedule.run" and "llm.response" in kinds
        record = trace[-1]
        assert record.parent_span_id == trace[0].span_id, "the run's record hangs under its turn"
        assert record.name == "Morning notes" and record.status == "ok"
        assert record.payload["run_id"] == run.id and record.payload["trigger"] == "schedule"
        assert record.payload["summary"] == ANSWER

        [(told, about)] = seen
        assert told.id == run.id and about.id == job.id
        after = await scheduler.get_job(job.short_id)
        assert after.last_status == "ok" and after.next_run == "2026-06-02T08:00:00.000000Z"
        assert await scheduler.runs(job.short_id) == [told]


async def test_jobs_survive_a_restart_and_run_in_the_next_process() -> None:
    clock = FakeClock()
    async with scripted_core([]) as (core, _provider):
        first = attach_scheduler(core, clock)
        daily = await first.add_job("Water the plants reminder", cron="30 7 * * *", catch_up="skip", notify=False)
        hourly = await first.add_job("Check the inbox", every="1h", name="inbox")
        await first.set_enabled(hourly.id, False)
        before = await first.list_jobs()
    async with scripted_core(["Plants: water the fern."]) as (core, _provider):
        second = attach_scheduler(core, clock)
        assert await second.list_jobs() == before
        reloaded = await second.get_job("inbox")
        assert not reloaded.enabled and reloaded.next_run is None
        plants = await second.get_job(daily.id[:6])
        assert (plants.catch_up, plants.notify, plants.expr) == ("skip", False, "30 7 * * *")
        await second.start()
        clock.advance(minutes=30, seconds=1)
        [run] = await wait_runs(second, finished)
        assert run.job_id == daily.id and run.status == "ok" and run.summary == "Plants: water the fern."


async def _missed(catch_up: str, window_hours: float, job_catch_up: str | None = None) -> tuple[Job, list[Run], Any]:
    """A daily 08:00 job added Monday 07:00, Shoal closed until Wednesday 09:00 (three 08:00s passed)."""
    clock = FakeClock()
    overrides = {"schedule": {"catch_up": catch_up, "catch_up_window_hours": window_hours}}
    async with scripted_core([]) as (core, _provider):
        job = await attach_scheduler(core, clock).add_job("Daily digest", cron="0 8 * * *", catch_up=job_catch_up)
    clock.advance(days=2, hours=2)
    async with scripted_core(["Digest for Wednesday."], overrides=overrides) as (core, _provider):
        scheduler = attach_scheduler(core, clock)
        await scheduler.start()
        wanted = 2 if catch_up == "once" and job_catch_up != "skip" and window_hours > 1 else 1
        runs = await wait_runs(scheduler, lambda runs: len(runs) >= wanted and not any(r.active for r in runs))
        await asyncio.sleep(0.15)  # a few more ticks: nothing else may happen
        assert len(await scheduler.runs()) == len(runs), "no burst of missed runs"
        events = await core.timeline.events(session_id=job.session_id, kind="schedule.run")
        return await scheduler.get_job(job.id), await scheduler.runs(), events


async def test_missed_runs_with_catch_up_once_run_one_catch_up_and_record_the_rest() -> None:
    job, runs, events = await _missed("once", 24)
    catch_up, missed = runs  # newest first
    assert (catch_up.status, catch_up.trigger, catch_up.summary) == ("ok", "catch_up", "Digest for Wednesday.")
    assert catch_up.scheduled_for == "2026-06-03T08:00:00.000000Z", "the newest missed time"
    assert (missed.status, missed.count, missed.scheduled_for) == ("missed", 2, "2026-06-01T08:00:00.000000Z")
    assert "2 runs missed" in missed.summary
    assert job.next_run == "2026-06-04T08:00:00.000000Z" and job.last_status == "ok"
    assert sorted(e.status for e in events) == ["missed", "ok"]


async def test_missed_runs_with_skip_run_nothing_and_wait_for_the_next_time() -> None:
    job, runs, events = await _missed("skip", 24)
    [missed] = runs
    assert (missed.status, missed.count, missed.trigger) == ("missed", 3, "schedule")
    assert "catch-up is off (skip)" in missed.summary
    assert job.next_run == "2026-06-04T08:00:00.000000Z" and job.last_status == "missed"
    assert [e.payload["count"] for e in events] == [3]


async def test_a_missed_run_older_than_the_window_is_skipped_even_with_once() -> None:
    _job, runs, _events = await _missed("once", 0.5)
    [missed] = runs
    assert missed.status == "missed" and missed.count == 3
    assert "older than the catch-up window of 0.5 hours" in missed.summary


async def test_the_jobs_own_catch_up_overrides_the_setting() -> None:
    _job, runs, _events = await _missed("once", 24, job_catch_up="skip")
    assert [(r.status, r.count) for r in runs] == [("missed", 3)]


async def test_max_concurrent_limits_runs_across_jobs() -> None:
    slow = "word " * 30  # 60 chunks x 20 ms: each run takes over a second
    clock = FakeClock()
    order: list[tuple[str, str]] = []
    async with scripted_core([slow, slow], delay=0.02, overrides={"schedule": {"max_concurrent": 1}}) as (core, _p):
        scheduler = attach_scheduler(core, clock)
        scheduler.on_run_event(lambda job, run, event: order.append((job.name, type(event).__name__)))
        await scheduler.add_job("first", at="07:30", name="A")
        await scheduler.add_job("second", at="07:30", name="B")
        await scheduler.start()
        clock.advance(minutes=30)
        runs = await wait_runs(scheduler, lambda runs: any(r.status == "running" for r in runs) and len(runs) == 2)
        assert sorted(r.status for r in runs) == ["queued", "running"], "one waits for the slot"
        await wait_runs(scheduler, lambda runs: finished(runs, 2), timeout=10)
    starts = [i for i, (_name, kind) in enumerate(order) if kind == "TurnStarted"]
    ends = [i for i, (_name, kind) in enumerate(order) if kind == "TurnFinished"]
    assert len(starts) == 2 and starts[1] > ends[0], "the second turn started after the first ended"


async def test_two_slots_let_two_jobs_run_at_once() -> None:
    slow = "word " * 30
    clock = FakeClock()
    async with scripted_core([slow, slow], delay=0.02, overrides={"schedule": {"max_concurrent": 2}}) as (core, _p):
        scheduler = attach_scheduler(core, clock)
        await scheduler.add_job("first", at="07:30")
        await scheduler.add_job("second", at="07:30")
        await scheduler.start()
        clock.advance(minutes=30)
        await wait_runs(scheduler, lambda runs: [r.status for r in runs] == ["running", "running"])
        await wait_runs(scheduler, lambda runs: finished(runs, 2), timeout=10)


async def test_a_job_never_overlaps_itself_the_due_run_is_skipped_with_the_reason() -> None:
    slow = "tick " * 40
    clock = FakeClock()
    async with scripted_core([slow, "second answer"], delay=0.02) as (core, _provider):
        scheduler = attach_scheduler(core, clock)
        job = await scheduler.add_job("Poll the feed", every="1m")
        await scheduler.start()
        clock.advance(minutes=1)
        await wait_runs(scheduler, lambda runs: [r.status for r in runs] == ["running"])
        clock.advance(minutes=1)
        scheduler.wake()
        runs = await wait_runs(scheduler, lambda runs: any(r.status == "skipped" for r in runs))
        skipped = next(r for r in runs if r.status == "skipped")
        assert "was still going" in skipped.summary and skipped.scheduled_for == to_iso(
            MONDAY_7AM + timedelta(minutes=2)
        )
        with pytest.raises(UserError, match="already running"):
            await scheduler.run_now(job.id)
        await wait_runs(scheduler, lambda runs: any(r.status == "ok" for r in runs), timeout=10)
        clock.advance(minutes=1)
        runs = await wait_runs(scheduler, lambda runs: sum(r.status == "ok" for r in runs) == 2)
        assert runs[0].summary == "second answer", "the next time runs normally again"


async def test_a_failing_run_is_recorded_and_the_scheduler_keeps_going() -> None:
    down = EndpointUnreachableError("The endpoint http://127.0.0.1:9 is not answering.", "Start the server.")
    clock = FakeClock()
    async with scripted_core([down, "still here"]) as (core, _provider):
        scheduler = attach_scheduler(core, clock)
        broken = await scheduler.add_job("uses the model", at="07:10", name="first")
        await scheduler.add_job("runs later", at="07:20", name="second")
        await scheduler.start()
        clock.advance(minutes=10)
        [failed] = await wait_runs(scheduler, finished)
        assert failed.status == "failed" and failed.job_id == broken.id
        assert failed.error == "The endpoint http://127.0.0.1:9 is not answering.\n  → Start the server."
        [event] = await core.timeline.events(trace_id=failed.trace_id, kind="schedule.run")
        assert event.status == "error" and event.payload["error"] == failed.error
        clock.advance(minutes=10)
        runs = await wait_runs(scheduler, lambda runs: finished(runs, 2))
        assert runs[0].status == "ok" and runs[0].summary == "still here"
        assert scheduler.running


async def test_with_no_model_a_run_fails_with_what_to_do() -> None:
    clock = FakeClock()
    loaded = load_settings(None, {})
    async with AgentCore(loaded.settings) as core:  # no model configured at all
        scheduler = attach_scheduler(core, clock)
        job = await scheduler.add_job("hello", every="5m")
        run = await scheduler.run_now(job.id)
        assert run.status == "failed" and run.trigger == "manual"
        assert run.error is not None and "No model is configured" in run.error and "→" in run.error
        assert (await scheduler.get_job(job.id)).next_run == job.next_run, "a manual run leaves the schedule alone"


async def test_a_one_off_job_runs_once_then_disables_itself() -> None:
    clock = FakeClock()
    async with scripted_core(["Done."]) as (core, _provider):
        scheduler = attach_scheduler(core, clock)
        job = await scheduler.add_job("Book the dentist", at="2026-06-01 07:05")
        assert job.kind == "once" and job.next_run == "2026-06-01T07:05:00.000000Z"
        await scheduler.start()
        clock.advance(minutes=5)
        [run] = await wait_runs(scheduler, finished)
        assert run.status == "ok"
        done = await scheduler.get_job(job.id)
        assert not done.enabled and done.next_run is None
        with pytest.raises(UserError, match="that has passed"):
            await scheduler.set_enabled(job.id, True)
        clock.advance(days=1)
        scheduler.wake()
        await asyncio.sleep(0.15)
        assert len(await scheduler.runs()) == 1
        again = await scheduler.update_job(job.id, at="2026-06-03 09:00")  # a new time arms it again
        assert again.enabled and again.next_run == "2026-06-03T09:00:00.000000Z"
        same = await scheduler.set_enabled(job.id, True)
        assert same.next_run == again.next_run, "switching on what is on changes nothing"


async def test_run_now_streams_the_turn_and_records_a_manual_run() -> None:
    clock = FakeClock()
    async with scripted_core(["Now!"]) as (core, _provider):
        scheduler = attach_scheduler(core, clock)  # the runner is not started: like `shoal schedule run`
        job = await scheduler.add_job("Do it now", cron="0 8 * * *")
        seen: list[ev.AgentEvent] = []
        run = await scheduler.run_now(job.short_id, on_event=seen.append)
        assert run.status == "ok" and run.trigger == "manual" and run.scheduled_for is None
        assert "".join(e.text for e in seen if isinstance(e, ev.AssistantDelta)) == "Now!"
        assert isinstance(seen[-1], ev.TurnFinished)
        assert not scheduler.running


async def test_editing_removing_and_the_errors_people_see() -> None:
    clock = FakeClock()
    async with scripted_core([]) as (core, _provider):
        scheduler = attach_scheduler(core, clock)
        job = await scheduler.add_job("  Read the news  ", every="2h")
        assert job.prompt == "Read the news" and job.name == "Read the news"
        edited = await scheduler.update_job(job.id, cron="15 9 * * *", name="News", catch_up="skip")
        assert (edited.kind, edited.expr, edited.name, edited.catch_up) == ("cron", "15 9 * * *", "News", "skip")
        assert edited.next_run == "2026-06-01T09:15:00.000000Z"
        with pytest.raises(ScheduleExpressionError) as bad:
            await scheduler.add_job("x", cron="0 8 * * 1-8")
        assert bad.value.field == "day-of-week"
        with pytest.raises(UserError, match="prompt is empty"):
            await scheduler.add_job("   ", every="1h")
        with pytest.raises(UserError, match="catch_up must be once or skip"):
            await scheduler.add_job("x", every="1h", catch_up="always")
        other = await scheduler.add_job("Another", every="1h", name="News digest")
        with pytest.raises(UserError, match="matches several jobs"):
            await scheduler.get_job("new")  # both names start so: ambiguous
        assert (await scheduler.get_job("news")).id == edited.id, "an exact name wins"
        with pytest.raises(UserError, match="No scheduled job matches"):
            await scheduler.get_job("nothing")
        removed = await scheduler.remove_job(edited.id)
        assert removed.id == edited.id and [j.id for j in await scheduler.list_jobs()] == [other.id]
        assert await core.sessions.get(edited.session_id), "the thread stays"


async def test_only_a_started_scheduler_runs_jobs_and_it_follows_the_setting() -> None:
    async with scripted_core([]) as (core, _provider):
        assert core.schedule is not None and not core.schedule.running, "one-shot commands never run jobs"
        await core.start_scheduler()
        assert core.schedule.running
        off = load_settings(None, {"schedule": {"enabled": False}}).settings
        await core.apply_settings(off)
        assert not core.schedule.running
        await core.apply_settings(load_settings(None, {}).settings)
        assert core.schedule.running
    async with scripted_core([], overrides={"schedule": {"enabled": False}}) as (core, _provider):
        await core.start_scheduler()
        assert not core.schedule.running


async def test_stopping_cancels_a_run_and_a_dead_process_run_is_closed_at_start() -> None:
    clock = FakeClock()
    async with scripted_core(["slow " * 200], delay=0.02) as (core, _provider):
        scheduler = attach_scheduler(core, clock)
        job = await scheduler.add_job("Long job", at="07:01")
        await scheduler.start()
        clock.advance(minutes=1)
        await wait_runs(scheduler, lambda runs: [r.status for r in runs] == ["running"])
    async with scripted_core([]) as (core, _provider):
        scheduler = attach_scheduler(core, clock)
        [run] = await scheduler.runs()
        assert run.status == "cancelled" and run.finished_at is not None

        def orphan(conn: Any) -> None:  # a run a crashed process left open
            conn.execute(
                "INSERT INTO schedule_runs (id, job_id, status, trigger, owner, created_at) "
                "VALUES ('orphan', ?, 'running', 'manual', ?, ?)",
                (job.id, f"{HOST}:{2**22 + 12345}:dead", to_iso(datetime.now(UTC))),
            )

        assert not _alive(2**22 + 12345)
        await core.db.write(orphan)
        await scheduler.start()
        closed = await scheduler.get_run("orphan")
        assert closed.status == "failed" and closed.error == "Shoal stopped before this run finished."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_job_added_elsewhere_is_seen_without_a_wake() -> None:
    """Another process (the CLI) writes the table; the runner polls, so it runs the job anyway."""
    from core.history import History
    from core.schedule import ScheduleStore

    clock = FakeClock()
    async with scripted_core(["from the CLI"]) as (core, _provider):
        scheduler = attach_scheduler(core, clock, poll=0.05)
        changes: list[int] = []
        scheduler.on_change(lambda: changes.append(1))
        await scheduler.start()
        await asyncio.sleep(0.1)
        async with History(core.settings) as other:  # its own connection and writer thread, like a CLI process
            added = await ScheduleStore(other.db, clock=clock, zone=lambda: UTC).add("ping", at="07:03")
        await asyncio.sleep(0.15)
        assert changes, "the change made elsewhere was noticed"
        clock.advance(minutes=3)
        [run] = await wait_runs(scheduler, finished)
        assert run.job_id == added.id and run.status == "ok"
        assert from_iso(run.scheduled_for or "") == MONDAY_7AM + timedelta(minutes=3)


async def test_scheduled_turns_are_requested_by_schedule_for_the_policy() -> None:
    """Rules can tell a scheduled prompt from a person (`requester = "schedule"`)."""
    async with scripted_core(["Done."]) as (core, _provider):
        job = await core.schedule.add_job("Tidy up", every="1h")
        run = await core.schedule.run_now(job.id)
        [question] = await core.timeline.events(session_id=run.session_id, kind="user.message")
        assert question.payload["requester"] == "schedule"
