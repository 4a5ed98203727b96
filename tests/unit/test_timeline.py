"""The timeline database: migrations, append-only events, trace trees, group commit, failures."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import StorageError, UserError
from core.providers.base import ChatMessage
from core.timeline.db import Database
from core.timeline.ids import TraceContext, iso_utc, parse_iso, seconds_since
from core.timeline.migrations import MIGRATIONS, applied, migrate
from core.timeline.sessions import SessionStore
from core.timeline.store import Timeline


@pytest.fixture
async def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = Database(tmp_path / "t.db", migrate=migrate)
    await database.start()
    yield database
    await database.stop()


def test_times_from_peers_are_read_leniently() -> None:
    when = datetime(2026, 11, 21, 9, 30, 0, 123456, tzinfo=UTC)
    assert parse_iso(iso_utc(when)) == when and parse_iso("2026-11-21T10:30:00.123456+01:00") == when
    assert parse_iso("2026-11-21T09:30:00") == datetime(2026, 11, 21, 9, 30, tzinfo=UTC), "no zone is UTC"
    assert [parse_iso(bad) for bad in ("", "yesterday", None, 17)] == [None, None, None, None]
    ago = seconds_since(iso_utc(datetime.now(UTC) - timedelta(seconds=30)))
    assert ago is not None and 29 < ago < 60
    future = seconds_since(iso_utc(datetime.now(UTC) + timedelta(hours=1)))
    assert future is not None and future < -3500 and seconds_since("not a time") is None


def test_migrations_from_blank_database(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "blank.db", isolation_level=None)
    assert migrate(conn) == [name for name, _ in MIGRATIONS]
    assert migrate(conn) == []  # idempotent
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sessions", "messages", "events", "notes", "messages_fts", "notes_fts"} <= tables


def test_migrations_from_an_old_database_keep_data_and_index_it(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    migrate(conn, upto=1)  # a database written by the first release
    conn.execute("INSERT INTO sessions (id, title) VALUES ('s1', 'old')")
    conn.execute("INSERT INTO messages (id, session_id, seq, role, content) VALUES ('m1','s1',1,'user','barnacle')")
    assert applied(conn) == [MIGRATIONS[0][0]]
    migrate(conn)
    hits = conn.execute("SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'barnacle'").fetchall()
    assert len(hits) == 1


def test_newer_database_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "new.db", isolation_level=None)
    migrate(conn)
    conn.execute("INSERT INTO _migrations (id, name, applied_at) VALUES (99, 'm099_from_the_future', 'x')")
    with pytest.raises(StorageError, match="newer Shoal"):
        migrate(conn)


async def test_database_uses_wal(db: Database) -> None:
    mode = await db.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
    assert mode == "wal"


async def test_events_are_append_only(db: Database) -> None:
    timeline = Timeline(db)
    event = await timeline.record("user.message", session_id="s", trace=TraceContext.new_root(), correlation_id="c")
    with pytest.raises(StorageError, match="append-only"):
        await db.write(lambda c: c.execute("UPDATE events SET kind = 'x' WHERE id = ?", (event.id,)))
    stored = await timeline.get(event.id)
    assert stored is not None and stored.kind == "user.message"


async def test_a_failing_write_rolls_back_alone_in_a_group_commit(db: Database) -> None:
    timeline = Timeline(db)
    root = TraceContext.new_root()

    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO events (id, ts, kind, trace_id, span_id) VALUES ('half', 't', 'k', 'x', 'y')")
        raise ValueError("boom after a partial write")

    results = await asyncio.gather(
        timeline.record("a", session_id="s", trace=root, correlation_id="c"),
        db.write(bad),
        timeline.record("b", session_id="s", trace=root.child(), correlation_id="c"),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError)
    kinds = [e.kind for e in await timeline.events(session_id="s")]
    assert kinds == ["a", "b"]
    assert await timeline.get("half") is None  # the failing job's partial insert was rolled back


async def test_disk_full_is_a_storage_error_and_writes_nothing(db: Database) -> None:
    await db.write(lambda c: c.execute("PRAGMA max_page_count = 1"))  # simulate a full disk: no page may be added
    page_count = await db.read(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await db.write(lambda c: c.execute(f"PRAGMA max_page_count = {page_count}"))
    timeline = Timeline(db)
    with pytest.raises(StorageError) as info:
        await timeline.record(
            "big", session_id="s", trace=TraceContext.new_root(), correlation_id="c", payload={"x": "y" * 100_000}
        )
    assert "Disk full" in info.value.message and "nothing was half-written" in info.value.fix
    assert await timeline.events(kind="big") == []


async def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    database = Database(blocker / "sub" / "t.db", migrate=migrate)
    with pytest.raises(StorageError):
        await database.start()
    assert not database.running


async def test_start_and_stop_are_idempotent(tmp_path: Path) -> None:
    database = Database(tmp_path / "t.db", migrate=migrate)
    await database.start()
    await database.start()
    await database.stop()
    await database.stop()
    with pytest.raises(StorageError):
        await database.read(lambda c: 1)


async def test_session_search_and_prefix_lookup(db: Database) -> None:
    store = SessionStore(db)
    one = await store.create(title="Boats")
    await store.append(one.id, ChatMessage("user", "Where do seagulls nest?"))
    await store.append(one.id, ChatMessage("assistant", 'On cliffs; punctuation: "quotes" (and) AND OR * are fine'))
    hits = await store.search("seagulls")
    assert [(h.session_id, h.seq) for h in hits] == [(one.id, 1)]
    assert await store.search('"quotes" (and) AND') != []
    assert (await store.get(one.id[:20])).title == "Boats"
    assert (await store.get(one.id)).message_count == 2


async def test_sessions_are_found_by_prefix_or_suffix_and_wildcards_are_literal(db: Database) -> None:
    store = SessionStore(db)
    one = await store.create(title="One")
    await store.create(title="Two")
    assert (await store.get(one.id[-8:])).id == one.id
    for bad in ("%", "____", one.id[:3]):
        with pytest.raises(UserError):
            await store.get(bad)


async def test_siblings_in_the_same_millisecond_keep_causal_order(db: Database) -> None:
    timeline = Timeline(db)
    for _ in range(20):
        root = TraceContext.new_root()
        await timeline.record("user.message", session_id="s", trace=root, correlation_id="c")
        for kind in ("a", "b", "c", "d"):
            await timeline.record(kind, session_id="s", trace=root.child(), correlation_id="c")
        [node] = await timeline.trace_tree(root.trace_id)
        assert [c.event.kind for c in node.children] == ["a", "b", "c", "d"]


async def test_a_failed_start_can_be_retried(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    database = Database(blocker / "t.db", migrate=migrate)
    with pytest.raises(StorageError):
        await database.start()
    blocker.unlink()
    await database.start()
    try:
        assert await database.read(lambda c: c.execute("SELECT 1").fetchone()[0]) == 1
    finally:
        await database.stop()
