"""`remember`, `recall` and `forget`: the agent's long-term memory (core/memory/), as tools.

Same names and arguments as the earlier note tools, so prompts and habits carry over; recall is now hybrid
(meaning and keywords) and covers indexed documents and what peers shared, each result with its source.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import ShoalError, ToolError
from core.memory.recall_context import PEER_ZONES
from core.memory.retrieval import RecallFilter
from core.tools.registry import RiskTier, Tool, ToolContext, ToolOutput, ToolSpec

KINDS = ["note", "document", "shared"]
MAX_DAYS = 36500.0


def _tool_error(exc: ShoalError) -> ToolError:
    return ToolError(exc.message, exc.fix)


class RememberTool(Tool):
    spec = ToolSpec(
        name="remember",
        description="Save a note to long-term memory for later conversations (facts, preferences, to-dos).",
        parameters={
            "type": "object",
            "properties": {
                "text": {"type": "string", "description": "the note, self-contained", "minLength": 1},
                "tags": {"type": "array", "items": {"type": "string"}, "description": "optional keywords"},
            },
            "required": ["text"],
            "additionalProperties": False,
        },
        risk=RiskTier.WRITE,
    )

    def __init__(self, memory: Any) -> None:
        self.memory = memory  # core.memory.service.Memory

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        try:
            # a note made in a turn carries the turn's label: what was learnt from confidential data stays so
            saved = await self.memory.remember(
                args["text"], tags=args.get("tags") or [], session_id=ctx.session_id, label=ctx.label or None
            )
        except ShoalError as exc:
            raise _tool_error(exc) from exc
        text = f"Remembered (id {saved.source_id[-8:]})."
        if saved.warning:
            text += f" Note: {saved.warning}"
        return ToolOutput(text, {"memory_id": saved.source_id, "embedded": saved.embedded})


class RecallTool(Tool):
    spec = ToolSpec(
        name="recall",
        description=(
            "Search long-term memory (saved notes, indexed documents, items shared by peers) by meaning and "
            "keywords. Returns the best matches with their source and id."
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
                "kinds": {"type": "array", "items": {"type": "string", "enum": KINDS}, "description": "only these"},
                "days": {"type": "number", "minimum": 0, "description": "only memories from the last N days"},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        risk=RiskTier.READ,
    )

    def __init__(self, memory: Any) -> None:
        self.memory = memory

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        since = None
        if args.get("days") is not None:
            since = (datetime.now(UTC) - timedelta(days=min(float(args["days"]), MAX_DAYS))).timestamp()
        kinds = frozenset(args["kinds"]) if args.get("kinds") else None
        # a task a peer delegated (depth > 0) answers to that peer: private notes and documents stay out
        zones = PEER_ZONES if ctx.depth > 0 else None
        try:
            hits = await self.memory.recall(
                args["query"],
                limit=int(args.get("limit", 5)),
                filters=RecallFilter(kinds=kinds, since=since, zones=zones),
            )
        except ShoalError as exc:
            raise _tool_error(exc) from exc
        hits, withheld, label = await _screen(hits, ctx)
        note = f" ({withheld} more withheld by the policy: their labels may not go to this model)" if withheld else ""
        if not hits:
            return ToolOutput("Nothing in memory matches." + note, {"matches": [], "withheld": withheld})
        lines = [
            f"[{n}] (id {h.source_id[-8:]}, {h.created_at[:10]}, {h.citation()}) {h.text}"
            for n, h in enumerate(hits, start=1)
        ]
        data = {"matches": [_hit_data(h) for h in hits], "withheld": withheld, **({"label": label} if label else {})}
        return ToolOutput("\n".join(lines) + note, data)


async def _screen(hits: list[Any], ctx: ToolContext) -> tuple[list[Any], int, str | None]:
    """Like automatic recall: memories the turn's model (or requesting peer) may not see are left out, and each
    decision that withheld some is recorded (`policy.decision` with `withheld` and the memory ids). Returns what
    stays, how many were withheld, and the label of what stays (the result's label in the conversation; None
    when unlabelled)."""
    gate = ctx.policy
    if gate is None:
        return hits, 0, None
    from core.policy.request import LOCAL

    kept, labels, withheld = gate.screen_hits(hits, ctx.requester or LOCAL)
    if ctx.decided is not None:
        for decision, memory_ids in withheld:
            await ctx.decided(decision, memory_ids=memory_ids, withheld=True)
    label = gate.known(labels) if kept else None
    return kept, len(hits) - len(kept), label.value if label else None


def _hit_data(hit: Any) -> dict[str, Any]:
    return {
        "memory_id": hit.source_id,
        "chunk_id": hit.chunk_id,
        "kind": hit.kind,
        "citation": hit.citation(),
        "similarity": hit.similarity,
        "score": round(hit.score, 5),
    }


class ForgetTool(Tool):
    spec = ToolSpec(
        name="forget",
        description="Delete one memory (a note, a shared item or a whole indexed document) by the id recall showed.",
        parameters={
            "type": "object",
            "properties": {"id": {"type": "string", "minLength": 4, "description": "the memory id from recall"}},
            "required": ["id"],
            "additionalProperties": False,
        },
        risk=RiskTier.WRITE,
    )

    def __init__(self, memory: Any) -> None:
        self.memory = memory

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        try:
            gone = await self.memory.forget(args["id"])
        except ShoalError as exc:
            raise _tool_error(exc) from exc
        return ToolOutput(f"Forgot {gone.kind} {gone.id[-8:]} ({gone.title[:60]}).", {"memory_id": gone.id})
