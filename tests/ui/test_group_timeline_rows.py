"""Group activity in the timeline: the rows that group.sent / group.received / group.dropped events become,
built exactly as `core.group.node` records them (payload: the envelope summary and the data)."""

from __future__ import annotations

from typing import Any

from core.timeline.ids import TraceContext
from core.timeline.store import Event
from ui.widgets import event_format as fmt
from ui.widgets.trace_tree import Col, TraceTree

PEER = "b" * 43


def group_event(kind: str, name: str, data: dict[str, Any], status: str = "ok", **extra: Any) -> Event:
    remote = TraceContext.new_root()
    trace = TraceContext(remote.trace_id, TraceContext.new_root().span_id, remote.span_id)
    envelope = {"id": "e1", "type": name, "agentid": PEER, "correlationid": "t1", "topic": "group.team.responses"}
    payload = {"envelope": envelope, "data": data, **extra}
    return Event.new(kind, session_id="", trace=trace, correlation_id="t1", name=name, status=status, payload=payload)


def test_a_received_result_reads_as_who_answered_and_how() -> None:
    event = group_event(
        "group.received",
        "shoal.task.result",
        {"taskid": "t1", "status": "ok", "output": "All tests pass.", "agent": {"agentid": PEER, "name": "desk"}},
    )
    tree = TraceTree()
    item = tree.add_event(event)
    assert item is not None
    assert item.text(Col.EVENT) == "← task.result from desk (ok)"
    assert item.text(Col.STATUS) == "✓"
    assert "All tests pass." in item.toolTip(Col.EVENT)
    assert fmt.matches(event, "Group") and not fmt.matches(event, "Tool calls")
    assert fmt.KIND_COLORS["group.received"]


def test_requests_progress_and_drops() -> None:
    request = {"taskid": "t1", "skill": "coder", "input": "Fix the failing test in app/cli.py please",
               "requester": {"agentid": "a" * 43, "name": "alice"}}  # fmt: skip
    sent = group_event("group.sent", "shoal.task.request", request)
    assert fmt.label(sent) == "→ task.request to skill coder “Fix the failing test in app/cli.py please”"
    addressed = group_event("group.sent", "shoal.task.request", {**request, "skill": ""})
    addressed.payload["envelope"]["recipient"] = PEER
    assert fmt.label(addressed).startswith(f"→ task.request to agent {PEER[:12]}")
    received = group_event("group.received", "shoal.task.request", request)
    assert fmt.label(received).startswith("← task.request from alice for skill coder “Fix")
    progress = group_event("group.received", "shoal.task.progress", {"state": "accepted", "agent": {"name": "desk"}})
    assert fmt.label(progress) == "← task.progress from desk: accepted"
    dropped = Event.new(
        "group.dropped",
        session_id="",
        trace=TraceContext.new_root(),
        correlation_id="t1",
        name="shoal.task.result",
        status="error",
        payload={"reason": "bad-signature", "detail": "signature does not verify",
                 "envelope": {"type": "shoal.task.result", "agentid": PEER}},
    )  # fmt: skip
    assert fmt.label(dropped) == "✕ dropped task.result: bad-signature · signature does not verify"
    assert fmt.matches(dropped, "Errors") and fmt.matches(dropped, "Group")
