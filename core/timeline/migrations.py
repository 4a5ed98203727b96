"""Numbered, append-only schema migrations (as simonw/llm does).

Never edit or reorder a migration that has shipped: add a new one at the end. A database written by a
newer Shoal (more migrations applied than this code knows) is refused rather than misread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from core.errors import StorageError

if TYPE_CHECKING:  # sqlite-utils pulls in numpy: import it on the database thread, not at startup
    import sqlite_utils

Migration = Callable[["sqlite_utils.Database"], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_sessions_messages_events(db: sqlite_utils.Database) -> None:
    db["sessions"].create(  # type: ignore[union-attr]
        {"id": str, "title": str, "created_at": str, "updated_at": str, "model": str, "system_prompt": str},
        pk="id",
    )
    db["messages"].create(  # type: ignore[union-attr]
        {
            "id": str,
            "session_id": str,
            "seq": int,
            "role": str,
            "content": str,
            "tool_calls": str,  # JSON list, assistant messages only
            "tool_call_id": str,
            "name": str,
            "event_id": str,  # the timeline event that recorded this message
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("session_id", "sessions", "id")],
        not_null={"session_id", "seq", "role"},
    )
    db["messages"].create_index(["session_id", "seq"], unique=True)  # type: ignore[union-attr]
    db["events"].create(  # type: ignore[union-attr]
        {
            "id": str,
            "ts": str,  # ISO 8601 UTC, microseconds
            "session_id": str,
            "correlation_id": str,  # the turn (or remote request) this event belongs to
            "trace_id": str,  # W3C trace-id, 32 hex
            "span_id": str,  # W3C parent-id of this event's span, 16 hex
            "parent_span_id": str,
            "kind": str,  # user.message, llm.request, llm.response, tool.call, tool.result, approval, error, ...
            "name": str,
            "status": str,  # ok | error | cancelled | denied
            "model": str,
            "input_tokens": int,
            "output_tokens": int,
            "duration_ms": float,
            "payload": str,  # JSON
        },
        pk="id",
        not_null={"ts", "kind", "trace_id", "span_id"},
    )
    for cols in (["trace_id"], ["session_id", "ts"], ["correlation_id"], ["kind"], ["span_id"]):
        db["events"].create_index(cols)  # type: ignore[union-attr]
    # The timeline is an audit record: rows are added, never rewritten.
    db.execute(
        "CREATE TRIGGER events_append_only BEFORE UPDATE ON events "
        "BEGIN SELECT RAISE(ABORT, 'timeline events are append-only'); END"
    )


@migration
def m002_messages_fts(db: sqlite_utils.Database) -> None:
    db["messages"].enable_fts(["content"], create_triggers=True, tokenize="porter")  # type: ignore[union-attr]


@migration
def m003_notes(db: sqlite_utils.Database) -> None:
    db["notes"].create(  # type: ignore[union-attr]
        {"id": str, "text": str, "tags": str, "session_id": str, "event_id": str, "created_at": str},
        pk="id",
        not_null={"text"},
    )
    db["notes"].enable_fts(["text", "tags"], create_triggers=True, tokenize="porter")  # type: ignore[union-attr]


@migration
def m004_session_pins(db: sqlite_utils.Database) -> None:
    db["sessions"].add_column("pinned", int, not_null_default=0)  # type: ignore[union-attr]


@migration
def m005_group(db: sqlite_utils.Database) -> None:
    """Group mode: the durable outbox, the inbox that makes receiving idempotent, and tasks."""
    db.execute(
        "CREATE TABLE group_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, envelope_id TEXT NOT NULL, "
        "topic TEXT NOT NULL, key TEXT, value BLOB NOT NULL, headers TEXT NOT NULL, created_at TEXT NOT NULL, "
        "attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT)"
    )
    db["group_inbox"].create(  # type: ignore[union-attr]
        {
            "envelope_id": str,
            "type": str,
            "sender": str,
            "topic": str,
            "partition": int,
            "offset": int,
            "received_at": str,
            "event_id": str,
        },
        pk="envelope_id",
    )
    db["group_tasks"].create(  # type: ignore[union-attr]
        {
            "task_id": str,
            "direction": str,
            "request_id": str,
            "correlation_id": str,
            "skill": str,
            "requester": str,
            "assignee": str,
            "input": str,
            "status": str,
            "created_at": str,
            "updated_at": str,
            "deadline": str,
            "depth": int,
            "session_id": str,
            "result": str,
        },
        pk=("task_id", "direction"),  # an agent may take a task it dispatched itself
    )
    db["group_tasks"].create_index(["status"])  # type: ignore[union-attr]


@migration
def m006_memory(db: sqlite_utils.Database) -> None:
    """Long-term memory: sources (notes, documents, items shared by peers), their chunks with full-text search
    and embeddings, and the folders the document index watches. Notes saved before become memory notes whose
    embeddings are computed later (vector NULL = pending)."""
    db.execute(
        "CREATE TABLE memory_sources (id TEXT PRIMARY KEY, kind TEXT NOT NULL, uri TEXT NOT NULL, title TEXT NOT NULL "
        "DEFAULT '', zone TEXT NOT NULL DEFAULT 'private', tags TEXT NOT NULL DEFAULT '', folder_id TEXT, "
        "sha256 TEXT, size INTEGER, mtime REAL, status TEXT NOT NULL DEFAULT 'indexed', reason TEXT, "
        "origin_agent TEXT, origin_name TEXT, origin_trace TEXT, origin_envelope TEXT, session_id TEXT, "
        "created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"
    )
    db.execute("CREATE UNIQUE INDEX memory_sources_uri ON memory_sources (kind, uri)")
    db.execute("CREATE INDEX memory_sources_folder ON memory_sources (folder_id)")
    db.execute(
        "CREATE TABLE memory_chunks (id INTEGER PRIMARY KEY, source_id TEXT NOT NULL REFERENCES memory_sources(id) "
        "ON DELETE CASCADE, ordinal INTEGER NOT NULL, text TEXT NOT NULL, heading TEXT NOT NULL DEFAULT '', "
        "start INTEGER NOT NULL DEFAULT 0, end INTEGER NOT NULL DEFAULT 0, model_id TEXT, vector BLOB, "
        "signature BLOB)"
    )
    db.execute("CREATE INDEX memory_chunks_source ON memory_chunks (source_id, ordinal)")
    db.execute("CREATE INDEX memory_chunks_pending ON memory_chunks (model_id)")
    db["memory_chunks"].enable_fts(["text", "heading"], create_triggers=True, tokenize="porter")  # type: ignore[union-attr]
    db.execute(
        "CREATE TABLE memory_folders (id TEXT PRIMARY KEY, path TEXT NOT NULL UNIQUE, added_at TEXT NOT NULL, "
        "scanned_at TEXT, files INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute(
        "INSERT INTO memory_sources (id, kind, uri, title, tags, session_id, created_at, updated_at) "
        "SELECT id, 'note', id, substr(text, 1, 80), coalesce(tags, ''), session_id, created_at, created_at FROM notes"
    )
    db.execute("INSERT INTO memory_chunks (source_id, ordinal, text, end) SELECT id, 0, text, length(text) FROM notes")


@migration
def m007_schedule(db: sqlite_utils.Database) -> None:
    """Scheduled prompts and their runs (core/schedule/). Times are UTC ISO strings (they compare as text).
    A job's thread is not a foreign key: deleting the thread in the chat must not be refused; the next run
    makes a new one. Runs go with their job; their timeline events stay (the timeline is append-only)."""
    db.execute(
        "CREATE TABLE schedule_jobs (id TEXT PRIMARY KEY, name TEXT NOT NULL, prompt TEXT NOT NULL, "
        "kind TEXT NOT NULL CHECK (kind IN ('cron', 'interval', 'once')), expr TEXT NOT NULL, "
        "catch_up TEXT CHECK (catch_up IN ('once', 'skip')), notify INTEGER NOT NULL DEFAULT 1, "
        "enabled INTEGER NOT NULL DEFAULT 1, session_id TEXT NOT NULL, created_at TEXT NOT NULL, "
        "updated_at TEXT NOT NULL, next_run TEXT, last_run TEXT, last_status TEXT)"
    )
    db.execute("CREATE INDEX schedule_jobs_due ON schedule_jobs (enabled, next_run)")
    db.execute(
        "CREATE TABLE schedule_runs (id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES schedule_jobs(id) "
        "ON DELETE CASCADE, session_id TEXT, scheduled_for TEXT, started_at TEXT, finished_at TEXT, "
        "status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'ok', 'failed', 'cancelled', 'skipped', "
        "'missed')), trigger TEXT NOT NULL CHECK (trigger IN ('schedule', 'catch_up', 'manual')), "
        "count INTEGER NOT NULL DEFAULT 1, trace_id TEXT, summary TEXT NOT NULL DEFAULT '', error TEXT, "
        "owner TEXT, created_at TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX schedule_runs_job ON schedule_runs (job_id)")
    db.execute("CREATE INDEX schedule_runs_active ON schedule_runs (status)")


@migration
def m008_policy(db: sqlite_utils.Database) -> None:
    """Labels on messages and memory, token usage for quotas (core/policy/)."""
    # NULL label: unlabelled, so the classifier rules and policy.default_label decide when it is read
    db.execute("ALTER TABLE messages ADD COLUMN label TEXT")
    db.execute("ALTER TABLE memory_sources ADD COLUMN label TEXT")
    # tokens spent per quota, per target it matched (a provider or a peer), per period ("day:2026-11-21")
    db.execute(
        "CREATE TABLE policy_usage (quota TEXT NOT NULL, target TEXT NOT NULL, period TEXT NOT NULL, "
        "tokens INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL, PRIMARY KEY (quota, target, period))"
    )


@migration
def m009_schedule_group_claim(db: sqlite_utils.Database) -> None:
    """A scheduled job's group work key (core/schedule/group_claim.py): NULL runs it here whatever peers do; a key
    runs each scheduled time once across the group (docs/coordination.md)."""
    db.execute("ALTER TABLE schedule_jobs ADD COLUMN group_claim TEXT")


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def applied(conn: sqlite3.Connection) -> list[str]:
    if not _has_table(conn, "_migrations"):
        return []
    return [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY id")]


def migrate(conn: sqlite3.Connection, *, upto: int | None = None) -> list[str]:
    """Apply pending migrations, each in its own transaction. Returns the names applied now."""
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    if not _has_table(conn, "_migrations"):
        conn.execute("CREATE TABLE _migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    done = applied(conn)
    known = [name for name, _ in MIGRATIONS]
    unknown = [name for name in done if name not in known]
    if unknown:
        raise StorageError(
            f"This database was written by a newer Shoal (unknown migrations: {', '.join(unknown)}).",
            "Upgrade Shoal, or point paths.data_dir at another folder.",
        )
    ran = []
    for index, (name, fn) in enumerate(MIGRATIONS[:upto], start=1):
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            fn(db)
            conn.execute(
                "INSERT INTO _migrations (id, name, applied_at) VALUES (?, ?, ?)",
                (index, name, datetime.now(UTC).isoformat()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        ran.append(name)
    return ran
