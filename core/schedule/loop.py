"""The runner: sleeps until a job is due, runs its prompt through the agent core, records what happened.

`Runner` is the machinery under `Scheduler` (runner.py, which adds the API front ends use for jobs):

- **Waking**: it sleeps until the next due time, at most `poll` seconds (30), so jobs added by another process
  and clock jumps are noticed, and at once when a job changes in this process (`wake`). Each pass also notices
  a change of the machine's time zone (cron jobs' next runs follow it) and jobs deleted by another process
  (their run here is cancelled).
- **Concurrency**: `schedule.max_concurrent` runs at once (read live); a due run beyond it waits, `queued`. A
  job never overlaps itself: the claim records `skipped` when its previous run is still going, in any process.
- **A run** sends the prompt into the job's own thread with `core.send`, so every step of it is in the timeline
  like a chat turn; it ends with a `schedule.run` event in the same trace, written in the same transaction as
  the run row (or, if that fails, the end alone: the row must not stay `running`). A failed run (no model, a
  model error) is recorded with its message and fix; nothing a run does can stop the loop.
- **A job that cannot be started** (a damaged row, a failing database) is logged and recorded on the job once,
  and retried after a pause that doubles up to `poll`: it neither blocks the other jobs nor spins the loop.
- **Missed runs**: core/schedule/rules.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

from core import events as ev
from core.errors import ShoalError, classify
from core.schedule import owners
from core.schedule.clock import from_iso, zone_key
from core.schedule.execution import Outcome, SchedulingCore, converse, finish_run
from core.schedule.group_claim import claimed
from core.schedule.ledger import Claim
from core.schedule.models import Job, Run
from core.schedule.rules import ON_TIME, decide
from core.schedule.store import ScheduleStore
from core.settings import ScheduleSettings

log = logging.getLogger(__name__)
POLL_SECONDS = 30.0
BACKOFF_START = 1.0  # seconds before retrying a job that could not be started; doubles up to `poll`
RunListener = Callable[[Run, Job], object]
EventListener = Callable[[Job, Run, ev.AgentEvent], object]


class Runner:
    """The runner (`start()` / `stop()`, idempotent) and the listeners; `Scheduler` adds the jobs API."""

    def __init__(self, core: SchedulingCore, store: ScheduleStore, poll: float) -> None:
        self.core = core
        self.store = store
        self.poll = poll
        self._owner = owners.new_owner()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._active = 0
        self._inflight: dict[str, asyncio.Task[Run]] = {}  # job id -> its queued or running run
        self._paused = False
        self._fingerprint: tuple[Any, ...] | None = None
        self._zone_key: str | None = None  # the zone next runs were computed in; None: not checked yet
        self._faults: dict[str, str] = {}  # job id -> the error that keeps it from starting (logged once)
        self._failures = 0  # ticks in a row in which a job could not be started
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
        owners.revive(self._owner)
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

    # --- running ---------------------------------------------------------------------------------

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
            await self._cancel_removed()
        self._fingerprint = fingerprint
        await self._follow_zone()
        if self._paused or not self.settings.enabled:
            return self.poll
        now = self.store.now()
        failed = False
        for job in await self.store.due(now):
            try:
                await self._fire(job, now)
            except Exception as exc:  # one damaged job (or a failing database) must not block the others
                failed = True
                await self._fault(job, exc)
            else:
                self._faults.pop(job.id, None)
        if failed:  # its time is still past: without a pause the loop would retry it at full speed
            self._failures += 1
            return min(self.poll, BACKOFF_START * 2 ** (self._failures - 1))
        self._failures = 0
        nxt = await self.store.next_due()
        if nxt is None:
            return self.poll
        return max(0.0, min(self.poll, (nxt - self.store.now()).total_seconds()))

    async def _fire(self, job: Job, now: datetime) -> None:
        assert job.next_run is not None
        settings = self.settings
        due = from_iso(job.next_run)
        rule = functools.partial(
            decide,
            job.spec,
            due,
            now,
            catch_up=job.catch_up or settings.catch_up,
            window=timedelta(hours=settings.catch_up_window_hours),
            zone=self.store.zone(),
        )
        # counting a long absence walks up to 10,000 cron times: not on the event loop (the UI runs on it)
        decision = rule() if now - due <= ON_TIME else await asyncio.to_thread(rule)
        claim = await self.store.claim(job, decision, self._owner)
        if claim is None:
            return  # another runner took this time, or the job changed meanwhile
        self._recorded(job, claim)
        if claim.run is not None:
            log.info("scheduled job %s: %s run for %s", job.name, claim.run.trigger, claim.run.scheduled_for)
            self._launch(job, claim.run, None)
        self._changed()

    def _recorded(self, job: Job, claim: Claim) -> None:
        self.core.timeline.notify(claim.events)
        for run in claim.recorded:
            log.info("scheduled job %s: %s (%s)", job.name, run.status, run.summary)

    async def _fault(self, job: Job, exc: Exception) -> None:
        """A job that could not be started: logged and recorded on the job once per distinct error (the loop
        retries it after a pause, and would otherwise log and record it on every pass)."""
        error = exc.describe() if isinstance(exc, ShoalError) else f"{type(exc).__name__}: {exc}"
        if self._faults.get(job.id) == error:
            log.debug("scheduled job %s still cannot be started: %s", job.id, error)
            return
        self._faults[job.id] = error
        log.error("scheduled job %s (%s) could not be started: %s", job.id, job.name, error, exc_info=exc)
        try:
            claim = await self.store.record_fault(job, error)
        except Exception:  # the database itself is failing: the log is all there is
            log.debug("could not record the failure of job %s", job.id, exc_info=True)
            return
        if claim is not None:
            self._recorded(job, claim)
            self._changed()

    async def _follow_zone(self) -> None:
        """When the machine's time zone changes (and once at start: it may have changed while Shoal was closed),
        move cron jobs' next runs to the new zone's wall clock (`ScheduleStore.realign`)."""
        key = zone_key(self.store.zone(), self.store.now())
        if key == self._zone_key:
            return
        moved = await self.store.realign()
        if self._zone_key is not None or moved:
            log.info("time zone is now %s: %d job(s) rescheduled", key, len(moved))
        self._zone_key = key
        if moved:
            self._changed()

    async def _cancel_removed(self) -> None:
        """A job deleted by another process (`shoal schedule remove` while the app runs it): cancel its run
        here, as deleting it in this process does. Seen when the tables change, within `poll`."""
        if not self._inflight:
            return
        present = await self.store.existing(list(self._inflight))
        for job_id, task in list(self._inflight.items()):
            if job_id not in present and not task.done():
                log.info("scheduled job %s was removed elsewhere: cancelling its run", job_id)
                task.cancel()

    def _launch(self, job: Job, run: Run, on_event: Callable[[ev.AgentEvent], object] | None) -> asyncio.Task[Run]:
        task = asyncio.create_task(self._execute(job, run, on_event), name=f"shoal-schedule-{job.short_id}")
        self._inflight[job.id] = task

        def done(finished: asyncio.Task[Run]) -> None:
            owners.drop(self._owner, run.id)  # its row, if still active, is stale from now on
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
                async with claimed(self.core, job, run, outcome) as ours:  # a job shared by a group runs once
                    if ours:
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
        finished = await finish_run(self.core, self.store, job, run, outcome)
        self._changed()
        self._call(self._finished, finished, job)
        return finished
