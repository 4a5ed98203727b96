"""Chat sessions and their message history, kept beside the timeline in the same database."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from core.errors import UserError
from core.providers.base import ChatMessage
from core.timeline.db import Database
from core.timeline.ids import new_id, now_iso
from core.timeline.store import Event

DEFAULT_TITLE = "New chat"
TITLE_CHARS = 60


@dataclass(frozen=True)
class SessionInfo:
    id: str
    title: str
    created_at: str
    updated_at: str
    model: str
    system_prompt: str
    pinned: bool = False
    message_count: int = 0
    input_tokens: int = 0  # summed over the session's model calls
    output_tokens: int = 0


@dataclass(frozen=True)
class TranscriptEntry:
    """A message with the figures of the model call that wrote it (assistant messages only)."""

    message: ChatMessage
    created_at: str
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    duration_ms: float | None = None
    status: str = "ok"
    label: str | None = None  # the message's sensitivity label (core/policy/); None: unlabelled


@dataclass(frozen=True)
class SearchHit:
    session_id: str
    session_title: str
    seq: int
    role: str
    snippet: str


def insert_message(
    conn: sqlite3.Connection, session_id: str, message: ChatMessage, event: Event | None, label: str | None = None
) -> int:
    """Append `message` to the session inside the caller's transaction; returns its sequence number.
    `label`: its sensitivity label (core/policy/), None for unlabelled."""
    seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE session_id = ?", (session_id,)).fetchone()
    now = now_iso()
    calls = json.dumps([vars(c) for c in message.tool_calls]) if message.tool_calls else None
    conn.execute(
        "INSERT INTO messages (id, session_id, seq, role, content, tool_calls, tool_call_id, name, event_id, "
        "created_at, label) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id(),
            session_id,
            seq[0],
            message.role,
            message.content,
            calls,
            message.tool_call_id,
            message.name,
            event.id if event else None,
            now,
            label,
        ),
    )
    conn.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))
    if message.role == "user":  # an untitled session takes its first question as title
        title = " ".join(message.content.split())[:TITLE_CHARS]
        conn.execute("UPDATE sessions SET title = ? WHERE id = ? AND title = ?", (title, session_id, DEFAULT_TITLE))
    return int(seq[0])


def _info(row: dict[str, Any]) -> SessionInfo:
    return SessionInfo(**{**row, "pinned": bool(row.get("pinned"))})


def _like(text: str) -> str:
    """Escape LIKE wildcards so an id fragment matches literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _fts_query(text: str) -> str:
    """Quote each word so user punctuation can't break FTS5 syntax."""
    words = [w.replace('"', '""') for w in text.split()]
    return " ".join(f'"{w}"' for w in words if w)


_SESSION_SELECT = (
    "SELECT s.*, (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) AS message_count, "
    "(SELECT COALESCE(SUM(input_tokens), 0) FROM events e WHERE e.session_id = s.id) AS input_tokens, "
    "(SELECT COALESCE(SUM(output_tokens), 0) FROM events e WHERE e.session_id = s.id) AS output_tokens "
)


class SessionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, *, title: str = "", model: str = "", system_prompt: str = "") -> SessionInfo:
        now = now_iso()
        info = SessionInfo(new_id(), title or DEFAULT_TITLE, now, now, model, system_prompt)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sessions (id, title, created_at, updated_at, model, system_prompt) VALUES (?,?,?,?,?,?)",
                (info.id, info.title, now, now, model, system_prompt),
            )

        await self.db.write(write)
        return info

    async def get(self, session_id: str) -> SessionInfo:
        found = await self._query(
            _SESSION_SELECT + "FROM sessions s WHERE s.id = ? OR (length(?) >= 4 AND (s.id LIKE ? ESCAPE '\\' "
            "OR s.id LIKE ? ESCAPE '\\')) ORDER BY s.id LIMIT 2",
            (session_id, session_id, f"{_like(session_id)}%", f"%{_like(session_id)}"),
        )
        if len(found) != 1:
            problem = "matches several sessions" if found else "does not exist"
            raise UserError(
                f"Session {session_id!r} {problem}.",
                "Give the full id, or its first or last 8+ characters; `shoal sessions` lists them.",
            )
        return _info(found[0])

    async def recent(self, limit: int = 100) -> list[SessionInfo]:
        rows = await self._query(
            _SESSION_SELECT + "FROM sessions s ORDER BY pinned DESC, updated_at DESC LIMIT ?",
            (limit,),
        )
        return [_info(r) for r in rows]

    async def rename(self, session_id: str, title: str) -> None:
        await self.db.write(lambda c: c.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, session_id)))

    async def set_pinned(self, session_id: str, pinned: bool) -> None:
        await self.db.write(
            lambda c: c.execute("UPDATE sessions SET pinned = ? WHERE id = ?", (int(pinned), session_id))
        )

    async def delete(self, session_id: str) -> None:
        """Remove a session, its messages and its timeline events, in one transaction."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM messages WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM events WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

        await self.db.write(write)

    async def rewind_to_last_question(self, session_id: str) -> str:
        """Drop everything after the last user message (to answer it again); returns that message's text."""

        def write(conn: sqlite3.Connection) -> str:
            row = conn.execute(
                "SELECT seq, content FROM messages WHERE session_id = ? AND role = 'user' ORDER BY seq DESC LIMIT 1",
                (session_id,),
            ).fetchone()
            if row is None:
                raise UserError("There is no question to answer again in this session.", "Ask something first.")
            conn.execute("DELETE FROM messages WHERE session_id = ? AND seq > ?", (session_id, row["seq"]))
            return str(row["content"])

        return await self.db.write(write)

    async def messages(self, session_id: str) -> list[ChatMessage]:
        rows = await self._query(
            "SELECT role, content, tool_calls, tool_call_id, name FROM messages WHERE session_id = ? ORDER BY seq",
            (session_id,),
        )
        return [ChatMessage.from_dict(r) for r in rows]

    async def labelled_messages(self, session_id: str) -> list[tuple[ChatMessage, str | None]]:
        """The history with each message's label (None: unlabelled), for the policy's decisions."""
        rows = await self._query(
            "SELECT role, content, tool_calls, tool_call_id, name, label FROM messages WHERE session_id = ? "
            "ORDER BY seq",
            (session_id,),
        )
        return [(ChatMessage.from_dict(r), r["label"]) for r in rows]

    async def transcript(self, session_id: str) -> list[TranscriptEntry]:
        rows = await self._query(
            "SELECT m.role, m.content, m.tool_calls, m.tool_call_id, m.name, m.created_at, e.model, e.input_tokens, "
            "e.output_tokens, e.duration_ms, e.status, m.label FROM messages m LEFT JOIN events e ON e.id = m.event_id "
            "AND e.kind = 'llm.response' WHERE m.session_id = ? ORDER BY m.seq",
            (session_id,),
        )
        return [
            TranscriptEntry(
                ChatMessage.from_dict(r),
                r["created_at"] or "",
                r["model"],
                r["input_tokens"],
                r["output_tokens"],
                r["duration_ms"],
                r["status"] or "ok",
                r["label"],
            )
            for r in rows
        ]

    async def append(self, session_id: str, message: ChatMessage, label: str | None = None) -> int:
        return await self.db.write(lambda conn: insert_message(conn, session_id, message, None, label))

    async def question_label(self, session_id: str, label: str | None = None) -> str | None:
        """The label of the session's last user message; with `label`, it is stored first (the caller has made
        sure it only raises the label)."""

        def write(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT seq, label FROM messages WHERE session_id = ? AND role = 'user' ORDER BY seq DESC LIMIT 1",
                (session_id,),
            ).fetchone()
            if row is None:
                return None
            if label is not None and label != row["label"]:
                conn.execute("UPDATE messages SET label = ? WHERE session_id = ? AND seq = ?",
                             (label, session_id, row["seq"]))  # fmt: skip
                return label
            return row["label"] if isinstance(row["label"], str) else None

        return await self.db.write(write)

    async def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Full-text search over every message of every session."""
        query = _fts_query(text)
        if not query:
            return []
        rows = await self._query(
            "SELECT m.session_id, s.title AS session_title, m.seq, m.role, "
            "snippet(messages_fts, 0, '[', ']', '…', 12) AS snippet "
            "FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
            "JOIN sessions s ON s.id = m.session_id WHERE messages_fts MATCH ? ORDER BY rank LIMIT ?",
            (query, limit),
        )
        return [SearchHit(**r) for r in rows]

    async def _query(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        return await self.db.read(lambda conn: [dict(r) for r in conn.execute(sql, params)])
