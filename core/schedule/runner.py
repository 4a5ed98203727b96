"""The runner: sleeps until a job is due, runs its prompt through the agent core, records what happened.

`Scheduler` is also the one object front ends use for jobs (the HTTP server, the desktop, the CLI's `run`):
its CRUD methods delegate to `ScheduleStore` and work whether the runner is started or not. Only long-running
front ends start the runner (`AgentCore.start_scheduler`); a one-shot command never runs scheduled jobs.

- **Waking**: it sleeps until the next due time, at most `poll` seconds (30), so jobs added by another process
  and clock jumps are noticed, and at once when a job changes in this process (`wake`).
- **Concurrency**: `schedule.max_concurrent` runs at once (read live); a due run beyond it waits, `queued`. A
  job never overlaps itself: the claim records `skipped` when its previous run is still going, in any process.
- **A run** sends the prompt into the job's own thread with `core.send`, so every step of it is in the timeline
  like a chat turn; it ends with a `schedule.run` event in the same trace, written in the same transaction as
  the run row. A failed run (no model, a model error) is recorded with its message and fix; nothing a run does
  can stop the loop.
- **Missed runs**: core/schedule/rules.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from core import events as ev
from core.errors import ShoalError, classify
from core.schedule import owners
from core.schedule.clock import Clock, ZoneGetter, from_iso, local_zone, system_clock
from core.schedule.execution import Outcome, SchedulingCore, converse, record_end
from core.schedule.models import Job, Run
from core.schedule.rules import decide
from core.schedule.spec import Spec
from core.schedule.store import ScheduleStore
from core.settings import ScheduleSettings

log = logging.getLogger(__name__)
POLL_SECONDS = 30.0
RunListener = Callable[[Run, Job], object]
EventListener = Callable[[Job, Run, ev.AgentEvent], object]


class Scheduler:
    """Jobs (CRUD, any time) and the runner (`start()` / `stop()`, idempotent)."""

    def __init__(
        self,
        core: SchedulingCore,
        *,
        store: ScheduleStore | None = None,
        clock: Clock = system_clock,
        zone: ZoneGetter = local_zone,
        poll: float = POLL_SECONDS,
    ) -> None:
        self.core = core
        self.store = store or ScheduleStore(core.db, clock=clock, zone=zone)
        self.poll = poll
        self._owner = owners.new_owner()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._active = 0
        self._inflight: dict[str, asyncio.Task[Run]] = {}  # job id -> its queued or running run
        self._paused = False
        self._fingerprint: tuple[Any, ...] | None = None
        self._finished: list[RunListener] = []
        self._changes: list[Callable[[], object]] = []
        self._events: list[EventListener] = []

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def settings(self) -> ScheduleSettings:
        return self.core.settings.schedule  # live: changed settings apply from the next decision

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def paused(self) -> bool:
        return self._paused

    async def start(self) -> None:
        """Start the runner: close runs a dead process left open, then loop until `stop()`."""
        if self.running:
            return
        owners._live.add(self._owner)
        for run in await self.store.recover():
            log.warning("scheduled run %s of %s was left unfinished; recorded as failed", run.id, run.job_name)
        self._task = asyncio.create_task(self._loop(), name="shoal-scheduler")
        log.info("scheduler started (max %d at once)", self.settings.max_concurrent)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and cancel queued and running runs (each records `cancelled`), within `timeout`."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=timeout)
        runs = list(self._inflight.values())
        for run in runs:
            run.cancel()
        if runs:
            await asyncio.wait(runs, timeout=timeout)
        owners.release(self._owner)  # anything still open after the timeout is stale for everyone now

    def set_paused(self, paused: bool) -> None:
        """Paused: nothing is started on schedule (Run now still works). Times that pass meanwhile are missed
        runs on resume, handled by the missed-run rule like time Shoal was closed."""
        self._paused = paused
        self.wake()
        self._changed()

    def wake(self) -> None:
        """Look at the jobs now (a job changed, a setting changed, the clock was moved)."""
        self._wake.set()
        self._slot_freed.set()

    # --- listeners -------------------------------------------------------------------------------

    def on_run_finished(self, callback: RunListener) -> None:
        """`callback(run, job)` after a run that reached the agent ends (ok, failed or cancelled)."""
        self._finished.append(callback)

    def on_change(self, callback: Callable[[], object]) -> None:
        """`callback()` when jobs or runs change, here or in another process (seen within `poll`)."""
        self._changes.append(callback)

    def on_run_event(self, callback: EventListener) -> None:
        """`callback(job, run, event)` for every agent event of a scheduled run, as it happens."""
        self._events.append(callback)

    def remove_listener(self, callback: Callable[..., object]) -> None:
        for group in (self._finished, self._changes, self._events):
            with contextlib.suppress(ValueError):
                group.remove(callback)

    def _call(self, listeners: list[Any], *args: Any) -> None:
        for listener in list(listeners):
            try:
                listener(*args)
            except Exception:  # a broken view must not break the scheduler
                log.exception("scheduler listener failed")

    def _changed(self) -> None:
        self._call(self._changes)

    # --- jobs (the API front ends and the HTTP server use) -----------------------------------------

    async def list_jobs(self) -> list[Job]:
        return await self.store.list_jobs()

    async def get_job(self, id_or_prefix: str) -> Job:
        return await self.store.get(id_or_prefix)

    async def add_job(
        self,
        prompt: str,
        *,
        cron: str | None = None,
        every: str | None = None,
        at: str | None = None,
        name: str = "",
        catch_up: str | None = None,
        notify: bool = True,
    ) -> Job:
        job = await self.store.add(prompt, cron=cron, every=every, at=at, name=name, catch_up=catch_up, notify=notify)
        self._touched()
        return job

    async def update_job(self, id_or_prefix: str, **changes: Any) -> Job:
        """Change prompt, name, catch_up, notify, or the schedule (one of cron, every, at)."""
        job = await self.store.update(id_or_prefix, **changes)
        self._touched()
        return job

    async def remove_job(self, id_or_prefix: str) -> Job:
        """Delete a job and its runs, after cancelling its run in progress here (its thread stays)."""
        job = await self.store.get(id_or_prefix)
        task = self._inflight.get(job.id)
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=10)
        removed = await self.store.remove(job.id)
        self._touched()
        return removed

    async def set_enabled(self, id_or_prefix: str, enabled: bool) -> Job:
        job = await self.store.set_enabled(id_or_prefix, enabled)
        self._touched()
        return job

    async def runs(self, job_id: str | None = None, limit: int = 50) -> list[Run]:
        """Newest first; `job_id` may be an id prefix or a name."""
        resolved = (await self.store.get(job_id)).id if job_id else None
        return await self.store.runs(resolved, limit)

    async def get_run(self, run_id: str) -> Run:
        return await self.store.get_run(run_id)

    def parse(self, *, cron: str | None = None, every: str | None = None, at: str | None = None) -> Spec:
        """A schedule as typed, checked (raises ScheduleExpressionError, naming the cron field at fault)."""
        return self.store.parse(cron=cron, every=every, at=at)

    def preview(
        self, *, cron: str | None = None, every: str | None = None, at: str | None = None, count: int = 3
    ) -> list[datetime]:
        """The next `count` times a schedule would run (raises ScheduleExpressionError when it is wrong)."""
        return self.parse(cron=cron, every=every, at=at).upcoming(self.store.now(), self.store.zone(), count)

    def should_notify(self, job: Job) -> bool:
        return job.notify and self.settings.notify

    def _touched(self) -> None:
        self.wake()
        self._changed()

    # --- running ---------------------------------------------------------------------------------

    async def run_now(self, id_or_prefix: str, *, on_event: Callable[[ev.AgentEvent], object] | None = None) -> Run:
        """Run a job now, by hand, and wait for the end; `on_event` sees the turn's events (the CLI streams
        them). It does not change the schedule. Cancelling the caller cancels the run (recorded)."""
        job = await self.store.get(id_or_prefix)
        owners._live.add(self._owner)
        run = await self.store.claim_manual(job, self._owner)
        self._changed()
        task = self._launch(job, run, on_event)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                task.cancel()
                await asyncio.wait([task], timeout=10)
                raise
            try:  # the run was cancelled (stop, removal, Stop in the chat), not the caller: say how it ended
                return await self.store.get_run(run.id)
            except ShoalError:  # the job was removed, or the database is closing
                return replace(run, status="cancelled")

    def cancel(self, job_id: str) -> bool:
        """Stop the job's queued or running run in this process (recorded `cancelled`); False if there is none."""
        task = self._inflight.get(job_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler tick failed")
                delay = self.poll
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def _tick(self) -> float:
        """Start what is due; returns how long to sleep."""
        fingerprint = await self.store.fingerprint()
        if self._fingerprint is not None and fingerprint != self._fingerprint:
            self._changed()
        self._fingerprint = fingerprint
        if self._paused or not self.settings.enabled:
            return self.poll
        now = self.store.now()
        for job in await self.store.due(now):
            try:
                await self._fire(job, now)
            except ShoalError as exc:
                log.warning("scheduled job %s could not be started: %s", job.id, exc.describe())
        nxt = await self.store.next_due()
        if nxt is None:
            return self.poll
        return max(0.0, min(self.poll, (nxt - self.store.now()).total_seconds()))

    async def _fire(self, job: Job, now: datetime) -> None:
        assert job.next_run is not None
        settings = self.settings
        decision = decide(
            job.spec,
            from_iso(job.next_run),
            now,
            catch_up=job.catch_up or settings.catch_up,
            window=timedelta(hours=settings.catch_up_window_hours),
            zone=self.store.zone(),
        )
        claim = await self.store.claim(job, decision, self._owner)
        if claim is None:
            return  # another runner took this time, or the job changed meanwhile
        self.core.timeline.notify(claim.events)
        for run in claim.recorded:
            log.info("scheduled job %s: %s (%s)", job.name, run.status, run.summary)
        if claim.run is not None:
            log.info("scheduled job %s: %s run for %s", job.name, claim.run.trigger, claim.run.scheduled_for)
            self._launch(job, claim.run, None)
        self._changed()

    def _launch(self, job: Job, run: Run, on_event: Callable[[ev.AgentEvent], object] | None) -> asyncio.Task[Run]:
        task = asyncio.create_task(self._execute(job, run, on_event), name=f"shoal-schedule-{job.short_id}")
        self._inflight[job.id] = task

        def done(finished: asyncio.Task[Run]) -> None:
            if self._inflight.get(job.id) is finished:
                del self._inflight[job.id]
            if not finished.cancelled() and finished.exception() is not None:
                log.error("scheduled run %s could not be recorded", run.id, exc_info=finished.exception())

        task.add_done_callback(done)
        return task

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of `max_concurrent` places (read live, so a changed setting applies to the next run)."""
        while self._active >= self.settings.max_concurrent:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            self._slot_freed.set()

    async def _execute(self, job: Job, run: Run, on_event: Callable[[ev.AgentEvent], object] | None) -> Run:
        outcome = Outcome(session_id=run.session_id or job.session_id)
        try:
            async with self._slot():
                run = await self.store.mark_running(run)
                self._changed()
                await converse(
                    self.core, self.store, job, outcome, lambda event: self._on_event(job, run, event, on_event)
                )
        except asyncio.CancelledError:
            outcome.status = "cancelled"
            outcome.error = outcome.error or "Stopped before it finished (Shoal was closing, or the job was removed)."
            await self._finish_surely(job, run, outcome)
            raise
        except Exception as exc:  # the database failed under us: say so on the run if it can still be written
            error = classify(exc)
            outcome.status, outcome.error = "failed", error.describe()
        return await self._finish_surely(job, run, outcome)

    async def _finish_surely(self, job: Job, run: Run, outcome: Outcome) -> Run:
        """Record the end even when this task is cancelled meanwhile (Shoal closing right as the run ends): the
        row must never stay `running`. A cancellation still ends the task, once the end is written."""
        finishing = asyncio.ensure_future(self._finish(job, run, outcome))
        try:
            return await asyncio.shield(finishing)
        except asyncio.CancelledError:
            await asyncio.wait([finishing])
            if not finishing.cancelled() and finishing.exception() is not None:
                log.error("could not record the end of run %s", run.id, exc_info=finishing.exception())
            raise

    def _on_event(
        self, job: Job, run: Run, event: ev.AgentEvent, on_event: Callable[[ev.AgentEvent], object] | None
    ) -> None:
        if on_event is not None:
            on_event(event)
        self._call(self._events, job, run, event)

    async def _finish(self, job: Job, run: Run, outcome: Outcome) -> Run:
        finished = await record_end(self.core, self.store, job, run, outcome)
        self._changed()
        self._call(self._finished, finished, job)
        return finished
