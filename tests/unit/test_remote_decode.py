"""The remote desktop rebuilds the core's dataclasses from exactly the JSON `shoal serve` sends.

Each test encodes with the server's own code (app/serve/streams.py, routes_agent.py's converters), goes
through JSON as the wire does, and decodes with app/remote/decode.py: what comes out must equal what went in.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

import pytest

from app.remote import decode
from app.serve import routes_agent, streams
from app.serve import schemas as s
from app.serve.routes_live import SearchHitOut
from core import events as ev
from core.approvals import PendingApproval
from core.providers.base import ChatMessage, ToolCall
from core.timeline.sessions import SearchHit, SessionInfo, TranscriptEntry
from core.timeline.store import Event, EventNode
from core.tools.registry import ApprovalRequest, RiskTier

ALL_EVENTS = typing.get_args(ev.AgentEvent)
SAMPLES: dict[str, list[Any]] = {  # two values per annotated type: a plain one and an awkward one
    "str": ["turn-1", 'quote " newline \n unicode é ✓'],
    "int": [3, 0],
    "float": [12.5, 0.0],
    "float | None": [None, 7.25],
    "str | None": ["permission denied", None],
    "bool": [True, False],
    "dict[str, Any]": [{"command": "ls -la", "n": 2}, {"nested": {"list": [1, "two", None]}, "": True}],
    "dict[str, str]": [{"error": "NetworkError", "actor": "network", "message": "m", "fix": "f"}, {}],
    "list[dict[str, Any]]": [[{"memory_id": "a", "similarity": 0.5}], []],
}


def sample(cls: type, variant: int) -> Any:
    values = {f.name: SAMPLES[str(f.type)][variant] for f in dataclasses.fields(cls)}
    return cls(**values)


def wire(data: dict[str, Any]) -> dict[str, Any]:
    """What arrives at the client: the server's JSON encoding (as `sse()` writes it), parsed back."""
    parsed: dict[str, Any] = json.loads(streams.sse(data).decode().removeprefix("data: ").strip())
    return parsed


def test_every_agent_event_type_is_known_by_the_name_the_server_gives_it() -> None:
    assert len(ALL_EVENTS) == 10
    assert set(decode.EVENT_TYPES.values()) == set(ALL_EVENTS)
    for cls in ALL_EVENTS:
        instance = sample(cls, 0)
        assert decode.EVENT_TYPES[streams.event_type(instance)] is cls


@pytest.mark.parametrize("variant", [0, 1])
@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda c: c.__name__)
def test_each_agent_event_round_trips_through_the_servers_json(cls: type, variant: int) -> None:
    event = sample(cls, variant)
    rebuilt = decode.agent_event(wire(streams.event_dict(event)))
    assert type(rebuilt) is cls
    assert rebuilt == event
    assert decode.event_dict(rebuilt) == streams.event_dict(event)


def test_an_unknown_event_type_is_skipped_and_extra_fields_are_ignored() -> None:
    assert decode.agent_event({"type": "something_new", "x": 1}) is None
    newer = {**streams.event_dict(ev.AssistantDelta("hi")), "added_later": [1, 2]}
    assert decode.agent_event(newer) == ev.AssistantDelta("hi")


def test_a_missing_field_is_a_protocol_error_that_says_what_to_do() -> None:
    with pytest.raises(decode.RemoteProtocolError, match="TurnStarted") as caught:
        decode.agent_event({"type": "turn_started", "session_id": "s"})
    assert "same Shoal version" in caught.value.fix


def test_timeline_events_and_trees_round_trip_with_their_depths() -> None:
    root = Event("e1", "2026-01-01T00:00:00.000001Z", "s1", "c1", "t1", "sp1", None, "user.message", payload={"a": 1})
    child = Event("e2", "2026-01-01T00:00:00.5Z", "s1", "c1", "t1", "sp2", "sp1", "llm.response", "m", "ok", "model",
                  10, 20, 3.5, {"text": "answer ✓", "calls": [{"x": None}]})  # fmt: skip
    grandchild = dataclasses.replace(child, id="e3", span_id="sp3", parent_span_id="sp2", kind="tool.call")
    tree = [EventNode(root, 0, [EventNode(child, 1, [EventNode(grandchild, 2, [])])])]
    sent = [wire(routes_agent.node_out(n).model_dump()) for n in tree]
    assert decode.trace_nodes(sent) == tree
    assert decode.timeline_event(wire(routes_agent.event_out(child).model_dump())) == child


def test_sessions_transcripts_and_search_hits_round_trip() -> None:
    info = SessionInfo("sess", "Title é", "2026-01-01", "2026-01-02", "m", "Be brief.", True, 4, 100, 20)
    assert decode.session_info(wire(routes_agent.session_out(info).model_dump())) == info
    message = ChatMessage("assistant", "calling", [ToolCall("c1", "shell", '{"command": "ls"}')])
    entry = TranscriptEntry(message, "2026-01-01", "m", 5, 6, 7.5, "cancelled")
    out = s.MessageOut(
        role="assistant",
        content="calling",
        tool_calls=[c.to_openai() for c in message.tool_calls],
        created_at="2026-01-01",
        model="m",
        input_tokens=5,
        output_tokens=6,
        duration_ms=7.5,
        status="cancelled",
    )
    assert decode.transcript_entry(wire(out.model_dump())) == entry
    hit = SearchHit("sess", "Title", 3, "user", "the [tide] turns")
    sent = SearchHitOut(**{f: getattr(hit, f) for f in SearchHitOut.model_fields}).model_dump()
    assert decode.search_hit(wire(sent)) == hit


def test_tools_and_approval_questions_become_the_cores_own_types() -> None:
    spec, enabled = decode.tool_spec(
        wire(
            s.ToolOut(
                name="shell",
                description="Run",
                risk="high",
                source="builtin",
                enabled=False,
                parameters={"type": "object"},
            ).model_dump()
        )
    )
    assert (spec.name, spec.risk, spec.parameters, enabled) == ("shell", RiskTier.HIGH, {"type": "object"}, False)
    request = ApprovalRequest("shell", RiskTier.HIGH, "$ rm -rf build", {"command": "rm -rf build"}, "sess")
    pending = PendingApproval("ap1", request, future=None)  # type: ignore[arg-type]
    assert decode.approval_request(wire(streams.approval_dict(pending))) == request
    odd = decode.approval_request({**streams.approval_dict(pending), "risk": "catastrophic"})
    assert odd.risk is RiskTier.HIGH  # a risk this desktop does not know is asked about as high
