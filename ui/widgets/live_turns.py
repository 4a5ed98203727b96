"""What has streamed so far in every thread with a running turn (not only the shown one).

Kept per thread so switching threads mid-answer and back shows the answer still growing. The parts list
of a thread is handed to the transcript view by reference: appending here and calling the view's
`live_changed()` is all a delta costs.
"""

from __future__ import annotations

from core import events as ev
from ui.widgets.transcript_format import Part, tool_line


def add_part(parts: list[Part], kind: str, text: str) -> None:
    """Append streamed output; consecutive text merges so the live answer renders as one Markdown block."""
    if kind == "text" and parts and parts[-1][0] == "text":
        parts[-1] = ("text", parts[-1][1] + text)
    else:
        parts.append((kind, text))


class LiveTurns:
    def __init__(self) -> None:
        self._parts: dict[str, list[Part]] = {}
        self._calls: dict[str, dict[str, tuple[int, ev.ToolCallStarted]]] = {}  # call id -> its line, its start

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._parts

    def begin(self, session_id: str) -> list[Part]:
        """A turn starts in `session_id`: a fresh, empty live answer."""
        self._parts[session_id], self._calls[session_id] = [], {}
        return self._parts[session_id]

    def get(self, session_id: str) -> list[Part] | None:
        return self._parts.get(session_id)

    def end(self, session_id: str) -> None:
        self._parts.pop(session_id, None)
        self._calls.pop(session_id, None)

    def add_text(self, session_id: str, text: str) -> bool:
        """Streamed answer text; False when no turn of ours runs there."""
        parts = self._parts.get(session_id)
        if parts is None:
            return False
        add_part(parts, "text", text)
        return True

    def add_event(self, session_id: str, event: object) -> bool:
        """Tool calls become compact lines: "⚙ name(args) …" while running, then "→ result"."""
        parts, calls = self._parts.get(session_id), self._calls.get(session_id)
        if parts is None or calls is None:
            return False
        if isinstance(event, ev.ToolCallStarted):
            calls[event.call_id] = (len(parts), event)
            parts.append(("tool", tool_line(event.name, event.arguments, None)[0] + " …"))
            return True
        if isinstance(event, ev.ToolCallFinished) and event.call_id in calls:
            index, started = calls[event.call_id]
            parts[index] = ("tool", tool_line(started.name, started.arguments, event.output, event.ok)[0])
            return True
        return False
