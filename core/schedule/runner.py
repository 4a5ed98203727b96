"""`Scheduler`: the one object front ends use for scheduled jobs (the HTTP server, the desktop, the CLI's `run`).

Its CRUD methods delegate to `ScheduleStore` and work whether the runner is started or not; the runner itself
(waking, running, recording) is `Runner` in loop.py. Only long-running front ends start the runner
(`AgentCore.start_scheduler`); a one-shot command never runs scheduled jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from core import events as ev
from core.errors import ShoalError
from core.schedule import owners
from core.schedule.clock import Clock, ZoneGetter, local_zone, system_clock
from core.schedule.execution import SchedulingCore
from core.schedule.loop import POLL_SECONDS, EventListener, RunListener, Runner
from core.schedule.models import Job, Run
from core.schedule.spec import Spec
from core.schedule.store import ScheduleStore

__all__ = ["POLL_SECONDS", "EventListener", "RunListener", "Scheduler"]


class Scheduler(Runner):
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
        super().__init__(core, store or ScheduleStore(core.db, clock=clock, zone=zone), poll)

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
        group_claim: str | None = None,
    ) -> Job:
        job = await self.store.add(
            prompt, cron=cron, every=every, at=at, name=name, catch_up=catch_up, notify=notify, group_claim=group_claim
        )
        self._touched()
        return job

    async def update_job(self, id_or_prefix: str, **changes: Any) -> Job:
        """Change prompt, name, catch_up, notify, group_claim, or the schedule (one of cron, every, at)."""
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
        owners.revive(self._owner)
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
