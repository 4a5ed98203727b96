"""Request and response bodies of the HTTP API. They are the OpenAPI document: keep them exact.

Each request model forbids unknown fields, so a typo in a client gets a 422 naming the field instead of
being silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def sse_schema(names: str) -> dict[str, Any]:
    """One Server-Sent Event as OpenAPI describes it: an `event` name and a JSON `data` line."""
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"type": "string", "description": names},
            "data": {"type": "string", "description": "one JSON document per event"},
            "id": {"type": "string"},
        },
    }


class ErrorBody(BaseModel):
    """Every error the API answers with: what happened, who must act, and what to do."""

    error: str = Field(description="error class, e.g. UserError, Unauthorized, RateLimited")
    actor: str = Field(description="who must act: user, config, network or bug")
    message: str
    fix: str = ""


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class OpenAIError(BaseModel):
    """Errors of the /v1 routes, in the shape OpenAI clients read."""

    error: OpenAIErrorDetail


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    model: str
    group: bool
    scheduler: bool


class SessionOut(BaseModel):
    id: str
    title: str
    created_at: str
    updated_at: str
    model: str
    system_prompt: str = ""
    pinned: bool
    message_count: int
    input_tokens: int
    output_tokens: int


class NewSession(_Body):
    title: str = Field("", max_length=200)


class MessageOut(BaseModel):
    role: str
    content: str
    label: str | None = Field(None, description="the sensitivity label it was stored with (null: unlabelled)")
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    created_at: str
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    duration_ms: float | None = Field(None, description="how long the model call that wrote it took")
    status: str = Field("ok", description="ok, or cancelled / error for an answer cut short")


class SessionDetail(BaseModel):
    session: SessionOut
    messages: list[MessageOut]


class SendMessage(_Body):
    text: str = Field(min_length=1, max_length=200_000, description="the message to the agent")
    stream: bool = Field(True, description="answer as Server-Sent Events (one per agent event)")
    regenerate: bool = Field(False, description="answer the last question again instead of sending `text`")
    label: Literal["public", "internal", "confidential", "secret"] | None = Field(
        None, description="the message's sensitivity label (default: the policy's classifier rules, then its default)"
    )


class TurnResult(BaseModel):
    """The end of a turn when `stream` is false: the final event, plus every event for the curious."""

    session_id: str
    status: str = Field(description="ok | cancelled | max_iterations | failed")
    text: str
    trace_id: str
    input_tokens: int
    output_tokens: int
    error: dict[str, str] | None = None
    events: list[dict[str, Any]]


class EventOut(BaseModel):
    id: str
    ts: str
    session_id: str
    correlation_id: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    name: str
    status: str
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    duration_ms: float | None
    payload: dict[str, Any]


class TraceNodeOut(BaseModel):
    event: EventOut
    children: list[TraceNodeOut]


class ToolOut(BaseModel):
    name: str
    description: str
    risk: str
    source: str
    enabled: bool
    parameters: dict[str, Any]


class ToolToggle(_Body):
    enabled: bool


class ApprovalOut(BaseModel):
    id: str
    tool: str
    risk: str
    summary: str
    arguments: dict[str, Any]
    session_id: str


class ApprovalAnswer(_Body):
    decision: Literal["approve_once", "approve_session", "deny"]


class MemoryHit(BaseModel):
    chunk_id: int
    source_id: str
    text: str
    heading: str
    kind: str = Field(description="note, document or shared")
    uri: str
    title: str
    zone: str
    created_at: str
    score: float
    similarity: float | None


CLAIM_DOC = "group work key: each scheduled time runs once across the group (docs/coordination.md); empty: none"


class JobIn(_Body):
    """A scheduled prompt: exactly one of cron, every, at."""

    prompt: str = Field(min_length=1, max_length=20_000)
    name: str = Field("", max_length=200)
    cron: str | None = Field(None, max_length=200, description="5-field cron expression, local time")
    every: str | None = Field(None, max_length=50, description="interval: 30m, 2h, 1d")
    at: str | None = Field(None, max_length=50, description="one-off local time, ISO 8601")
    catch_up: Literal["once", "skip"] | None = None
    notify: bool = True
    group_claim: str | None = Field(None, max_length=200, description=CLAIM_DOC)


class RunOut(BaseModel):
    """One run of a scheduled job."""

    id: str
    job_id: str
    job_name: str
    session_id: str | None
    scheduled_for: str | None = Field(description="when it was due; null for a manual run")
    started_at: str | None
    finished_at: str | None
    status: str = Field(description="queued, running, ok, failed, cancelled, skipped or missed")
    trigger: str = Field(description="schedule, catch_up or manual")
    count: int = Field(description="how many scheduled times a `missed` row stands for")
    trace_id: str | None
    summary: str
    error: str | None
    created_at: str
    duration_s: float | None


class JobOut(BaseModel):
    """A scheduled prompt."""

    id: str
    short_id: str
    name: str
    prompt: str
    kind: str = Field(description="cron, interval or once")
    expr: str
    schedule: str = Field(description="the schedule in words")
    catch_up: str | None
    notify: bool
    enabled: bool
    session_id: str
    created_at: str
    updated_at: str
    next_run: str | None
    last_run: str | None
    last_status: str | None
    group_claim: str | None = Field(None, description=CLAIM_DOC)


class JobDetail(JobOut):
    runs: list[RunOut]


class JobToggle(_Body):
    enabled: bool


class GroupStatus(BaseModel):
    enabled: bool
    joined: bool
    name: str
    agent: str = ""
    state: str = ""
    members: list[dict[str, Any]] = Field(default_factory=list)
    outbox_depth: int | None = None


# --- OpenAI-compatible ------------------------------------------------------------------------------------


class OpenAIMessage(BaseModel):
    """A chat message as OpenAI clients send it. Content may be a string or a list of text parts."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    """Fields Shoal uses; any other OpenAI field is accepted and ignored (clients send many)."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=200)
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=2000)
    stream: bool = False
    user: str | None = Field(None, max_length=200)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class CompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class CompletionChoice(BaseModel):
    index: int
    message: CompletionMessage
    finish_reason: str


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage
