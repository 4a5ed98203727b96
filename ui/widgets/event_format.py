"""How one timeline event reads in a row: label, tokens, duration, time, colour and filter category.

Pure functions over `core.timeline.store.Event`, kept apart from the widgets so the tree, the detail panel and
tests agree on one wording, and so a row can be formatted without touching Qt.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from core.timeline.store import Event
from ui.widgets import policy_format

# Mid-saturation colours that stay readable on both the light and the dark Fusion palette.
KIND_COLORS = {
    "user.message": "#3b82f6",
    "llm.request": "#8b5cf6",
    "llm.response": "#a855f7",
    "tool.call": "#0d9488",
    "tool.result": "#14b8a6",
    "approval": "#d97706",
    "error": "#dc2626",
    "turn.end": "#6b7280",
    "group.sent": "#0284c7",
    "group.received": "#0891b2",
    "group.dropped": "#dc2626",
    "memory.recall": "#db2777",
    "schedule.run": "#65a30d",
    "policy.decision": "#6b7280",  # the row's dot takes the decision's colour instead (`dot_color`)
}
ERROR_COLOR = "#e04848"
STATUS_COLORS = {"error": ERROR_COLOR, "denied": "#d97706", "cancelled": "#8a8a8a", "max_iterations": "#d97706"}

FILTERS = ("All", "LLM calls", "Tool calls", "Approvals", "Policy", "Memory", "Group", "Errors")

_DECISIONS = {
    "approve_once": "approved once",
    "approve_session": "approved for the session",
    "deny": "denied",
    "auto": "auto-approved (policy)",
    "session": "approved earlier in the session",
}


def short(text: str, limit: int = 80) -> str:
    """One line, at most `limit` characters: rows stay one line high however long the payload."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def pretty_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def is_error(event: Event) -> bool:
    return event.kind == "error" or event.status == "error"


def matches(event: Event, category: str) -> bool:
    """Whether `event` belongs to a filter category of `FILTERS`."""
    if category == "LLM calls":
        return event.kind.startswith("llm.")
    if category == "Tool calls":
        return event.kind.startswith("tool.")
    if category == "Approvals":
        return event.kind == "approval"
    if category == "Policy":
        return event.kind == "policy.decision"
    if category == "Memory":
        return event.kind.startswith("memory.") or event.name in ("remember", "recall", "forget")
    if category == "Group":
        return event.kind.startswith("group.")
    if category == "Errors":
        return is_error(event)
    return True


def label(event: Event) -> str:
    """The event column: the kind, then what this step was about (message, model, arguments, output…)."""
    p = event.payload
    kind = event.kind
    if kind == "user.message":  # its label first (the text is what gets cut short in a narrow dock)
        said = f"“{short(p.get('text', ''), 90)}”"
        return f"{p['label']} · {said}" if p.get("label") else said
    if kind == "llm.request":
        return f"llm.request  ({p.get('messages', '?')} msgs, {len(p.get('tools', []))} tools)"
    if kind == "llm.response":
        calls = [c.get("name", "?") for c in p.get("tool_calls", [])]
        said = f"→ {', '.join(calls)}()" if calls else f"“{short(p.get('text', ''), 60)}”"
        return f"llm.response  {said}"
    if kind == "tool.call":
        args = p.get("arguments", p.get("raw", {}))
        return f"tool.call · {event.name} {short(compact_json(args), 70)}"
    if kind == "tool.result":
        return f"tool.result · {event.name} → {short(p.get('output', ''), 60)}"
    if kind == "approval":
        decision = p.get("decision", "")
        return f"approval · {event.name}: {_DECISIONS.get(decision, decision)}"
    if kind == "error":
        return f"error · {event.name}: {short(p.get('message', ''), 70)}"
    if kind == "turn.end":
        return f"turn.end · {event.status}, {p.get('iterations', '?')} model call(s)"
    if kind in ("group.sent", "group.received", "group.dropped"):
        return group_label(event)
    if kind == "memory.recall":
        return recall_label(event)
    if kind == "schedule.run":
        return schedule_label(event)
    if kind == "policy.decision":
        return policy_format.decision_label(event)
    return f"{kind} · {event.name}" if event.name else kind


def schedule_label(event: Event) -> str:
    """`schedule.run · Morning notes: ok (on time)`, or why it did not run (missed ×3, skipped)."""
    p = event.payload
    trigger = {"schedule": "on time", "catch_up": "catch-up", "manual": "run now"}.get(p.get("trigger", ""), "")
    status = str(p.get("status") or event.status)
    count = p.get("count") or 1
    bits = f"{status} ×{count}" if count > 1 else status
    detail = p.get("error") if status == "failed" else (p.get("summary") if status in ("missed", "skipped") else "")
    text = f"schedule.run · {event.name}: {bits}" + (f" ({trigger})" if trigger and status != "missed" else "")
    return f"{text} — {short(str(detail), 50)}" if detail else text


def recalled_items(event: Event) -> list[dict[str, Any]]:
    items = event.payload.get("items")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def recall_label(event: Event) -> str:
    """`Recalled 2 memories: note 1a2b3c4d, plan.md — Budget`: what automatic recall put before the model."""
    items = recalled_items(event)
    noun = "memory" if len(items) == 1 else "memories"
    cited = ", ".join(str(i.get("citation", "?")) for i in items)
    return f"Recalled {len(items)} {noun}: {short(cited, 70)}" if items else "Recalled no memories"


def recall_summary(event: Event) -> str:
    """The detail view's readable part for a recall: each memory as the answer cites it, with its text."""
    lines = []
    for n, item in enumerate(recalled_items(event), start=1):
        similarity = item.get("similarity")
        close = f"  ({float(similarity) * 100:.0f}% match)" if isinstance(similarity, (int, float)) else ""
        lines.append(f"[{n}] {item.get('citation', '?')}{close}")
        lines.append(f"    {short(str(item.get('text', '')), 300)}")
    return "\n".join(lines)


def _short_type(event_type: str) -> str:
    """`shoal.task.request` → `task.request` (every Shoal envelope type starts with `shoal.`)."""
    return event_type.removeprefix("shoal.") or "envelope"


def _who(value: Any) -> str:
    """A peer as the row names it: its name, else the start of its agent id."""
    if isinstance(value, dict):
        return str(value.get("name") or str(value.get("agentid", ""))[:12] or "?")
    return str(value or "?")[:12]


def _group_text(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    return str(
        data.get("input") or data.get("output") or data.get("delta") or data.get("message") or data.get("summary") or ""
    )


def group_label(event: Event) -> str:
    """Remote work in one line: `→ task.request to skill coder`, `← task.result from desk (ok)`,
    `✕ dropped: bad-signature`. Arrows say the direction, so a trace that crossed machines reads in order."""
    p = event.payload
    if event.kind == "group.dropped":
        envelope = p.get("envelope") if isinstance(p.get("envelope"), dict) else {}
        what = f" {_short_type(str(envelope.get('type', '')))}" if envelope.get("type") else ""
        return f"✕ dropped{what}: {p.get('reason', '?')} · {short(p.get('detail', ''), 60)}"
    data = p.get("data") if isinstance(p.get("data"), dict) else {}
    envelope = p.get("envelope") if isinstance(p.get("envelope"), dict) else {}
    kind = _short_type(event.name or str(envelope.get("type", "")))
    text = _group_text(data)
    said = f" “{short(text, 50)}”" if text and kind == "task.request" else ""
    if event.kind == "group.sent":
        if kind == "task.request":
            target = f"skill {data['skill']}" if data.get("skill") else f"agent {_who(envelope.get('recipient'))}"
            return f"→ {kind} to {target}{said}"
        if kind == "task.result":
            return f"→ {kind} ({data.get('status', '?')})"
        if kind == "task.progress":
            return f"→ {kind} {data.get('state', '')}".rstrip()
        if kind == "task.report":  # a child reporting up (docs/hierarchy.md)
            return f"→ {kind} to parent ({data.get('status', '?')})"
        return f"→ {kind}"
    sender = data.get("agent") or data.get("requester") or envelope.get("agentid")
    if kind == "task.request":
        skill = f" for skill {data['skill']}" if data.get("skill") else ""
        return f"← {kind} from {_who(sender)}{skill}{said}"
    if kind == "task.result":
        return f"← {kind} from {_who(sender)} ({data.get('status', '?')})"
    if kind == "task.progress":
        return f"← {kind} from {_who(sender)}: {data.get('state', '')}"
    if kind == "task.report":
        skill = f", skill {data['skill']}" if data.get("skill") else ""
        return f"← {kind} from child {_who(sender)} ({data.get('status', '?')}{skill})"
    return f"← {kind} from {_who(sender)}"


def tooltip(event: Event) -> str:
    """The long version of the label: the full message, arguments or output (capped)."""
    p = event.payload
    text = {
        "user.message": p.get("text"),
        "llm.response": p.get("text") or compact_json(p.get("tool_calls", [])),
        "tool.call": pretty_json(p.get("arguments", p.get("raw", {}))),
        "tool.result": p.get("output"),
        "approval": p.get("summary"),
        "error": f"{p.get('message', '')}\n→ {p.get('fix', '')}",
        "group.sent": _group_text(p.get("data", {})),
        "group.received": _group_text(p.get("data", {})),
        "group.dropped": f"{p.get('reason', '')}: {p.get('detail', '')}",
        "memory.recall": recall_summary(event),
        "policy.decision": policy_format.decision_tooltip(event),
    }.get(event.kind)
    head = f"{event.kind} · {event.name}" if event.name else event.kind
    return f"{head}\n{str(text)[:2000]}" if text else head


def dot_color(event: Event) -> str:
    """The colour of a row's dot: its kind's, except a policy decision's, which is its effect's (allow green,
    ask amber, deny red), so a denial stands out in a column of dots."""
    if event.kind == "policy.decision":
        return policy_format.effect_color(str(event.payload.get("effect", "")))
    return KIND_COLORS.get(event.kind, "#9ca3af")


def text_color(event: Event) -> str | None:
    """A colour for the row's text beyond the error red: a policy decision's effect colour."""
    if event.kind == "policy.decision":
        return policy_format.effect_color(str(event.payload.get("effect", "")))
    return None


def status(event: Event) -> str:
    """A tick for the common case, the word otherwise: what went wrong stands out in a column of ticks."""
    return "✓" if event.status == "ok" else event.status


def tokens(event: Event) -> str:
    """'in→out' for a model call (turn.end shows the turn's totals); '~' marks estimated counts."""
    if event.kind == "turn.end" and "input_tokens" in event.payload:
        return f"Σ {event.payload['input_tokens']}→{event.payload['output_tokens']}"
    if event.input_tokens is None and event.output_tokens is None:
        return ""
    estimated = "~" if event.payload.get("tokens_estimated") else ""
    return f"{estimated}{event.input_tokens or 0}→{event.output_tokens or 0}"


def duration(event: Event) -> str:
    ms = event.duration_ms
    if ms is None:
        return ""
    return f"{ms:.1f}" if ms < 10 else f"{ms:,.0f}"


def local_time(ts: str) -> datetime | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return None


def time_text(event: Event, *, with_date: bool = False) -> str:
    """Local wall-clock time; a trace row from another day also shows the date."""
    when = local_time(event.ts)
    if when is None:
        return event.ts
    if with_date and when.date() != datetime.now().astimezone().date():
        return when.strftime("%b %d %H:%M:%S")
    return when.strftime("%H:%M:%S")
