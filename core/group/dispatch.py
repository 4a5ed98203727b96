"""Sending tasks to the group and following them to their result.

`dispatch()` puts a task on a skill's work queue (or addresses one agent) and returns a `TaskHandle` that
yields the progress as it streams back and ends with the result. A task nobody takes fails after its
deadline with the reason the roster suggests, never silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import UserError
from core.group.envelope import TASK_PROGRESS, TASK_REQUEST, TASK_RESULT
from core.group.hierarchy import own_ids, pick_child
from core.group.intake import Incoming
from core.group.node import GroupNode
from core.group.roster import Member
from core.timeline.ids import TraceContext, new_id, now_iso
from core.timeline.store import Event

RESULT_GRACE = 2.0  # seconds past the deadline a result may still be on its way
FORGET_AFTER = 300.0  # seconds a finished task's handle is kept for its late progress and repeated results


@dataclass(frozen=True)
class TaskProgress:
    taskid: str
    state: str
    agent: dict[str, Any]
    delta: str = ""
    message: str = ""
    step: int | None = None
    steps: int | None = None
    elapsedms: int | None = None


@dataclass(frozen=True)
class TaskResult:
    taskid: str
    status: str  # ok | error | expired | refused | cancelled | unanswered
    output: str = ""
    error: dict[str, Any] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    elapsedms: int | None = None
    event_id: str = ""
    label: str = ""  # the answer's sensitivity label as the taker gave it ("" when it gave none)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class TaskHandle:
    """Iterate for `TaskProgress` items, ending with the `TaskResult`; or `await handle.result()`."""

    def __init__(self, taskid: str, correlationid: str, deadline: datetime, skill: str, recipient: str) -> None:
        self.taskid = taskid
        self.correlationid = correlationid
        self.deadline = deadline
        self.skill = skill
        self.recipient = recipient
        self.accepted_by: dict[str, Any] | None = None
        self.label = ""  # the label the task was sent with
        self.request_id = ""
        self.trace: TraceContext | None = None
        self._queue: asyncio.Queue[TaskProgress | TaskResult] = asyncio.Queue()
        self._result: asyncio.Future[TaskResult] = asyncio.get_running_loop().create_future()
        self._seen: set[str] = set()  # envelope ids already taken in (a re-read batch must not stream twice)

    @property
    def done(self) -> bool:
        return self._result.done()

    def first_sight(self, envelope_id: str) -> bool:
        if envelope_id in self._seen:
            return False
        self._seen.add(envelope_id)
        return True

    @property
    def finished_by(self) -> str:
        """The receipt event id of the result that finished the task ("" while it runs)."""
        return self._result.result().event_id if self._result.done() and not self._result.cancelled() else ""

    def push(self, progress: TaskProgress) -> None:
        if progress.state == "accepted" and self.accepted_by is None:
            self.accepted_by = progress.agent
        if not self.done:  # after the result, progress (on its own topic, so possibly late) adds nothing
            self._queue.put_nowait(progress)

    def finish(self, result: TaskResult) -> bool:
        if self.done:
            return False  # the first result wins (protocol §4)
        self._result.set_result(result)
        self._queue.put_nowait(result)
        return True

    async def result(self) -> TaskResult:
        return await asyncio.shield(self._result)

    def __aiter__(self) -> AsyncIterator[TaskProgress | TaskResult]:
        return self._updates()

    async def _updates(self) -> AsyncIterator[TaskProgress | TaskResult]:
        while True:
            item = await self._queue.get()
            yield item
            if isinstance(item, TaskResult):
                return


class Dispatcher:
    def __init__(self, node: GroupNode) -> None:
        self.node = node
        self.handles: dict[str, TaskHandle] = {}
        self._timers: set[asyncio.Task[None]] = set()
        # Progress and results reach the waiting caller as soon as they are verified, while their receipt
        # is being recorded (they only feed in-memory handles; a repeat is recognised by envelope id, and
        # offsets are still committed only after the record). The result is stored once recorded.
        node.on_early(TASK_PROGRESS, self._progress_now)
        node.on_early(TASK_RESULT, self._result_now)
        node.on(TASK_RESULT, self._on_result)

    async def dispatch(
        self,
        text: str,
        *,
        skill: str = "",
        to: str = "",
        deadline: float | None = None,
        parent: TraceContext | None = None,
        correlationid: str = "",
        causationid: str | None = None,
        depth: int = 0,
        session_id: str = "",
        label: str = "",
        to_children: bool = False,
        zone: str = "",
    ) -> TaskHandle:
        """`label`: the task's sensitivity label, carried in the request (the taker treats the task as data of
        that label); the caller has already checked that the policy lets it go (GroupRuntime.dispatch).
        `to_children`: address the task (for `skill`, if given) to the least busy valid child of this agent,
        or to `to` when the caller chose that child already (core/group/hierarchy.py)."""
        node = self.node
        if not text.strip():
            raise UserError("The task is empty.", "Say what the peer should do.")
        zone = zone or node.settings.zone  # an agent in a private zone works inside it by default
        if to_children:
            to = to or self.pick_child(skill).agentid
        elif node.zones is not None and node.zones.is_private(zone) and not to:
            to = self.pick_in_zone(zone, skill).agentid  # sealed for the zone: addressed to one of its members
        elif bool(skill) == bool(to):
            raise UserError("Name either a skill or an agent for the task.", "Use --skill NAME or --to AGENT.")
        recipient = ""
        if to:
            member = node.roster.find(to)
            if member is None:
                known = ", ".join(m.name for m in node.roster.members()) or "none"
                raise UserError(f"No agent {to!r} in the group's roster.", f"Live members: {known}.")
            recipient = member.agentid
        seconds = deadline if deadline is not None else node.settings.task_deadline
        due = datetime.now(UTC) + timedelta(seconds=seconds)
        taskid = new_id()
        correlationid = correlationid or taskid
        data = {
            "taskid": taskid,
            "skill": skill or "",
            "input": text,
            "deadline": _iso(due),
            "depth": depth,
            "maxdepth": node.settings.max_delegation_depth,
            "requester": {"agentid": node.agent_id, "name": node.name},
            **({"label": label} if label else {}),
        }
        handle = TaskHandle(taskid, correlationid, due, skill, recipient)
        handle.label = label
        self.handles[taskid] = handle
        if session_id:
            node.session_for_task[taskid] = session_id
        try:  # registered first: a quick result may be read before publish returns
            if skill and not recipient:
                await node.ensure_skill_topic(skill)
            envelope, event = await node.publish(
                TASK_REQUEST,
                data,
                suffix="requests" if recipient else f"skill.{skill}.requests",
                key=recipient or taskid,
                correlationid=correlationid,
                parent=parent,
                session_id=session_id,
                causationid=causationid,
                recipient=recipient or None,
                zone=zone,
                also=task_row(
                    taskid,
                    "out",
                    data,
                    correlationid=correlationid,
                    requester=node.agent_id,
                    assignee=recipient,
                    session_id=session_id,
                ),
            )
        except BaseException:  # refused, failed or cancelled before it went out: nothing to wait for
            self.handles.pop(taskid, None)
            node.session_for_task.pop(taskid, None)
            raise
        handle.request_id = envelope.id
        handle.trace = event.trace if event else None
        timer = asyncio.create_task(self._expire(handle, seconds + RESULT_GRACE), name=f"shoal-task-{taskid}")
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)
        return handle

    def pick_in_zone(self, zone: str, skill: str) -> Member:
        """The least busy live member of a private zone offering `skill` (any skill when empty)."""
        node = self.node
        assert node.zones is not None
        members = [
            m
            for m in node.members()
            if m.agentid != node.agent_id
            and node.zones.allows(m.agentid, zone)
            and (not skill or skill in m.skill_names)
        ]
        if not members:
            what = f" offering skill {skill!r}" if skill else ""
            raise UserError(f"No live member of zone {zone!r}{what}.", "See the zones: shoal get zones")
        return min(members, key=lambda m: (m.status != "idle", m.active_tasks, m.agentid))

    def pick_child(self, skill: str) -> Member:
        """The child a `to_children` task goes to (a UserError saying why when none can take it)."""
        node = self.node
        members = node.members()
        ids = own_ids(node.agent_id, node.name, members, ephemeral=node.ephemeral)
        return pick_child(ids, skill, members, node.settings.max_hierarchy_depth)

    async def close(self) -> None:
        for timer in list(self._timers):
            timer.cancel()
        for handle in self.handles.values():
            handle.finish(
                TaskResult(handle.taskid, "cancelled", error={"code": "cancelled", "message": "the agent stopped"})
            )

    async def _expire(self, handle: TaskHandle, seconds: float) -> None:
        """Ends the task as unanswered at its deadline; either way forgets it `FORGET_AFTER` seconds after it
        ended (a long-running agent would otherwise keep every task it ever sent)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(handle.result()), seconds)
        if not handle.done:
            result = TaskResult(handle.taskid, "unanswered", error={"code": "deadline", "message": self._why(handle)})
            if handle.finish(result):
                await self._store_result(handle.taskid, result)
        await asyncio.sleep(FORGET_AFTER)  # meanwhile late progress still says who accepted it
        self.handles.pop(handle.taskid, None)
        self.node.session_for_task.pop(handle.taskid, None)

    def _why(self, handle: TaskHandle) -> str:
        if handle.accepted_by:
            name = handle.accepted_by.get("name") or handle.accepted_by.get("agentid", "?")
            return f"{name} accepted the task but sent no result before its deadline ({_iso(handle.deadline)})."
        if handle.recipient:
            member = self.node.roster.get(handle.recipient)
            who = member.name if member else handle.recipient
            state = "is in the roster" if member else "has left the group"
            return f"Agent {who} ({state}) did not take the task before its deadline."
        takers = [m.name for m in self.node.roster.with_skill(handle.skill)]
        if not takers:
            return f"No live member offers the skill {handle.skill!r}, so nobody took the task before its deadline."
        return (
            f"Members offering {handle.skill!r} ({', '.join(takers)}) did not take the task before its "
            "deadline: they may be busy or not consuming."
        )

    def _progress_now(self, incoming: Incoming, event: Event) -> None:
        data = incoming.envelope.data
        handle = self.handles.get(str(data.get("taskid", "")))
        if handle is None or not handle.first_sight(incoming.envelope.id):
            return
        handle.push(
            TaskProgress(
                handle.taskid,
                str(data.get("state", "working")),
                _agent(data, incoming),
                delta=str(data.get("delta") or ""),
                message=str(data.get("message") or ""),
                step=_int(data.get("step")),
                steps=_int(data.get("steps")),
                elapsedms=_int(data.get("elapsedms")),
            )
        )

    def _result_now(self, incoming: Incoming, event: Event) -> None:
        handle = self.handles.get(str(incoming.envelope.data.get("taskid", "")))
        if handle is not None and handle.first_sight(incoming.envelope.id):
            handle.finish(_task_result(incoming, event))

    async def _on_result(self, incoming: Incoming, event: Event) -> None:
        """Recorded: store the result that finished the task (the first one, protocol §4)."""
        handle = self.handles.get(str(incoming.envelope.data.get("taskid", "")))
        if handle is not None and handle.finished_by == event.id:
            await self._store_result(handle.taskid, _task_result(incoming, event))

    async def _store_result(self, taskid: str, result: TaskResult) -> None:
        payload = json.dumps(
            {
                "status": result.status,
                "output": result.output,
                "error": result.error,
                "agent": result.agent,
                "usage": result.usage,
                **({"label": result.label} if result.label else {}),
            },
            ensure_ascii=False,
        )

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE group_tasks SET status = ?, result = ?, assignee = ?, updated_at = ? "
                "WHERE task_id = ? AND direction = 'out'",
                (result.status, payload, str(result.agent.get("agentid", "")), now_iso(), taskid),
            )

        await self.node.db.write(write)


def task_row(
    taskid: str, direction: str, data: dict[str, Any], *, correlationid: str, requester: str, **extra: str
) -> Callable[[sqlite3.Connection], None]:
    """The group_tasks row of a task sent ('out') or taken ('in'); `extra` sets request_id, assignee, status
    and session_id. Tolerant of a foreign peer's odd payload: every field is coerced to its column's type."""
    depth = data.get("depth")
    values = {
        "task_id": taskid,
        "direction": direction,
        "request_id": extra.get("request_id", ""),
        "correlation_id": correlationid,
        "skill": str(data.get("skill") or ""),
        "requester": requester,
        "assignee": extra.get("assignee", ""),
        "input": str(data.get("input") or ""),
        "status": extra.get("status", "sent"),
        "created_at": now_iso(),
        "updated_at": now_iso(),
        "deadline": str(data.get("deadline") or ""),
        "depth": depth if isinstance(depth, int) and not isinstance(depth, bool) else 0,
        "session_id": extra.get("session_id", ""),
        "result": "",
    }
    sql = f"INSERT OR IGNORE INTO group_tasks ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})"

    def write(conn: sqlite3.Connection) -> None:
        conn.execute(sql, tuple(values.values()))

    return write


def _task_result(incoming: Incoming, event: Event) -> TaskResult:
    data = incoming.envelope.data
    return TaskResult(
        str(data.get("taskid", "")),
        str(data.get("status", "error")),
        str(data.get("output") or ""),
        _dict(data.get("error")),
        _agent(data, incoming),
        _dict(data.get("usage")),
        _int(data.get("elapsedms")),
        event.id,
        _label(data.get("label")),
    )


def _agent(data: dict[str, Any], incoming: Incoming) -> dict[str, Any]:
    """Who answered: always the verified sender's id (a payload cannot claim to be someone else)."""
    agent = data.get("agent")
    name = str(agent.get("name", "")) if isinstance(agent, dict) else ""
    return {"agentid": incoming.envelope.agentid, "name": name[:100]}


def _label(value: Any) -> str:
    """A label from a peer's payload, if it is one we know ("" otherwise: unlabelled)."""
    from core.policy.labels import lenient_label

    found = lenient_label(value)
    return found.value if found else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
