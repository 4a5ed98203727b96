"""How memories read in the Memory pane, under answers and in the timeline: pure functions, no widgets.

A search hit (`core.memory.retrieval.Hit`) and a listed source (a row of `memory.sources()`) become the same
`MemoryRow`, so the results list and the detail area render both one way. Kept apart from the widgets so the
list, the detail, the chat's "Memories used" line and the tests agree on one wording.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core.timeline.sessions import TranscriptEntry

KINDS = {"All": None, "Notes": "note", "Documents": "document", "Shared": "shared"}  # the kind filter's choices
SNIPPET = 140


@dataclass(frozen=True)
class MemoryRow:
    """One line of the results list: a chunk that matched a search, or (no query) a recently stored source."""

    source_id: str
    kind: str
    title: str
    citation: str
    text: str  # the chunk's full text (a listed source: what is known of it until its text is looked up)
    created_at: str
    uri: str = ""
    heading: str = ""
    zone: str = ""
    origin_name: str = ""
    similarity: float | None = None  # cosine with the query; None for a listed source or a text-only match
    chunk_id: int | None = None
    chunks: int | None = None  # how many chunks the source has (listed sources only)
    tags: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_hit(self) -> bool:
        return self.chunk_id is not None


def citation_of(kind: str, title: str, uri: str, source_id: str, heading: str = "", origin: str = "") -> str:
    """The same words `Hit.citation()` uses, for a listed source that is not a hit."""
    if kind == "document":
        return (title or uri) + (f" — {heading}" if heading else "")
    if kind == "shared":
        return f"memory shared by {origin or 'a peer'}"
    return f"note {source_id[-8:]}"


def row_from_hit(hit: Any) -> MemoryRow:
    origin = hit.origin or {}
    return MemoryRow(
        source_id=hit.source_id,
        kind=hit.kind,
        title=hit.title or hit.citation(),
        citation=hit.citation(),
        text=hit.text,
        created_at=hit.created_at,
        uri=hit.uri,
        heading=hit.heading,
        zone=hit.zone,
        origin_name=str(origin.get("name") or origin.get("agent") or ""),
        similarity=hit.similarity,
        chunk_id=hit.chunk_id,
    )


def row_from_source(source: dict[str, Any]) -> MemoryRow:
    kind = str(source.get("kind") or "")
    source_id = str(source.get("id") or "")
    title, uri = str(source.get("title") or ""), str(source.get("uri") or "")
    origin = str(source.get("origin_name") or source.get("origin_agent") or "")
    return MemoryRow(
        source_id=source_id,
        kind=kind,
        title=title or uri,
        citation=citation_of(kind, title, uri, source_id, origin=origin),
        text=title if kind == "note" else "",
        created_at=str(source.get("created_at") or ""),
        uri=uri,
        zone=str(source.get("zone") or ""),
        origin_name=origin,
        chunks=int(source.get("chunks") or 0),
        tags=str(source.get("tags") or ""),
        extra=dict(source),
    )


def one_line(text: str, limit: int = SNIPPET) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def percent(similarity: float | None) -> str:
    """Cosine similarity as a percentage; "—" when only the words matched (no vector to compare)."""
    return "—" if similarity is None else f"{max(0.0, similarity) * 100:.0f}%"


def local(ts: str) -> datetime | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return None


def date_text(ts: str, *, long: bool = False) -> str:
    when = local(ts)
    if when is None:
        return ts
    return when.strftime("%Y-%m-%d %H:%M" if long else "%Y-%m-%d")


def where_from(row: MemoryRow) -> str:
    """Where a memory lives, in words: a file's path, or the note's id."""
    if row.kind == "document":
        return row.uri
    if row.kind == "shared":
        return f"shared item {row.uri}"
    return f"note {row.source_id}"


def file_name(path: str) -> str:
    return Path(path).name or path


# --- the chat's "Memories used" line -----------------------------------------------------------------


def item_tooltip(number: int, item: dict[str, Any]) -> str:
    """What hovering "[n] …" under an answer shows: the citation, how close it was, and the text recalled."""
    similarity = item.get("similarity")
    close = f" · {percent(float(similarity))} match" if isinstance(similarity, (int, float)) else ""
    return f"[{number}] {item.get('citation', '')}{close}\n\n{str(item.get('text', ''))[:600]}"


def memories_used(items: list[dict[str, Any]]) -> str:
    """ "Memories used: [1] note 1a2b3c4d · [2] plan.md — Budget" (the plain text of the line)."""
    return "Memories used: " + " · ".join(f"[{n}] {i.get('citation', '')}" for n, i in enumerate(items, start=1))


def answer_memories(
    entries: list[TranscriptEntry], turns: list[tuple[str, list[dict[str, Any]]]]
) -> dict[int, list[dict[str, Any]]]:
    """Which recorded answer each turn's recalled memories belong to: transcript index -> items.

    `turns` is (start time, items) per turn of the thread, oldest first (`MemoryBridge.recalled_in`). An answer
    belongs to the last turn that started before it was written; of a turn's answers, the last one with text
    (the final answer, after any tool calls) gets the line. A regenerated answer belongs to the new turn."""
    starts = [ts for ts, _ in turns]
    last_answer: dict[int, int] = {}
    for index, entry in enumerate(entries):
        if entry.message.role != "assistant" or not entry.message.content:
            continue
        turn = bisect_right(starts, entry.created_at) - 1
        if turn >= 0:
            last_answer[turn] = index
    return {index: turns[turn][1] for turn, index in last_answer.items() if turns[turn][1]}
