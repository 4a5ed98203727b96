"""Memory's tables (migration m006): plain functions over a connection, run on the database thread.

A source (a note, a document, an item a peer shared) owns its chunks; replacing a source deletes its old
chunks in the same transaction (ON DELETE CASCADE, FTS kept in step by triggers), so a re-indexed file never
shows old and new text side by side. A chunk's `vector` and `signature` are NULL until embedded, and
`model_id` says which model made them: chunks of another model are re-embedded, never mixed.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.memory.vectors import SourceMeta


@dataclass
class SourceRow:
    id: str
    kind: str  # note | document | shared
    uri: str  # note id, file path, or the shared item's id
    title: str = ""
    zone: str = "private"
    tags: str = ""
    folder_id: str | None = None
    sha256: str | None = None
    size: int | None = None
    mtime: float | None = None
    status: str = "indexed"  # indexed | skipped
    reason: str | None = None
    origin_agent: str | None = None
    origin_name: str | None = None
    origin_trace: str | None = None
    origin_envelope: str | None = None
    session_id: str | None = None
    created_at: str = ""
    updated_at: str = ""
    label: str | None = None  # public | internal | confidential | secret; None: unlabelled (core/policy/)


@dataclass
class ChunkRow:
    ordinal: int
    text: str
    heading: str = ""
    start: int = 0
    end: int = 0
    vector: np.ndarray | None = field(default=None, repr=False)  # unit-length float32, or None (pending)


def epoch(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def iso(seconds: float) -> str:
    """The timeline's timestamp format (UTC, ISO 8601), so times compare as strings."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def meta_of(source: SourceRow) -> SourceMeta:
    return SourceMeta(source.kind, source.zone, epoch(source.created_at))


def replace_source(conn: sqlite3.Connection, source: SourceRow, chunks: list[ChunkRow], model_id: str) -> list[int]:
    """Insert `source` with its chunks, replacing any source of the same kind and uri. Returns chunk ids."""
    from core.memory.vectors import signature

    conn.execute("DELETE FROM memory_sources WHERE kind = ? AND uri = ?", (source.kind, source.uri))
    columns = list(vars(source))
    conn.execute(
        f"INSERT INTO memory_sources ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [getattr(source, c) for c in columns],
    )
    ids = []
    for chunk in chunks:
        vector = sig = None
        if chunk.vector is not None:
            vector = np.asarray(chunk.vector, dtype=np.float32).tobytes()
            sig = signature(chunk.vector.reshape(1, -1)).tobytes()
        cursor = conn.execute(
            "INSERT INTO memory_chunks (source_id, ordinal, text, heading, start, end, model_id, vector, signature) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                source.id,
                chunk.ordinal,
                chunk.text,
                chunk.heading,
                chunk.start,
                chunk.end,
                model_id if vector is not None else None,
                vector,
                sig,
            ),
        )
        ids.append(int(cursor.lastrowid or 0))
    return ids


def delete_source(conn: sqlite3.Connection, source_id: str) -> bool:
    return conn.execute("DELETE FROM memory_sources WHERE id = ?", (source_id,)).rowcount > 0


def source(conn: sqlite3.Connection, source_id: str) -> SourceRow | None:
    row = conn.execute("SELECT * FROM memory_sources WHERE id = ?", (source_id,)).fetchone()
    return SourceRow(**dict(row)) if row is not None else None


def source_by_uri(conn: sqlite3.Connection, kind: str, uri: str) -> SourceRow | None:
    row = conn.execute("SELECT * FROM memory_sources WHERE kind = ? AND uri = ?", (kind, uri)).fetchone()
    return SourceRow(**dict(row)) if row is not None else None


def sources(
    conn: sqlite3.Connection,
    *,
    kind: str | None = None,
    folder_id: str | None = None,
    status: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Newest first, with each source's chunk count."""
    where, args = [], []
    if kind:
        where.append("s.kind = ?")
        args.append(kind)
    if folder_id:
        where.append("s.folder_id = ?")
        args.append(folder_id)
    if status:
        where.append("s.status = ?")
        args.append(status)
    sql = (
        "SELECT s.*, (SELECT count(*) FROM memory_chunks c WHERE c.source_id = s.id) AS chunks FROM memory_sources s"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY s.updated_at DESC LIMIT ? OFFSET ?"
    )
    return [dict(r) for r in conn.execute(sql, [*args, limit, offset])]


def fts(conn: sqlite3.Connection, match: str, limit: int, filters: Any = None) -> list[tuple[int, float]]:
    """(chunk id, bm25 rank) best first; `filters` is a retrieval.RecallFilter (kinds, zones, time, sources)."""
    sql = (
        "SELECT c.id, bm25(memory_chunks_fts) AS score FROM memory_chunks_fts "
        "JOIN memory_chunks c ON c.id = memory_chunks_fts.rowid"
    )
    where, args = ["memory_chunks_fts MATCH ?"], [match]
    if filters is not None and filters.active():
        sql += " JOIN memory_sources s ON s.id = c.source_id"
        for column, values in (("s.kind", filters.kinds), ("s.zone", filters.zones), ("s.id", filters.sources)):
            if values is not None:
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                args += sorted(values)
        if filters.since is not None:
            where.append("s.created_at >= ?")
            args.append(iso(filters.since))
        if filters.until is not None:
            where.append("s.created_at < ?")
            args.append(iso(filters.until))
    sql += " WHERE " + " AND ".join(where) + " ORDER BY score LIMIT ?"
    return [(int(r[0]), float(r[1])) for r in conn.execute(sql, [*args, limit])]


def vectors(conn: sqlite3.Connection, chunk_ids: list[int], model_id: str) -> tuple[list[int], np.ndarray]:
    """The stored vectors of these chunks (those embedded by `model_id`), as an (n, dim) matrix."""
    found, rows = [], []
    for start in range(0, len(chunk_ids), 500):
        part = chunk_ids[start : start + 500]
        sql = (
            f"SELECT id, vector FROM memory_chunks WHERE id IN ({', '.join('?' * len(part))}) "
            "AND model_id = ? AND vector IS NOT NULL"
        )
        for row in conn.execute(sql, [*part, model_id]):
            found.append(int(row[0]))
            rows.append(np.frombuffer(row[1], dtype=np.float32))
    return found, (np.vstack(rows) if rows else np.zeros((0, 0), dtype=np.float32))


def chunks(conn: sqlite3.Connection, chunk_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Chunk text with its source's title, kind, uri, zone and provenance, by chunk id."""
    out: dict[int, dict[str, Any]] = {}
    for start in range(0, len(chunk_ids), 500):
        part = chunk_ids[start : start + 500]
        sql = (
            "SELECT c.id, c.source_id, c.ordinal, c.text, c.heading, c.start, c.end, s.kind, s.uri, s.title, s.zone, "
            "s.tags, s.created_at, s.origin_agent, s.origin_name, s.origin_trace, s.label FROM memory_chunks c "
            f"JOIN memory_sources s ON s.id = c.source_id WHERE c.id IN ({', '.join('?' * len(part))})"
        )
        out.update({int(r["id"]): dict(r) for r in conn.execute(sql, part)})
    return out


def source_chunks(conn: sqlite3.Connection, source_id: str) -> list[dict[str, Any]]:
    """A source's chunks in order: id, ordinal, text, heading, start, end."""
    sql = "SELECT id, ordinal, text, heading, start, end FROM memory_chunks WHERE source_id = ? ORDER BY ordinal"
    return [dict(r) for r in conn.execute(sql, (source_id,))]


def texts(conn: sqlite3.Connection, chunk_ids: list[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for start in range(0, len(chunk_ids), 500):
        part = chunk_ids[start : start + 500]
        sql = f"SELECT id, text FROM memory_chunks WHERE id IN ({', '.join('?' * len(part))})"
        out.update((int(r[0]), str(r[1])) for r in conn.execute(sql, part))
    return out


def pending(conn: sqlite3.Connection, model_id: str, limit: int) -> list[tuple[int, str]]:
    """Chunks without a vector of `model_id` (never embedded, or by another model): (id, text)."""
    rows = conn.execute(
        "SELECT id, text FROM memory_chunks WHERE model_id IS NULL OR model_id != ? ORDER BY id LIMIT ?",
        (model_id, limit),
    )
    return [(int(r[0]), str(r[1])) for r in rows]


def count_pending(conn: sqlite3.Connection, model_id: str) -> int:
    row = conn.execute("SELECT count(*) FROM memory_chunks WHERE model_id IS NULL OR model_id != ?", (model_id,))
    return int(row.fetchone()[0])


def set_vectors(
    conn: sqlite3.Connection, chunks: list[tuple[int, str]], matrix: np.ndarray, model_id: str
) -> list[str]:
    """Store vectors for (chunk id, text) pairs; returns the source ids touched. A chunk whose text changed
    since it was read (deleted, and its id reused by a new chunk) is left alone: it is still pending."""
    from core.memory.vectors import signature

    sigs = signature(matrix)
    touched = set()
    for (chunk_id, text), vector, sig in zip(chunks, matrix, sigs, strict=True):
        row = conn.execute(
            "UPDATE memory_chunks SET vector = ?, signature = ?, model_id = ? WHERE id = ? AND text = ? "
            "AND (model_id IS NULL OR model_id != ?) RETURNING source_id",
            (np.asarray(vector, dtype=np.float32).tobytes(), sig.tobytes(), model_id, chunk_id, text, model_id),
        ).fetchone()
        if row is not None:
            touched.add(str(row[0]))
    return sorted(touched)


def index_rows(
    conn: sqlite3.Connection, model_id: str, source_ids: list[str] | None = None
) -> Iterator[tuple[SourceRow, list[int], np.ndarray]]:
    """Per source: its row, the ids of its chunks embedded by `model_id`, and their signatures."""
    sql = "SELECT * FROM memory_sources"
    args: list[Any] = []
    if source_ids is not None:
        sql += f" WHERE id IN ({', '.join('?' * len(source_ids))})"
        args = list(source_ids)
    by_source = {str(r["id"]): SourceRow(**dict(r)) for r in conn.execute(sql, args)}
    chunk_sql = "SELECT source_id, id, signature FROM memory_chunks WHERE model_id = ? AND signature IS NOT NULL"
    if source_ids is not None:
        chunk_sql += f" AND source_id IN ({', '.join('?' * len(source_ids))})"
    chunk_sql += " ORDER BY source_id, id"
    rows = conn.execute(chunk_sql, [model_id, *args])
    for source_id, group in itertools.groupby(rows, key=lambda row: str(row[0])):
        found = by_source.get(source_id)
        members = list(group)
        if found is not None and members:
            sigs = np.frombuffer(b"".join(r[2] for r in members), dtype=np.uint64).reshape(len(members), -1)
            yield found, [int(r[1]) for r in members], sigs


def chunk_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM memory_chunks").fetchone()[0])


def stats(conn: sqlite3.Connection) -> dict[str, Any]:
    sql = "SELECT kind, count(*) FROM memory_sources WHERE status = 'indexed' GROUP BY kind"
    kinds = {str(r[0]): int(r[1]) for r in conn.execute(sql)}
    chunk_count = int(conn.execute("SELECT count(*) FROM memory_chunks").fetchone()[0])
    skipped = int(conn.execute("SELECT count(*) FROM memory_sources WHERE status = 'skipped'").fetchone()[0])
    return {"sources": kinds, "chunks": chunk_count, "skipped": skipped}
