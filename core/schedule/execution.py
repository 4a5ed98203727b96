"""One run of a scheduled job, from its turn to its recorded end.

A run is a turn in the job's own thread, sent with `core.send` like a chat message, so every step of it is in
the timeline and the chat. How the turn ended becomes the run's status: an answer is `ok` (its first 500
characters kept as the summary), a failure before or during the turn is `failed` with the message and what to
do, a stop is `cancelled`. The end is written with a `schedule.run` event in one transaction; the event hangs
under the turn's root span, so the timeline shows it in the run's own tree. If that write fails, the end is
written alone (`finish_run`): a run whose row stayed `running` would block its job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from core import events as ev
from core.errors import ShoalError
from core.schedule.clock import from_iso
from core.schedule.models import SUMMARY_CHARS, Job, Run
from core.schedule.store import ScheduleStore
from core.settings import Settings
from core.timeline.db import Database
from core.timeline.ids import TraceContext
from core.timeline.store import Timeline

log = logging.getLogger(__name__)
_EVENT_STATUS = {"ok": "ok", "failed": "error", "cancelled": "cancelled"}
FINISH_RETRY_DELAYS = (0.0, 0.5, 2.0)  # before each write of a run's end without its event


class SchedulingCore(Protocol):
    """What a run needs of `core.service.AgentCore`."""

    settings: Settings
    db: Database
    timeline: Timeline

    def send(self, session_id: str, text: str, *, requester: str = ...) -> Any: ...


@dataclass
class Outcome:
    status: str = "failed"
    summary: str = ""
    error: str | None = None
    trace_id: str | None = None
    root_event_id: str | None = None
    session_id: str | None = None


async def converse(
    core: SchedulingCore, store: ScheduleStore, job: Job, outcome: Outcome, on_event: Callable[[ev.AgentEvent], object]
) -> None:
    """Send the prompt into the job's thread and follow the turn; `outcome` says how it went."""
    outcome.session_id = await store.ensure_session(job)
    try:
        turn = core.send(outcome.session_id, job.prompt, requester="schedule")
        async for event in turn:
            if isinstance(event, ev.TurnStarted):
                outcome.trace_id, outcome.root_event_id = event.trace_id, event.event_id
            on_event(event)
        final = await turn.result()
    except ShoalError as exc:  # no model configured, an empty prompt, storage: before the turn could start
        outcome.status, outcome.error = "failed", exc.describe()
        return
    if isinstance(final, ev.TurnFinished):
        outcome.summary = final.text.strip()
        if final.status == "ok":
            outcome.status = "ok"
        elif final.status == "cancelled":
            outcome.status, outcome.error = "cancelled", "Stopped before it finished."
        else:
            outcome.error = (
                f"Stopped after {final.iterations} model calls without a final answer.\n"
                "  → Raise agent.max_iterations, or ask for a smaller step."
            )
    elif isinstance(final, ev.TurnFailed):
        message, fix = final.error.get("message", "The run failed."), final.error.get("fix", "")
        outcome.error = f"{message}\n  → {fix}" if fix else message
    else:
        outcome.error = "The run ended without an answer."


async def record_end(core: SchedulingCore, store: ScheduleStore, job: Job, run: Run, outcome: Outcome) -> Run:
    """The run's row and its `schedule.run` event, in one transaction. Returns the run as recorded."""
    trace, correlation = TraceContext.new_root(), run.id
    if outcome.root_event_id:  # hang the event under the turn, so the timeline shows it in the run's tree
        root = await core.timeline.get(outcome.root_event_id)
        if root is not None:
            trace, correlation = root.trace.child(), root.correlation_id
    started = from_iso(run.started_at) if run.started_at else None
    duration = (store.now() - started).total_seconds() * 1000 if started else None
    payload = {
        "job_id": job.id,
        "run_id": run.id,
        "status": outcome.status,
        "trigger": run.trigger,
        "scheduled_for": run.scheduled_for,
        "summary": outcome.summary[:SUMMARY_CHARS],
        "error": outcome.error,
    }
    await core.timeline.record(
        "schedule.run",
        session_id=outcome.session_id or job.session_id,
        trace=trace,
        correlation_id=correlation,
        name=job.name,
        status=_EVENT_STATUS.get(outcome.status, outcome.status),
        duration_ms=duration,
        payload=payload,
        also=store.finish(run, outcome.status, summary=outcome.summary, error=outcome.error, trace_id=outcome.trace_id),
    )
    try:
        finished = await store.get_run(run.id)
    except ShoalError:  # the job (and so its runs) was removed meanwhile
        finished = replace(run, status=outcome.status, summary=outcome.summary[:SUMMARY_CHARS], error=outcome.error)
    log.info("scheduled job %s: run %s %s", job.name, run.id, outcome.status)
    return finished


async def finish_run(core: SchedulingCore, store: ScheduleStore, job: Job, run: Run, outcome: Outcome) -> Run:
    """`record_end`, and when that fails (the timeline write or the UPDATE raised) the end alone, without its
    event, a few times: a row left `running` would skip every later time of its job and refuse Run now. If even
    that fails, the run is no longer held by this process, so the next claim closes it as stale."""
    try:
        return await record_end(core, store, job, run, outcome)
    except Exception as exc:  # anything at all: the row must not stay running
        log.warning("could not record the end of run %s with its event (%s); writing the end alone", run.id, exc)
        failure: BaseException = exc
    for delay in FINISH_RETRY_DELAYS:
        await asyncio.sleep(delay)
        try:
            await store.finish_bare(
                run, outcome.status, summary=outcome.summary, error=outcome.error, trace_id=outcome.trace_id
            )
        except Exception as exc:
            failure = exc
            continue
        log.info("scheduled job %s: run %s %s (no timeline event)", job.name, run.id, outcome.status)
        return replace(run, status=outcome.status, summary=outcome.summary[:SUMMARY_CHARS], error=outcome.error)
    raise failure
