"""Automatic recall: the memories worth putting in front of the model for one question.

Only memories the embedding model finds close to the question (cosine >= `recall_min_similarity`) qualify:
fused ranks alone would always return something, and unrelated notes in the context make answers worse.
They are packed best first into a token budget, numbered so the model can cite them as [1], [2]; the turn
records which ones it used (a `memory.recall` timeline event) so the person can see and check them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from core.errors import ShoalError
from core.memory.retrieval import Hit, RecallFilter
from core.providers.base import CHARS_PER_TOKEN

log = logging.getLogger(__name__)
PEER_ZONES = frozenset({"public", "shared"})  # what a task from a peer may draw on; private notes stay private
MAX_ITEMS = 8


@dataclass(frozen=True)
class Recalled:
    block: str  # appended to the system prompt
    hits: list[Hit]

    def items(self) -> list[dict[str, Any]]:
        return [
            {
                "memory_id": h.source_id,
                "chunk_id": h.chunk_id,
                "kind": h.kind,
                "citation": h.citation(),
                "similarity": round(h.similarity or 0.0, 4),
                "text": h.text[:200],
            }
            for h in self.hits
        ]


def pack(hits: list[Hit], budget_tokens: int, min_similarity: float) -> Recalled | None:
    chosen, used = [], 0
    for hit in hits:
        if hit.similarity is None or hit.similarity < min_similarity:
            continue
        cost = int(len(hit.text) / CHARS_PER_TOKEN) + 12
        if used + cost > budget_tokens:
            continue
        chosen.append(hit)
        used += cost
    if not chosen:
        return None
    return Recalled(render(chosen), chosen)


def render(hits: list[Hit]) -> str:
    """The block appended to the system prompt: the memories numbered [1], [2]… for citing."""
    lines = [f"[{n}] ({h.citation()}, {h.created_at[:10]}) {h.text}" for n, h in enumerate(hits, start=1)]
    return (
        "Relevant memories (from your long-term memory; use them only if they help, and cite them as [n] when "
        "you do):\n" + "\n".join(lines)
    )


async def recall_for(memory: Any, question: str, *, remote: bool = False) -> Recalled | None:
    """The memories for `question` within the configured budget, or None. Never raises: a failing memory
    must not stop the conversation (the problem is logged and shown by the memory view)."""
    settings = memory.settings
    if not settings.auto_recall or settings.recall_tokens <= 0:
        return None
    await memory.ready()
    if memory.chunk_count == 0:
        return None
    filters = RecallFilter(zones=PEER_ZONES) if remote else None
    try:
        hits = await memory.recall(question, limit=MAX_ITEMS, filters=filters, mode="hybrid")
    except ShoalError as exc:
        log.warning("automatic recall failed: %s", exc.describe())
        return None
    return pack(hits, settings.recall_tokens, settings.recall_min_similarity)
