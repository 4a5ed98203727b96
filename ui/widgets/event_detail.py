"""Everything one timeline event recorded, as plain selectable text: ids, timing, tokens and the payload as JSON.

Plain text (not a form) so a person can select and copy any of it into a bug report, and so what is shown is
exactly what the core stored, with nothing reformatted away.
"""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from core.timeline.store import Event
from ui.widgets import event_format as fmt
from ui.widgets import policy_format

PLACEHOLDER = "Select an event to see everything it recorded. Right-click it to walk back to its origin."


class EventDetail(QPlainTextEdit):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setPlaceholderText(PLACEHOLDER)
        self.setMinimumHeight(80)

    def show_event(self, event: Event | None) -> None:
        self.setPlainText("" if event is None else describe(event))

    def show_chain(self, chain: list[Event]) -> None:
        """The walk back: each step and what caused it, ending at the origin, then the origin in full."""
        if not chain:
            self.setPlainText("This event is no longer in the timeline.")
            return
        lines = [f"Walk back to origin: {len(chain) - 1} step(s) from the selected event", ""]
        for hops, event in enumerate(chain):
            marker = "origin" if hops == len(chain) - 1 else f"{hops:>6}"
            lines.append(f"{marker}  {fmt.time_text(event)}  {_step(event)}")
            if hops < len(chain) - 1:
                lines.append("          ↑ caused by")
        lines += ["", "─" * 40, "", describe(chain[-1])]
        self.setPlainText("\n".join(lines))


def describe(event: Event) -> str:
    """The full event: every column, then the payload pretty-printed."""
    when = fmt.local_time(event.ts)
    rows = [
        ("kind", event.kind),
        ("name", event.name or "—"),
        ("status", event.status),
        ("time", f"{when:%Y-%m-%d %H:%M:%S.%f}" if when else event.ts),
        ("recorded", f"{event.ts} (UTC)"),
        ("event id", event.id),
        ("session", event.session_id),
        ("trace", event.trace_id),
        ("span", event.span_id),
        ("parent span", event.parent_span_id or "— (root: the turn's origin)"),
        ("correlation", event.correlation_id),
        ("model", event.model or "—"),
        ("tokens", _tokens(event)),
        ("duration", "—" if event.duration_ms is None else f"{event.duration_ms:g} ms"),
    ]
    width = max(len(key) for key, _ in rows)
    head = "\n".join(f"{key:<{width}}  {value}" for key, value in rows)
    if event.kind == "memory.recall":  # the citations as the answer numbers them, before the raw payload
        head += f"\n\nmemories given to the model (cited as [n]):\n{fmt.recall_summary(event)}"
    if event.kind == "policy.decision":  # first: what was decided, by which rule (file and line) and why
        head = f"policy decision:\n{policy_format.decision_summary(event.payload)}\n\n{head}"
    routine = policy_format.routine_decision(event)
    if routine is not None:  # a built-in default restating local use, kept inside the step it gated
        head += f"\n\npolicy (routine, recorded with this step):\n{policy_format.decision_summary(routine)}"
    return f"{head}\n\npayload:\n{fmt.pretty_json(event.payload)}"


def _tokens(event: Event) -> str:
    if event.input_tokens is None and event.output_tokens is None:
        return "—"
    estimated = " (estimated)" if event.payload.get("tokens_estimated") else ""
    return f"{event.input_tokens or 0} in → {event.output_tokens or 0} out{estimated}"


def _step(event: Event) -> str:
    """A chain step in a few words (the full record is one click away in the tree)."""
    if event.kind == "user.message":
        return fmt.short(fmt.label(event), 40)
    return f"{event.kind} · {event.name}" if event.name else event.kind
