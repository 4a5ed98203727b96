"""Reporting up: a child tells its parent about every task it finished; the parent keeps what it hears.

A child (an agent whose place in the hierarchy is valid, core/group/hierarchy.py) sends one
`shoal.task.report` per task it took, whatever the task's status, on the `progress` topic addressed to its
parent. The report says what was done and how it went; it carries the first 300 characters of the answer
only when the child's policy lets the answer's label go to the parent (the check is `may_share`, supplied by
the runtime, which owns the policy; without one, only answers labelled up to `internal` are summarised).
The parent's reader records each report like any envelope (a `group.received` timeline event, in the session
that dispatched the task when there is one), and `Reports` keeps the latest in memory for views.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.group.envelope import TASK_REPORT, Envelope
from core.group.hierarchy import children, position
from core.timeline.ids import TraceContext, now_iso
from core.timeline.store import EVENT_COLUMNS, Event

if TYPE_CHECKING:
    from core.group.intake import Incoming
    from core.group.node import GroupNode
    from core.group.roster import Member
    from core.group.worker import Worker

log = logging.getLogger(__name__)
SUMMARY_CHARS = 300
KEEP = 200  # reports kept in memory; the timeline keeps them all
FALLBACK_MAX_LABEL = "internal"  # without a policy check, no summary for answers labelled above this
# (parent, answer text, labels of the answer and of the task, the request) -> label the summary goes with,
# or None: the summary must not go
ShareCheck = Callable[["Member", str, list[str], Envelope], str | None]


@dataclass(frozen=True)
class TaskReport:
    """A report as the parent received it."""

    taskid: str
    skill: str
    status: str
    child: dict[str, str]  # the verified sender (agentid) and its name
    requester: dict[str, Any] = field(default_factory=dict)
    elapsedms: int | None = None
    summary: str = ""
    label: str = ""
    fromchild: bool = False  # the sender is one of this agent's children in the roster now
    at: str = ""
    event_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Reports:
    def __init__(self, node: GroupNode, worker: Worker, may_share: ShareCheck | None = None) -> None:
        self.node = node
        self.may_share = may_share
        self.received: deque[TaskReport] = deque(maxlen=KEEP)
        self.listeners: list[Callable[[TaskReport], None]] = []
        worker.finished.append(self.report_up)
        node.on(TASK_REPORT, self._on_report)

    # --- the child's side --------------------------------------------------------------------------

    def parent(self) -> tuple[Member | None, str]:
        """This agent's parent to report to, or None and why not ("" when it simply has none)."""
        node = self.node
        members = node.members()
        if node.roster.get(node.agent_id) is None:
            return None, "this agent's own card is not in the roster yet"
        where = position(node.agent_id, members)
        if not where.parent:
            return None, f"its parent {where.declared!r} is not in the roster" if where.unresolved else ""
        why = where.problem(node.settings.max_hierarchy_depth)
        if why:
            return None, f"it is not a valid child: {why}"
        return node.roster.get(where.parent), ""

    async def report_up(self, request: Envelope, trace: TraceContext, result: dict[str, Any]) -> None:
        """Worker hook: the task of `request` ended with `result` (already sent to its requester)."""
        if self.node.ephemeral:
            return
        data = request.data
        taskid = str(data.get("taskid") or request.id)
        parent, why = self.parent()
        if parent is None:
            if why:
                log.info("group: task %s is not reported up: %s", taskid, why)
            return
        report = {
            "taskid": taskid,
            "skill": str(data.get("skill") or ""),
            "status": str(result.get("status") or "error"),
            "requester": _requester(data, request),
            "elapsedms": int(result.get("elapsedms") or 0),
            "agent": {"agentid": self.node.agent_id, "name": self.node.name},
            **(self._summary(parent, request, result) if self._may_see(parent, request) else {}),
        }
        await self.node.publish(
            TASK_REPORT,
            report,
            suffix="progress",
            key=taskid,
            correlationid=request.correlationid,
            parent=trace,
            causationid=request.id,
            recipient=parent.agentid,
            session_id=self.node.session_for_task.get(taskid, ""),
            zone=self._report_zone(parent, request),
        )

    def _may_see(self, parent: Member, request: Envelope) -> bool:
        """A parent outside the task's zone learns that the task ran, never what it said."""
        zones = self.node.zones
        return zones is None or zones.allows(parent.agentid, request.zone)

    def _report_zone(self, parent: Member, request: Envelope) -> str:
        """The task's own zone (sealed for its members) when the parent is in it, else the agent's zone."""
        return request.zone if self._may_see(parent, request) else ""

    def _summary(self, parent: Member, request: Envelope, result: dict[str, Any]) -> dict[str, str]:
        output = str(result.get("output") or "")
        if not output:
            return {}
        labels = [str(result.get("label") or ""), str(request.data.get("label") or "")]
        check = self.may_share or _fallback_share
        try:
            label = check(parent, output, labels, request)
        except Exception:  # a summary is a courtesy: when in doubt, leave it out
            log.exception("group: the summary check failed; the report goes without it")
            label = None
        if label is None:
            return {}
        return {"summary": output[:SUMMARY_CHARS], **({"label": label} if label else {})}

    # --- the parent's side -------------------------------------------------------------------------

    async def _on_report(self, incoming: Incoming, event: Event) -> None:
        node = self.node
        data = incoming.envelope.data
        sender = incoming.envelope.agentid
        member = node.roster.get(sender)
        agent = _dict(data.get("agent"))
        kids = {m.agentid for m in children(node.agent_id, node.members())}
        report = TaskReport(
            taskid=str(data.get("taskid") or ""),
            skill=str(data.get("skill") or ""),
            status=str(data.get("status") or ""),
            child={"agentid": sender, "name": member.name if member else str(agent.get("name") or "")[:100]},
            requester=_dict(data.get("requester")),
            elapsedms=_int(data.get("elapsedms")),
            summary=str(data.get("summary") or "")[:SUMMARY_CHARS],
            label=str(data.get("label") or "")[:20],
            fromchild=sender in kids,
            at=now_iso(),
            event_id=event.id,
        )
        self.received.append(report)
        for listener in list(self.listeners):
            try:
                listener(report)
            except Exception:
                log.exception("group: a report listener failed")


async def stored_reports(node: GroupNode, limit: int = 100) -> list[Event]:
    """Reports this agent received, newest first, from its timeline (they outlive the in-memory list)."""
    sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE kind = 'group.received' AND name = ? ORDER BY ts DESC LIMIT ?"

    def query(conn: sqlite3.Connection) -> list[Event]:
        return [Event.from_row(row) for row in conn.execute(sql, (TASK_REPORT, limit))]

    return await node.db.read(query)


def _fallback_share(parent: Member, output: str, labels: list[str], request: Envelope) -> str | None:
    """Without the policy: summarise only answers whose known labels are all up to `internal`."""
    from core.policy.labels import Label, lenient_label

    known = [label for label in map(lenient_label, labels) if label]
    if not known:
        return ""  # unlabelled: the default label (internal unless changed) applies
    highest = max(known, key=lambda label: label.rank)
    return highest.value if highest <= Label(FALLBACK_MAX_LABEL) else None


def _requester(data: dict[str, Any], request: Envelope) -> dict[str, str]:
    """The task's requester: the verified sender's id, with the name its payload gave."""
    claimed = _dict(data.get("requester"))
    return {"agentid": request.agentid, "name": str(claimed.get("name") or "")[:100]}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
