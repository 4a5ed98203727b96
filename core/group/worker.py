"""Taking tasks from the group: checks, progress, the result, and never running one twice.

A request is recorded (inbox + task row) before its offset is committed; the task then runs in its own
asyncio task so the reader goes on. A redelivered request finds its row: a finished task's stored result
is sent again, a running one is left alone. Deadlines and the delegation depth limit are enforced here,
by the taker, whatever the requester believed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import classify
from core.group.dispatch import task_row
from core.group.envelope import TASK_PROGRESS, TASK_REQUEST, TASK_RESULT, Envelope
from core.group.intake import Incoming
from core.group.node import GroupNode
from core.group.publisher import Also, Outgoing
from core.group.taskboard import StepReporter
from core.timeline.ids import TraceContext, now_iso, parse_iso
from core.timeline.store import Event

log = logging.getLogger(__name__)
DELTA_FLUSH_SECONDS = 0.05  # streamed text is coalesced into progress envelopes at most this often
ACCEPT_WINDOW = 0.05  # a task done sooner sends its accepted notice together with its result


@dataclass
class SkillCall:
    """What a skill runner gets: the task, and where it sits in the trace."""

    taskid: str
    skill: str
    input: str
    correlationid: str
    parent: TraceContext  # the span that received the request
    depth: int
    deadline: datetime
    requester: dict[str, Any]
    usage: dict[str, int] = field(default_factory=dict)  # runners fill in token counts
    session_id: str = ""
    sender: str = ""  # the verified agent id that sent the request (the payload's requester is only a claim)
    label: str = ""  # the request's sensitivity label ("" when it carries none)
    result_label: str = ""  # the answer's label, set by the runner ("" when unlabelled)
    reporter: Callable[[int | None, int | None, str], None] | None = field(default=None, repr=False)

    def step(self, step: int | None, steps: int | None = None, message: str = "") -> None:
        """Say where a long task is, `step n of m` (protocol §4 progress): the worker sends it to the requester,
        throttled, and shows it on this agent's roster card (docs/coordination.md)."""
        if self.reporter is not None:
            self.reporter(step, steps, message)


SkillRunner = Callable[[SkillCall], AsyncIterator[str]]  # yields answer text as it is produced
FinishedListener = Callable[[Envelope, TraceContext, dict[str, Any]], Awaitable[None]]  # request, its span, result


async def echo_runner(call: SkillCall) -> AsyncIterator[str]:
    """The `echo` handler: answers with the input (for wiring checks and the wire benchmark)."""
    yield call.input


class Worker:
    def __init__(self, node: GroupNode, runners: dict[str, SkillRunner]) -> None:
        self.node = node
        self.runners = runners  # handler name ("agent", "echo") -> runner
        self._running: dict[str, asyncio.Task[None]] = {}
        self.finished: list[FinishedListener] = []  # told of each task's result once sent (reporting up)
        node.on(TASK_REQUEST, self._on_request, duplicate=self._on_duplicate)

    async def close(self, timeout: float = 5.0) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    @property
    def active(self) -> int:
        return len(self._running)

    async def _on_request(self, incoming: Incoming, event: Event) -> None:
        envelope = incoming.envelope
        taskid = str(envelope.data.get("taskid") or envelope.id)
        if taskid in self._running:
            return
        task = asyncio.create_task(self._take(envelope, event, taskid), name=f"shoal-take-{taskid}")
        self._running[taskid] = task
        self.node.active_tasks = len(self._running)
        task.add_done_callback(lambda _t: self._done(taskid))

    def _done(self, taskid: str) -> None:
        self._running.pop(taskid, None)
        self.node.active_tasks = len(self._running)
        self.node.board.finish(taskid)

    async def _on_duplicate(self, incoming: Incoming, event: Event) -> None:
        """A redelivery: never run again; repeat a finished task's result so a requester that missed it gets it."""
        envelope = incoming.envelope
        taskid = str(envelope.data.get("taskid") or envelope.id)
        stored = await self._stored_result(taskid)
        if stored is not None:
            await self._send_result(envelope, event.trace, taskid, stored)

    async def _stored_result(self, taskid: str) -> dict[str, Any] | None:
        def query(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT result FROM group_tasks WHERE task_id = ? AND direction = 'in'", (taskid,)
            ).fetchone()
            return row[0] if row and row[0] else None

        text = await self.node.db.read(query)
        return json.loads(text) if text else None

    # --- taking a task ---------------------------------------------------------------------------

    async def _take(self, envelope: Envelope, received: Event, taskid: str) -> None:
        started = time.monotonic()
        data = envelope.data
        requester = str(_dict(data.get("requester")).get("agentid") or envelope.agentid)
        row = task_row(
            taskid, "in", data, correlationid=envelope.correlationid, requester=requester, request_id=envelope.id,
            status="running",
        )  # fmt: skip
        refusal = self._refusal(envelope, data)
        if refusal is not None:
            code, message = refusal
            opening = _Opening([], row)
            failure = _failure(code, message, started)
            await self._send_result(envelope, received.trace, taskid, failure, opening)
            await self._tell_finished(envelope, received.trace, failure)
            return
        deadline = parse_iso(data.get("deadline"))
        assert deadline is not None  # checked by _refusal
        call = SkillCall(
            taskid,
            str(data.get("skill") or ""),
            str(data.get("input") or ""),
            envelope.correlationid,
            received.trace,
            _int(data.get("depth")),
            deadline,
            _dict(data.get("requester")),
            sender=envelope.agentid,
            label=str(data.get("label") or "")[:20],
        )
        accepted = await self._prepare_progress(envelope, received.trace, taskid, {"state": "accepted", "elapsedms": 0})
        opening = _Opening([accepted], row)
        steps = self._steps(envelope, received.trace, call, started, opening)
        timer = asyncio.create_task(self._open_later(opening), name=f"shoal-accept-{taskid}")
        try:
            result = _labelled(await self._run(envelope, received.trace, call, started, opening), call)
            await steps.close()  # no step progress after the result
            await self._send_result(envelope, received.trace, taskid, result, opening)
        finally:
            timer.cancel()
            await steps.close()
        await self._tell_finished(envelope, received.trace, result)
        if call.session_id:  # an agent turn ran: its LLM and tool steps go to the audit trail
            await self._publish_steps(call)

    async def _tell_finished(self, request: Envelope, trace: TraceContext, result: dict[str, Any]) -> None:
        for listener in list(self.finished):
            try:
                await listener(request, trace, result)
            except Exception:
                log.exception("group: a finished-task listener failed")

    def _steps(
        self, envelope: Envelope, trace: TraceContext, call: SkillCall, started: float, opening: _Opening
    ) -> StepReporter:
        """`call.step(n, m)` goes to the requester as `working` progress (throttled) and onto this agent's card."""
        member = self.node.roster.get(envelope.agentid)
        name = member.name if member else str(call.requester.get("name") or "")
        self.node.board.start(call.taskid, call.skill, {"agentid": envelope.agentid, "name": name})

        async def send(data: dict[str, Any]) -> None:
            progress = {"state": "working", **data, "elapsedms": _ms(started)}
            await self._progress(envelope, trace, call.taskid, progress, opening)

        def show(step: int | None, steps: int | None, message: str) -> None:
            self.node.board.update(call.taskid, step, steps, message)

        reporter = StepReporter(send, show)
        call.reporter = reporter.report
        return reporter

    async def _open_later(self, opening: _Opening) -> None:
        """A task still running after ACCEPT_WINDOW tells its requester who took it."""
        await asyncio.sleep(ACCEPT_WINDOW)
        await self._commit(opening, [])

    async def _commit(self, opening: _Opening, outgoing: list[Outgoing], also: Also | None = None) -> None:
        """Commit what is held back (accepted notice, task row) ahead of `outgoing`, in one transaction."""
        held, row = opening.take()
        await self.node.commit(held + outgoing, _both(row, also))

    def _refusal(self, envelope: Envelope, data: dict[str, Any]) -> tuple[str, str] | None:
        deadline = parse_iso(data.get("deadline"))
        if deadline is None:
            return "refused", "the request has no valid deadline"
        if deadline <= datetime.now(UTC):
            return "expired", f"the deadline {data.get('deadline')} had passed when the task arrived"
        depth, limit = _int(data.get("depth")), self.node.settings.max_delegation_depth
        maxdepth = data.get("maxdepth")
        if isinstance(maxdepth, int):
            limit = min(limit, maxdepth)
        if depth > limit:
            return "refused", f"delegation depth {depth} exceeds the limit {limit}"
        runner = self._runner_for(str(data.get("skill") or ""), bool(envelope.recipient))
        if runner is None:
            return "refused", f"this agent does not offer the skill {data.get('skill')!r}"
        return None

    def _runner_for(self, skill: str, addressed: bool) -> SkillRunner | None:
        for offered in self.node.settings.skills:
            if offered.name == skill:
                return self.runners.get(offered.handler)
        return self.runners.get("agent") if addressed and not skill else None

    async def _run(
        self, envelope: Envelope, trace: TraceContext, call: SkillCall, started: float, opening: _Opening
    ) -> dict[str, Any]:
        runner = self._runner_for(call.skill, bool(envelope.recipient))
        assert runner is not None
        remaining = (call.deadline - datetime.now(UTC)).total_seconds()
        chunks: list[str] = []
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                await self._stream(envelope, trace, call, runner, chunks, started, opening)
        except TimeoutError:
            return _failure(
                "expired",
                f"the task did not finish before its deadline {_iso(call.deadline)}",
                started,
                "".join(chunks),
            )
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._send_result(
                        envelope, trace, call.taskid, _failure("cancelled", "the agent stopped", started), opening
                    )
                )
            raise
        except Exception as exc:
            error = classify(exc)
            return _failure("error", error.message, started, "".join(chunks))
        return {"status": "ok", "output": "".join(chunks), "elapsedms": _ms(started), "usage": call.usage}

    async def _stream(
        self,
        envelope: Envelope,
        trace: TraceContext,
        call: SkillCall,
        runner: SkillRunner,
        chunks: list[str],
        started: float,
        opening: _Opening,
    ) -> None:
        pending: list[str] = []
        last = time.monotonic()
        async for delta in runner(call):
            chunks.append(delta)
            pending.append(delta)
            if time.monotonic() - last >= DELTA_FLUSH_SECONDS:
                await self._progress(
                    envelope,
                    trace,
                    call.taskid,
                    {"state": "working", "delta": "".join(pending), "elapsedms": _ms(started)},
                    opening,
                )
                pending.clear()
                last = time.monotonic()
        if pending and len(chunks) > len(pending):  # one-shot answers need no progress: the result carries them
            data = {"state": "working", "delta": "".join(pending), "elapsedms": _ms(started)}
            await self._progress(envelope, trace, call.taskid, data, opening)

    async def _progress(
        self, request: Envelope, trace: TraceContext, taskid: str, data: dict[str, Any], opening: _Opening
    ) -> None:
        await self._commit(opening, [await self._prepare_progress(request, trace, taskid, data)])

    async def _prepare_progress(
        self, request: Envelope, trace: TraceContext, taskid: str, data: dict[str, Any]
    ) -> Outgoing:
        return await self._reply(TASK_PROGRESS, "progress", request, trace, taskid, data)

    async def _reply(
        self, event_type: str, suffix: str, request: Envelope, trace: TraceContext, taskid: str, data: dict[str, Any]
    ) -> Outgoing:
        """A progress or result envelope answering `request`, signed as this agent (not yet committed).
        Streamed `working` progress is not recorded in the timeline (the result carries the whole answer); a
        `step n of m` is, as the task's history (`shoal describe task`)."""
        payload = {"taskid": taskid, **data, "agent": {"agentid": self.node.agent_id, "name": self.node.name}}
        return await self.node.prepare(
            event_type,
            payload,
            suffix=suffix,
            key=taskid,
            correlationid=request.correlationid,
            parent=trace,
            causationid=request.id,
            recipient=request.agentid,
            record=data.get("state") != "working" or "step" in data,
            zone=request.zone,  # a private zone's task is answered inside the zone, sealed like the request
        )

    async def _send_result(
        self,
        request: Envelope,
        trace: TraceContext,
        taskid: str,
        result: dict[str, Any],
        opening: _Opening | None = None,
    ) -> None:
        """The result (with anything still held back); without `opening` a repeat of a stored result."""

        def update(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE group_tasks SET status = ?, result = ?, updated_at = ? WHERE task_id = ? AND direction = 'in'",
                (result["status"], json.dumps(result, ensure_ascii=False), now_iso(), taskid),
            )

        out = await self._reply(TASK_RESULT, "responses", request, trace, taskid, result)
        if opening is None:
            await self.node.commit([out])
        else:
            await self._commit(opening, [out], update)

    async def _publish_steps(self, call: SkillCall) -> None:
        """The LLM and tool calls the task ran here, for the group's audit trail and tracing tools."""
        events = await self.node.timeline.events(trace_id=call.parent.trace_id, limit=10_000)
        await self.node.publish_steps([e for e in events if e.correlation_id == call.correlationid])


class _Opening:
    """What a task holds back at first (the accepted notice and its task row), so that a quick task's accepted
    notice and result are written in one transaction and reach the requester in one fetch."""

    def __init__(self, held: list[Outgoing], row: Also | None) -> None:
        self._held, self._row = held, row

    def take(self) -> tuple[list[Outgoing], Also | None]:
        held, row = self._held, self._row
        self._held, self._row = [], None
        return held, row


def _both(first: Also | None, second: Also | None) -> Also | None:
    if first is None or second is None:
        return first or second

    def write(conn: sqlite3.Connection) -> None:
        first(conn)
        second(conn)

    return write


def _failure(status: str, message: str, started: float, output: str = "") -> dict[str, Any]:
    return {
        "status": status,
        "output": output,
        "elapsedms": _ms(started),
        "error": {"code": status, "message": message},
    }


def _labelled(result: dict[str, Any], call: SkillCall) -> dict[str, Any]:
    """The result with the answer's label (docs/protocol.md), when the runner gave one."""
    return {**result, "label": call.result_label} if call.result_label else result


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


AgentRunnerFactory = Callable[[], Awaitable[SkillRunner]]
