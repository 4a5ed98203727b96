"""Scheduled prompts for the widgets: jobs, runs, the runner's state, and scheduled turns shown like chat turns.

Owned by `Bridge` (as `bridge.schedule`) and reached only through it, so widgets never hold the core's
`Scheduler`. The core makes its scheduler in `start()` (the window exists before that), so listeners are
hooked by `sync()` whenever `core.schedule` is a new object. Callbacks from the core arrive on the event loop,
which under qasync is the GUI thread, so they are emitted directly.

A scheduled run is a turn in the job's thread: its events are re-emitted through the main bridge's turn
signals, so the chat pane streams it live when that thread is open, and the thread list moves it to the top.
`changed` is coalesced (a run reports a change when queued, started and finished), so the pane re-queries a
few times a second at most. Commands report failures through `errorRaised` and return None; queries raise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from PySide6.QtCore import QObject, QTimer, Signal
from shiboken6 import isValid

from core import events as ev
from core.errors import ShoalError, UserError, classify
from core.service import AgentCore

if TYPE_CHECKING:
    from core.schedule import Job, Run

log = logging.getLogger(__name__)
CHANGE_COALESCE_MS = 150
T = TypeVar("T")

NOT_READY = UserError("The scheduler is not ready yet.", "Wait for Shoal to finish starting.")


class ScheduleBridge(QObject):
    changed = Signal()  # jobs or runs changed, here or in another process (coalesced)
    stateChanged = Signal()  # the runner started, stopped, was paused or resumed
    runFinished = Signal(object, object)  # core.schedule.Run, core.schedule.Job: a run that reached the agent ended
    errorRaised = Signal(dict)  # ShoalError.to_dict() of a failed command

    def __init__(self, core: AgentCore, bridge: Any, parent: QObject | None = None) -> None:
        """`bridge`: the main `ui.bridge.Bridge`, whose turn signals scheduled runs are shown through."""
        super().__init__(parent)
        self.core = core
        self.bridge = bridge
        self._scheduler: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._busy: dict[str, str] = {}  # thread (session id) -> the job whose run is writing into it now
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(CHANGE_COALESCE_MS)
        self._timer.timeout.connect(self.changed.emit)

    # --- following the core's scheduler ------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self.core.schedule is not None

    def sync(self) -> None:
        """Hook the core's current scheduler (if it is a new object); the old one's callbacks are ignored."""
        scheduler = self.core.schedule
        if scheduler is self._scheduler:
            return
        self._scheduler = scheduler
        if scheduler is not None:
            scheduler.on_change(lambda s=scheduler: self._on_change(s))
            scheduler.on_run_finished(lambda run, job, s=scheduler: self._on_finished(s, run, job))
            scheduler.on_run_event(lambda job, run, event, s=scheduler: self._on_event(s, job, run, event))
        self._timer.start()
        self.stateChanged.emit()

    def _need(self) -> Any:
        self.sync()
        if self.core.schedule is None:
            raise NOT_READY
        return self.core.schedule

    def _on_change(self, scheduler: Any) -> None:
        if isValid(self) and scheduler is self._scheduler and not self._timer.isActive():
            self._timer.start()

    def _on_finished(self, scheduler: Any, run: Run, job: Job) -> None:
        if not isValid(self) or scheduler is not self._scheduler:
            return
        for sid in [sid for sid, job_id in self._busy.items() if job_id == job.id]:  # a turn that ended abruptly
            del self._busy[sid]
            self.bridge.busyChanged.emit(sid, False)
        self.runFinished.emit(run, job)

    def _on_event(self, scheduler: Any, job: Job, run: Run, event: ev.AgentEvent) -> None:
        """Show the scheduled turn as if it had been sent from the chat (streamed in its open thread)."""
        if not isValid(self) or scheduler is not self._scheduler or not isValid(self.bridge):
            return
        sid = run.session_id or job.session_id
        if isinstance(event, ev.TurnStarted):
            sid = event.session_id
            self._busy[sid] = job.id
            self.bridge.busyChanged.emit(sid, True)
            self.bridge.turnStarted.emit(sid, event.trace_id)
            self.bridge.sessionsChanged.emit()
        elif isinstance(event, ev.AssistantDelta):
            self.bridge.assistantDelta.emit(sid, event.text)
        self.bridge.agentEvent.emit(sid, event)
        if isinstance(event, ev.TurnFinished | ev.TurnFailed):
            self._busy.pop(event.session_id, None)
            self.bridge.busyChanged.emit(event.session_id, False)
            self.bridge.turnEnded.emit(event.session_id, event)
            self.bridge.sessionsChanged.emit()

    async def _command(self, work: Callable[[], Awaitable[T]], what: str) -> T | None:
        try:
            return await work()
        except ShoalError as exc:
            log.info("%s failed: %s", what, exc.describe())
            self.errorRaised.emit(exc.to_dict())
        except Exception as exc:
            error = classify(exc)
            log.warning("%s failed: %s", what, error.message, exc_info=exc)
            self.errorRaised.emit(error.to_dict())
        return None

    # --- state -------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """enabled (the setting), running (the runner), paused, the other schedule settings, and group: the group
        a claimed job is shared in (`_group`), for the claim key field."""
        scheduler = self.core.schedule
        settings = self.core.settings.schedule
        return {
            "enabled": settings.enabled,
            "running": bool(scheduler is not None and scheduler.running),
            "paused": bool(scheduler is not None and scheduler.paused),
            "max_concurrent": settings.max_concurrent,
            "notify": settings.notify,
            "catch_up": settings.catch_up,
            "catch_up_window_hours": settings.catch_up_window_hours,
            "group": self._group(),
        }

    def _group(self) -> str | None:
        """The group whose members share a claimed job's times: this agent's ("" with group mode off); None in
        remote mode, where the server runs the jobs and its own group decides."""
        if not hasattr(self.core, "db"):  # app/remote: no database here, the server has it
            return None
        return self.core.settings.group.name if self.core.settings.group.enabled else ""

    def set_paused(self, paused: bool) -> None:
        scheduler = self.core.schedule
        if scheduler is not None and scheduler.paused != paused:
            scheduler.set_paused(paused)
            self.stateChanged.emit()

    def is_busy(self, session_id: str) -> bool:
        """A scheduled run is writing into this thread now (the chat must not start a second turn there)."""
        return session_id in self._busy

    def stop_session(self, session_id: str) -> bool:
        """Stop the scheduled run writing into this thread (the chat's Stop); False if there is none."""
        job_id = self._busy.get(session_id)
        scheduler = self.core.schedule
        return bool(job_id and scheduler is not None and scheduler.cancel(job_id))

    def should_notify(self, job: Job) -> bool:
        scheduler = self.core.schedule
        return bool(scheduler is not None and scheduler.should_notify(job))

    def preview(
        self, *, cron: str | None = None, every: str | None = None, at: str | None = None
    ) -> tuple[str, list[datetime]]:
        """The schedule in words and its next three times (raises ScheduleExpressionError, naming the cron field
        at fault, when it is wrong)."""
        from core.schedule.words import describe

        scheduler = self._need()
        spec = scheduler.parse(cron=cron, every=every, at=at)
        return describe(spec), list(scheduler.preview(cron=cron, every=every, at=at, count=3))

    async def save_job(self, job_id: str | None, prompt: str, **fields: Any) -> Job:
        """Add (no `job_id`) or change a job; raises, so the dialog can say what is wrong next to it."""
        scheduler = self._need()
        if job_id is None:
            return await scheduler.add_job(prompt, **fields)  # type: ignore[no-any-return]
        return await scheduler.update_job(job_id, prompt=prompt, **fields)  # type: ignore[no-any-return]

    # --- queries -----------------------------------------------------------------------------------

    async def jobs(self) -> list[Job]:
        return list(await self._need().list_jobs())

    async def runs(self, job_id: str | None = None, limit: int = 50) -> list[Run]:
        return list(await self._need().runs(job_id, limit))

    # --- commands ----------------------------------------------------------------------------------

    async def add_job(self, prompt: str, **schedule: Any) -> Job | None:
        """`schedule`: cron | every | at, and name, catch_up, notify. None if refused (see `errorRaised`)."""
        return await self._command(lambda: self._need().add_job(prompt, **schedule), "adding the job")

    async def update_job(self, job_id: str, **changes: Any) -> Job | None:
        return await self._command(lambda: self._need().update_job(job_id, **changes), "changing the job")

    async def remove_job(self, job_id: str) -> Job | None:
        return await self._command(lambda: self._need().remove_job(job_id), "removing the job")

    async def set_enabled(self, job_id: str, enabled: bool) -> Job | None:
        return await self._command(lambda: self._need().set_enabled(job_id, enabled), "switching the job")

    def run_now(self, job_id: str) -> asyncio.Task[Any]:
        """Start a run now; returns at once (the run's progress arrives as `changed`, its end as `runFinished`)."""
        task = asyncio.ensure_future(self._command(lambda: self._need().run_now(job_id), "running the job"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait for runs started here (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
