"""`remember` and `recall`: short notes in the agent's database with full-text search.

A stepping stone to the vector memory: same tool names, so prompts and habits carry over.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from core.errors import ToolError
from core.timeline.db import Database
from core.timeline.ids import new_id, now_iso
from core.timeline.sessions import _fts_query
from core.tools.registry import RiskTier, Tool, ToolContext, ToolOutput, ToolSpec

MAX_NOTE_CHARS = 8000


class RememberTool(Tool):
    spec = ToolSpec(
        name="remember",
        description="Save a short note for later conversations (facts, preferences, to-dos).",
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

    def __init__(self, db: Database) -> None:
        self.db = db

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        text = args["text"].strip()
        if not text:
            raise ToolError("The note is empty.", "Pass the text to remember.")
        if len(text) > MAX_NOTE_CHARS:
            raise ToolError(f"The note is {len(text)} characters; the limit is {MAX_NOTE_CHARS}.", "Summarise it.")
        note_id, tags = new_id(), " ".join(args.get("tags") or [])

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO notes (id, text, tags, session_id, created_at) VALUES (?, ?, ?, ?, ?)",
                (note_id, text, tags, ctx.session_id, now_iso()),
            )

        await self.db.write(write)
        return ToolOutput(f"Remembered (note {note_id[-8:]}).", {"note_id": note_id, "tags": tags})


class RecallTool(Tool):
    spec = ToolSpec(
        name="recall",
        description="Search saved notes by keywords; returns the best matches, newest first among equals.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        risk=RiskTier.READ,
    )

    def __init__(self, db: Database) -> None:
        self.db = db

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        words = _fts_query(args["query"]).split()
        if not words:
            raise ToolError("The query is empty.", "Pass words to search for.")
        match = " OR ".join(words)  # any word matches; rank puts notes matching more words first
        limit = int(args.get("limit", 5))

        def query(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT n.id, n.text, n.tags, n.created_at FROM notes_fts JOIN notes n ON n.rowid = notes_fts.rowid "
                "WHERE notes_fts MATCH ? ORDER BY rank, n.created_at DESC LIMIT ?",
                (match, limit),
            )
            return [dict(r) for r in rows]

        notes = await self.db.read(query)
        if not notes:
            return ToolOutput("No notes match.", {"matches": []})
        lines = [f"- ({n['created_at'][:10]}) {n['text']}" for n in notes]
        return ToolOutput("\n".join(lines), {"matches": [n["id"] for n in notes]})
