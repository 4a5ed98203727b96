"""How group mode reads: state words and colours, check statuses, roster cells. Pure functions, Qt-free.

Shared by the roster pane, the status bar, the connect dialog's check list and tests, so "online" is the same
green and a failed check the same red everywhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

# state -> (symbol, word, colour); colours stay readable on the light and the dark Fusion palette
STATES = {
    "off": ("○", "Group mode off", "#8a8a8a"),
    "stopped": ("○", "Stopped", "#8a8a8a"),
    "connecting": ("◌", "Connecting…", "#d97706"),
    "online": ("●", "Online", "#2e9d3a"),
    "offline": ("●", "Offline", "#d83b3b"),
}
# check status -> (symbol, colour)
CHECKS = {"ok": ("✓", "#2e9d3a"), "warn": ("!", "#d97706"), "fail": ("✗", "#d83b3b"), "skip": ("–", "#8a8a8a")}


def state_style(state: str) -> tuple[str, str, str]:
    return STATES.get(state, ("○", state.capitalize(), "#8a8a8a"))


def check_style(status: str) -> tuple[str, str]:
    return CHECKS.get(status, ("?", "#8a8a8a"))


def skills_text(card: dict[str, Any]) -> str:
    return ", ".join(s.get("name", "") for s in card.get("skills", [])) or "—"


def short_id(agent_id: str) -> str:
    return agent_id[:12]


def last_seen(iso: str, now: datetime | None = None) -> str:
    """'now', '12 s ago', '3 min ago' (an announcement time from another clock may be a little ahead)."""
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso or "—"
    seconds = ((now or datetime.now(when.tzinfo)) - when).total_seconds()
    if seconds < 2:
        return "now"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    return when.astimezone().strftime("%b %d %H:%M")


def local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


ORCHESTRATOR_BADGE = "★ orchestrator"


def tree_name(card: dict[str, Any]) -> str:
    """A roster row's name: indented under its parent (docs/hierarchy.md), with the orchestrator badge."""
    depth = int(card.get("depth") or 0)
    indent = "    " * (depth - 1) + "└ " if depth > 0 else ""
    badge = f"  {ORCHESTRATOR_BADGE}" if card.get("orchestrator") else ""
    return f"{indent}{card.get('name', '')}{badge}"


def hierarchy_text(card: dict[str, Any]) -> str:
    """One line for a row's tooltip: its parent (by default: the only orchestrator), its children, or why it
    is not a valid child ("" for a member outside any hierarchy)."""
    if card.get("hierarchyproblem"):
        return f"not a valid child: {card['hierarchyproblem']}"
    parts = []
    if card.get("parentname"):
        how = " (by default)" if card.get("parentbydefault") else ""
        gone = " (not in the roster)" if not card.get("effectiveparent") else ""
        parts.append(f"parent: {card['parentname']}{how}{gone}")
    if card.get("children"):
        parts.append(f"children: {', '.join(card['children'])}")
    return " · ".join(parts)
