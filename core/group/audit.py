"""Audit records: the timeline events of group activity, as the audit topic carries them.

Every record names its span and its parent span, so `shoal trace` can rebuild one decision across agents
from the audit topic alone: who asked (the origin chain of the request), what crossed the wire (sent /
received / dropped) and which LLM and tool calls ran where (steps).
"""

from __future__ import annotations

from typing import Any

from core.group.envelope import Envelope
from core.timeline.ids import TraceContext, now_iso
from core.timeline.store import Event

STEP_KINDS = (
    "user.message",
    "llm.request",
    "llm.response",
    "tool.call",
    "tool.result",
    "approval",
    "error",
    "turn.end",
    "group.membership",  # a join admitted or refused, and why (core/group/onboarding.py)
    "policy.decision",  # allow / deny / ask, the rule and why (core/policy/): never the data it was about
)
POLICY_FIELDS = ("action", "target", "requester", "label", "effect", "rule", "origin", "reason", "risk")


def envelope_record(
    action: str, event: Event, envelope: Envelope | None, *, topic: str = "", summary: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`sent` / `received` / `dropped`: what crossed the wire, at which span."""
    record: dict[str, Any] = {
        "action": action,
        "at": event.ts,
        "correlationid": event.correlation_id,
        "traceparent": TraceContext(event.trace_id, event.span_id).traceparent,
        "parentspanid": event.parent_span_id,
    }
    if summary is not None:
        record["envelope"] = summary  # already made for the timeline event
    elif envelope is not None:
        record["envelope"] = envelope.summary(topic)
    if action == "dropped":
        record["reason"] = event.payload.get("reason", "")
        record["detail"] = str(event.payload.get("detail", ""))[:300]
        record.setdefault("envelope", event.payload.get("envelope", {}))
    return record


def step_record(event: Event) -> dict[str, Any]:
    """One step of local work (LLM call, tool call, policy decision…) done for the group, without its content."""
    record = {
        "action": "step",
        "at": event.ts,
        "correlationid": event.correlation_id,
        "traceparent": TraceContext(event.trace_id, event.span_id).traceparent,
        "parentspanid": event.parent_span_id,
        "step": {
            "kind": event.kind,
            "name": event.name,
            "status": event.status,
            "model": event.model,
            "durationms": None if event.duration_ms is None else round(event.duration_ms),
            "inputtokens": event.input_tokens,
            "outputtokens": event.output_tokens,
        },
    }
    if event.kind == "policy.decision":
        record["policy"] = {k: event.payload[k] for k in POLICY_FIELDS if k in event.payload}
    if event.kind == "group.membership":
        record["membership"] = {
            k: event.payload[k] for k in ("outcome", "detail", "agentid", "name") if k in event.payload
        }
    return record


def span_data(event: Event) -> dict[str, Any]:
    """A `shoal.trace.span` payload for a step (the trace id travels in the traceparent)."""
    return {
        "spanid": event.span_id,
        "parentspanid": event.parent_span_id,
        "name": event.name or event.kind,
        "kind": event.kind,
        "status": event.status,
        "starttime": event.ts,
        "durationms": None if event.duration_ms is None else round(event.duration_ms),
        "attributes": {
            k: v
            for k, v in {
                "gen_ai.request.model": event.model,
                "gen_ai.usage.input_tokens": event.input_tokens,
                "gen_ai.usage.output_tokens": event.output_tokens,
            }.items()
            if v is not None
        },
    }


def at() -> str:
    return now_iso()
