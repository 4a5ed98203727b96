"""Group tasks as people look at them: `shoal get tasks`, `shoal describe task`, and the desktop's dashboard.

Two sources, joined by task id: this agent's own `group_tasks` rows (tasks it sent, `out`, and took, `in`)
with the envelopes its timeline recorded for them (who accepted, the latest `step n of m`, the result), and the
`tasks` on members' roster cards (protocol §4), which show live work anywhere in the group, also between two
other members. Plain dataclasses, no Kafka and no Qt: the CLI prints them, the UI bridge hands them to widgets.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.errors import UserError
from core.group.envelope import TASK_PROGRESS, TASK_REQUEST, TASK_RESULT
from core.timeline.ids import parse_iso

if TYPE_CHECKING:
    from core.group.roster import Member
    from core.timeline.db import Database

FINAL = ("ok", "error", "expired", "refused", "cancelled", "unanswered")
SELF = "this agent"
_EVENTS_SQL = (
    "SELECT kind, name, ts, payload FROM events WHERE correlation_id IN ({marks}) "
    "AND kind IN ('group.sent', 'group.received') AND name IN (?, ?, ?) "
    "AND (json_extract(payload, '$.data.delta') IS NULL OR json_extract(payload, '$.data.step') IS NOT NULL) "
    "ORDER BY ts, id"
)


@dataclass(frozen=True)
class TaskView:
    """One task: `direction` is out (this agent sent it), in (this agent took it) or seen (a member's card)."""

    taskid: str
    skill: str
    status: str
    direction: str
    assignee: str = ""
    requester: str = ""
    step: int | None = None
    steps: int | None = None
    message: str = ""
    elapsed_s: float | None = None
    created_at: str = ""
    updated_at: str = ""
    deadline: str = ""
    input: str = ""

    @property
    def step_text(self) -> str:
        if self.step is None:
            return "—"
        return f"{self.step}/{self.steps}" if self.steps else str(self.step)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HistoryEntry:
    at: str
    what: str  # request | accepted | step | result
    who: str
    detail: str


@dataclass(frozen=True)
class TaskDetail:
    task: TaskView
    history: list[HistoryEntry] = field(default_factory=list)
    output: str = ""
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**self.task.to_dict(), "history": [asdict(h) for h in self.history], "output": self.output,
                "error": self.error}  # fmt: skip


@dataclass(frozen=True)
class LiveTask:
    """A task on a member's card; `elapsed()` ticks on this machine's clock from when the card was read."""

    taskid: str
    skill: str
    requester: str
    step: int | None
    steps: int | None
    message: str
    startedat: str
    elapsed_at_seen: float
    seen_at: float  # time.monotonic() when its card was read

    def elapsed(self, now: float | None = None) -> float:
        return self.elapsed_at_seen + max(0.0, (now if now is not None else time.monotonic()) - self.seen_at)


@dataclass(frozen=True)
class MemberRow:
    """A row of the dashboard's member table."""

    agentid: str
    name: str
    status: str  # idle | busy
    isself: bool
    tasks: list[LiveTask]

    @property
    def current(self) -> LiveTask | None:
        return self.tasks[0] if self.tasks else None


# --- this agent's tasks --------------------------------------------------------------------------------


async def local_tasks(db: Database, limit: int = 50) -> list[TaskView]:
    """This agent's latest tasks, newest first, each with what its timeline knows of it."""
    return [view for view, _detail in await db.read(lambda conn: _load(conn, None, limit))]


async def describe(db: Database, ref: str, members: Iterable[Member] = ()) -> TaskDetail:
    """One task by id or unique id prefix (4+ characters): local first, else a member's card."""
    ref = ref.strip().lower()
    if len(ref) < 4:
        raise UserError("Give at least 4 characters of the task id.", "`shoal get tasks` lists the ids.")
    found = await db.read(lambda conn: _load(conn, ref, 20))
    ids = {view.taskid for view, _ in found}
    if len(ids) > 1:
        raise UserError(f"{ref!r} matches several tasks ({', '.join(sorted(ids)[:3])}).", "Give more of the id.")
    if found:
        view, detail = found[0]
        live = with_live([view], members)
        return replace(detail, task=live[0])
    for view in with_live([], members):
        if view.taskid.startswith(ref):
            return TaskDetail(view)
    raise UserError(f"No group task matches {ref!r}.", "`shoal get tasks` lists this agent's and the group's tasks.")


def _load(conn: sqlite3.Connection, prefix: str | None, limit: int) -> list[tuple[TaskView, TaskDetail]]:
    where, params = ("WHERE task_id LIKE ?", [f"{prefix}%"]) if prefix else ("", [])
    rows = conn.execute(
        f"SELECT * FROM group_tasks {where} ORDER BY created_at DESC, direction DESC LIMIT ?", (*params, limit)
    ).fetchall()
    if not rows:
        return []
    correlations = sorted({r["correlation_id"] for r in rows})
    sql = _EVENTS_SQL.format(marks=", ".join("?" * len(correlations)))
    by_task: dict[str, list[tuple[str, str, str, dict[str, Any]]]] = {}
    for kind, name, ts, payload in conn.execute(sql, (*correlations, TASK_REQUEST, TASK_PROGRESS, TASK_RESULT)):
        data = json.loads(payload or "{}").get("data") or {}
        by_task.setdefault(str(data.get("taskid", "")), []).append((kind, name, ts, data))
    return [_fold(dict(r), by_task.get(r["task_id"], [])) for r in rows]


def _fold(row: dict[str, Any], events: list[tuple[str, str, str, dict[str, Any]]]) -> tuple[TaskView, TaskDetail]:
    """A row and its envelopes: who took it, the latest step, the result, and the history in order."""
    out = row["direction"] == "out"
    requester, assignee = (SELF, "") if out else (_short(row["requester"]), SELF)
    step = steps = None
    message, accepted, elapsed_ms = "", False, None
    history: list[HistoryEntry] = []
    for _kind, name, ts, data in events:
        who = _who(data.get("agent")) or ""
        if name == TASK_REQUEST:
            sender = _who(data.get("requester")) or requester
            if not out:
                requester = sender
            target = f"skill {data.get('skill')}" if data.get("skill") else "one agent"
            history.append(HistoryEntry(ts, "request", sender, f"{'sent to' if out else 'from'} {target}"))
        elif name == TASK_PROGRESS:
            if data.get("state") == "accepted":
                accepted, assignee = True, (who if out else SELF) or assignee
                history.append(HistoryEntry(ts, "accepted", who, "took the task"))
            if _int(data.get("step")) is not None:
                step, steps, message = data["step"], _int(data.get("steps")), str(data.get("message") or "")
                history.append(HistoryEntry(ts, "step", who, f"step {_of(step, steps)}: {message}".rstrip(": ")))
        elif name == TASK_RESULT:
            assignee = (who if out else SELF) or assignee
            elapsed_ms = _int(data.get("elapsedms"))
            took = f" in {elapsed_ms / 1000:.1f} s" if elapsed_ms is not None else ""
            history.append(HistoryEntry(ts, "result", who, f"{data.get('status', '?')}{took}"))
    result = json.loads(row["result"]) if row.get("result") else {}
    status = str(row["status"])
    if out and status == "sent":
        status = "running" if accepted else "waiting"
    if out and not assignee and row.get("assignee"):
        assignee = _who(result.get("agent")) or _short(row["assignee"])
    view = TaskView(
        row["task_id"], row["skill"], status, row["direction"], assignee, requester, step, steps, message,
        _elapsed(row, status, elapsed_ms), row["created_at"], row["updated_at"], row["deadline"], row["input"],
    )  # fmt: skip
    found = result.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    return view, TaskDetail(view, history, str(result.get("output") or ""), str(error.get("message") or ""))


# --- what members' cards show --------------------------------------------------------------------------


def with_live(tasks: list[TaskView], members: Iterable[Member]) -> list[TaskView]:
    """`tasks` with the live step of those a member is working on, plus the live tasks `tasks` lacks."""
    by_id = {task.taskid: n for n, task in enumerate(tasks)}
    out = list(tasks)
    for member in members:
        for live in member_tasks(member):
            n = by_id.get(live.taskid)
            if n is None:
                by_id[live.taskid] = len(out)
                out.append(
                    TaskView(live.taskid, live.skill, "running", "seen", member.name, live.requester, live.step,
                             live.steps, live.message, live.elapsed(), live.startedat)
                )  # fmt: skip
                continue
            task = out[n]
            status = task.status if task.status in FINAL else "running"
            assignee = SELF if task.direction == "in" else member.name
            out[n] = replace(task, status=status, assignee=assignee, step=live.step, steps=live.steps,
                             message=live.message or task.message)  # fmt: skip
    return out


def member_tasks(member: Member) -> list[LiveTask]:
    out = []
    for card in member.tasks:
        requester = card.get("requester") or {}
        out.append(
            LiveTask(card["taskid"], card.get("skill", ""), requester.get("name") or _short(requester.get("agentid")),
                     _int(card.get("step")), _int(card.get("steps")), card.get("message", ""),
                     card.get("startedat", ""), (_int(card.get("elapsedms")) or 0) / 1000, member.last_seen)
        )  # fmt: skip
    return out


def member_rows(members: Iterable[Member], own_id: str = "") -> list[MemberRow]:
    """The dashboard's members: busy ones first, then by name."""
    rows = [
        MemberRow(
            m.agentid, m.name, "busy" if m.tasks or m.status == "busy" else "idle", m.agentid == own_id, member_tasks(m)
        )
        for m in members
    ]
    return sorted(rows, key=lambda r: (r.status != "busy", r.name.lower()))


# --- small helpers -------------------------------------------------------------------------------------


def _elapsed(row: dict[str, Any], status: str, elapsed_ms: int | None) -> float | None:
    if status in FINAL and elapsed_ms is not None:
        return elapsed_ms / 1000
    start = parse_iso(row.get("created_at"))
    end = parse_iso(row.get("updated_at")) if status in FINAL else datetime.now(UTC)
    return max(0.0, (end - start).total_seconds()) if start and end else None


def _who(agent: Any) -> str:
    if not isinstance(agent, dict):
        return ""
    return str(agent.get("name") or _short(agent.get("agentid")))


def _short(agentid: Any) -> str:
    return str(agentid or "")[:12]


def _int(value: Any) -> int | None:
    """A peer's count or duration, when it is one a float can hold (0 to 2**53); else unknown."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**53
    return value if ok else None


def _of(step: int, steps: int | None) -> str:
    return f"{step} of {steps}" if steps else str(step)
