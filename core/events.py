"""What a front end can observe of a turn: frozen dataclasses, one per kind of event.

Every event that reports a completed step carries `event_id`, the timeline row it was recorded as —
the step is on disk before the front end hears of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TurnStarted:
    session_id: str
    trace_id: str
    correlation_id: str
    event_id: str


@dataclass(frozen=True)
class AssistantDelta:
    """Streamed answer text, shown as it arrives (the full text is recorded in LlmCallFinished)."""

    text: str


@dataclass(frozen=True)
class LlmCallStarted:
    iteration: int
    model: str
    event_id: str


@dataclass(frozen=True)
class LlmCallFinished:
    iteration: int
    model: str
    input_tokens: int
    output_tokens: int
    duration_ms: float
    first_token_ms: float | None
    finish_reason: str
    event_id: str


@dataclass(frozen=True)
class ToolCallStarted:
    call_id: str
    name: str
    arguments: dict[str, Any]
    risk: str
    event_id: str


@dataclass(frozen=True)
class ApprovalResolved:
    call_id: str
    name: str
    decision: str  # approve_once | approve_session | deny | auto (policy) | session (approved earlier)
    summary: str
    event_id: str


@dataclass(frozen=True)
class ToolCallFinished:
    call_id: str
    name: str
    ok: bool
    output: str
    error: str | None
    duration_ms: float
    event_id: str


@dataclass(frozen=True)
class MemoryRecalled:
    """Memories put into the model's context for this turn (automatic recall); `items` name their sources:
    dicts with memory_id, chunk_id, kind, citation, similarity, and text (a preview)."""

    items: list[dict[str, Any]]
    event_id: str


@dataclass(frozen=True)
class TurnFinished:
    session_id: str
    trace_id: str
    text: str
    status: str  # ok | cancelled | max_iterations
    iterations: int
    input_tokens: int
    output_tokens: int
    event_id: str


@dataclass(frozen=True)
class TurnFailed:
    session_id: str
    trace_id: str
    error: dict[str, str] = field(default_factory=dict)  # ShoalError.to_dict(): error, actor, message, fix
    event_id: str = ""


AgentEvent = (
    TurnStarted
    | AssistantDelta
    | LlmCallStarted
    | LlmCallFinished
    | MemoryRecalled
    | ToolCallStarted
    | ApprovalResolved
    | ToolCallFinished
    | TurnFinished
    | TurnFailed
)
