"""Pure text and colour helpers for the transcript view, kept apart so the view stays about layout.

Nothing here touches a document: these functions decide *what* a line says (tool calls, model figures,
errors) and which colours fit the current palette, so light and dark themes both stay readable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from PySide6.QtGui import QColor, QPalette

from core.timeline.sessions import TranscriptEntry

SHORT = 80  # characters of a tool argument or result shown inline; the tooltip has more
TOOLTIP = 2000

Part = tuple[str, str]  # ("text", streamed markdown) | ("tool", a compact tool line)


@dataclass(frozen=True)
class Notice:
    """Something to show after the transcript that is not a message: a failed turn, a stop."""

    kind: str  # "error" | "info"
    text: str

    @classmethod
    def from_error(cls, error: dict[str, str]) -> Notice:
        """A `ShoalError.to_dict()`: what happened, then what to do about it."""
        message = error.get("message") or "The turn failed."
        fix = error.get("fix") or ""
        return cls("error", f"{message}\n→ {fix}" if fix else message)


def clip(text: str, limit: int = SHORT) -> str:
    """One line, at most `limit` characters: tool lines must never push the answer off screen."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def format_arguments(arguments: str | dict[str, Any]) -> str:
    """`path=notes.txt, limit=3` from a JSON object (or the raw text when the model wrote bad JSON)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return clip(arguments, 40)
    if not isinstance(arguments, dict):
        return clip(str(arguments), 40)
    pairs = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in arguments.items()]
    return clip(", ".join(pairs), 50)


def tool_line(name: str, arguments: str | dict[str, Any], result: str | None, ok: bool = True) -> tuple[str, str]:
    """The compact "⚙ read_file(path=…) → result…" line and its tooltip with the full text."""
    line = f"⚙ {name}({format_arguments(arguments)})"
    if result is not None:
        line += f" {'→' if ok else '✗'} {clip(result)}"
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    tip = f"{name} {raw}" + (f"\n\n{result}" if result is not None else "")
    return line, tip[:TOOLTIP]


def meta_line(entry: TranscriptEntry) -> str:
    """Model and figures under an answer: "qwen2.5 · 812 → 64 tokens · 1.9 s"."""
    bits = [entry.model or "model"]
    if entry.input_tokens is not None or entry.output_tokens is not None:
        bits.append(f"{entry.input_tokens or 0} → {entry.output_tokens or 0} tokens")
    if entry.duration_ms is not None:
        ms = entry.duration_ms
        bits.append(f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s")
    if entry.status == "cancelled":
        bits.append("stopped")
    elif entry.status == "error":
        bits.append("failed")
    return " · ".join(bits)


def paragraphs(text: str) -> list[str]:
    """Split streamed Markdown at blank lines that are outside code fences (safe places to render apart)."""
    pieces, start, fence_open, search = [], 0, False, 0
    while True:
        cut = text.find("\n\n", search)
        if cut < 0:
            break
        fence_open ^= text.count("```", search, cut) % 2 == 1
        search = cut + 2
        if not fence_open:
            pieces.append(text[start:search])
            start = search
    pieces.append(text[start:])
    return [p for p in pieces if p] or [""]


def mix(a: QColor, b: QColor, t: float) -> QColor:
    """`a` moved a fraction `t` towards `b`: tints that follow the theme instead of fixed colours."""
    return QColor(
        round(a.red() + (b.red() - a.red()) * t),
        round(a.green() + (b.green() - a.green()) * t),
        round(a.blue() + (b.blue() - a.blue()) * t),
    )


@dataclass(frozen=True)
class Colors:
    text: QColor
    muted: QColor
    accent: QColor
    user_bg: QColor
    code_bg: QColor
    error: QColor
    error_bg: QColor

    @classmethod
    def from_palette(cls, palette: QPalette) -> Colors:
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        accent = palette.color(QPalette.ColorRole.Highlight)
        dark = base.lightness() < 128
        error = QColor("#ff8a80") if dark else QColor("#b3261e")
        return cls(
            text=text,
            muted=mix(text, base, 0.45),
            accent=accent,
            user_bg=mix(base, accent, 0.10),
            code_bg=mix(base, text, 0.07),
            error=error,
            error_bg=mix(base, error, 0.12),
        )
