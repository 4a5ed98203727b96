"""The server's JSON back into the core's own dataclasses, so panes render remote data exactly like local data.

A turn's events arrive as `{"type": snake_case_class_name, **dataclasses.asdict(event)}` (app/serve/streams.py);
everything else in the shapes of app/serve/schemas.py. Unknown keys are ignored (a newer server may send more)
and unknown event types are skipped by the caller, so an older desktop keeps working against a newer server;
a missing required field is a broken server and raises `RemoteProtocolError`.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

from core import events as ev
from core.errors import NetworkError
from core.providers.base import ChatMessage, ToolCall
from core.timeline.sessions import SearchHit, SessionInfo, TranscriptEntry
from core.timeline.store import Event, EventNode
from core.tools.registry import ApprovalRequest, RiskTier, ToolSpec

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class RemoteProtocolError(NetworkError):
    """The server answered with something this desktop cannot read (a different Shoal version, a proxy)."""


def type_name(cls: type) -> str:
    """TurnStarted -> turn_started, as the server names events (the same rule as app/serve/streams.py)."""
    return _CAMEL.sub("_", cls.__name__).lower()


EVENT_TYPES: dict[str, type] = {type_name(cls): cls for cls in typing.get_args(ev.AgentEvent)}


def _build(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise RemoteProtocolError(
            f"The server sent a {cls.__name__} this desktop cannot read ({exc}).",
            "Run the same Shoal version on both machines.",
        ) from exc


def agent_event(data: dict[str, Any]) -> ev.AgentEvent | None:
    """One turn event; None for a type this desktop does not know (skipped, not fatal)."""
    cls = EVENT_TYPES.get(str(data.get("type", "")))
    return None if cls is None else typing.cast(ev.AgentEvent, _build(cls, data))


def event_dict(event: ev.AgentEvent) -> dict[str, Any]:
    """The inverse, as the server encodes it (tests check both directions agree)."""
    return {"type": type_name(type(event)), **dataclasses.asdict(event)}


def timeline_event(data: dict[str, Any]) -> Event:
    event: Event = _build(Event, data)
    return event


def trace_nodes(nodes: list[dict[str, Any]], depth: int = 0) -> list[EventNode]:
    """TraceNodeOut trees -> EventNode trees (the server leaves `depth` out: it is the nesting)."""
    return [
        EventNode(timeline_event(node["event"]), depth, trace_nodes(node.get("children") or [], depth + 1))
        for node in nodes
    ]


def session_info(data: dict[str, Any]) -> SessionInfo:
    info: SessionInfo = _build(SessionInfo, {"system_prompt": "", **data})
    return info


def _tool_call(data: dict[str, Any]) -> ToolCall:
    function = data.get("function") or {}
    return ToolCall(str(data.get("id", "")), str(function.get("name", "")), str(function.get("arguments", "")))


def transcript_entry(data: dict[str, Any]) -> TranscriptEntry:
    message = ChatMessage(
        role=data["role"],
        content=data.get("content") or "",
        tool_calls=[_tool_call(c) for c in data.get("tool_calls") or []],
        tool_call_id=data.get("tool_call_id"),
        name=data.get("name"),
    )
    return TranscriptEntry(
        message,
        data.get("created_at") or "",
        data.get("model"),
        data.get("input_tokens"),
        data.get("output_tokens"),
        data.get("duration_ms"),
        data.get("status") or "ok",
        data.get("label"),
    )


def chat_message(data: dict[str, Any]) -> ChatMessage:
    return transcript_entry(data).message


def search_hit(data: dict[str, Any]) -> SearchHit:
    hit: SearchHit = _build(SearchHit, data)
    return hit


def tool_spec(data: dict[str, Any]) -> tuple[ToolSpec, bool]:
    """(spec, enabled) from a ToolOut."""
    spec = ToolSpec(
        name=data["name"],
        description=data.get("description", ""),
        parameters=data.get("parameters") or {},
        risk=RiskTier(data.get("risk", "high")),
        source=data.get("source", "builtin"),
    )
    return spec, bool(data.get("enabled", True))


def approval_request(data: dict[str, Any]) -> ApprovalRequest:
    """An ApprovalOut as the question the local broker asks (an unknown risk counts as high)."""
    try:
        risk = RiskTier(data.get("risk", "high"))
    except ValueError:
        risk = RiskTier.HIGH
    return ApprovalRequest(
        tool=str(data.get("tool", "")),
        risk=risk,
        summary=str(data.get("summary", "")),
        arguments=dict(data.get("arguments") or {}),
        session_id=str(data.get("session_id", "")),
    )
