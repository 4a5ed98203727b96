"""Hybrid retrieval: full-text (FTS5, bm25) and vector similarity, fused by reciprocal rank.

Why both: embeddings find the paraphrase ("my flight" for "the plane ticket") but blur rare exact tokens
(an error code, a name, a file name), which full text finds and embeddings miss. Reciprocal rank fusion
(score = sum of 1 / (K + rank) over the lists a chunk appears in) needs no calibration between bm25 scores
and cosine similarities, and a chunk ranked well by both wins. tests/data/memory_eval.json measures that
hybrid beats either method alone (tests/integration/test_memory_quality.py).

Everything here runs on the database thread in one read, so a query sees one consistent snapshot.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from core.memory import store
from core.memory.vectors import MIN_CANDIDATES, VectorIndex, signature

RRF_K = 60
Mode = Literal["hybrid", "vector", "text"]
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class RecallFilter:
    kinds: frozenset[str] | None = None  # note, document, shared
    zones: frozenset[str] | None = None
    since: float | None = None  # epoch seconds, inclusive
    until: float | None = None  # epoch seconds, exclusive
    sources: frozenset[str] | None = None  # source ids

    def active(self) -> bool:
        return any(v is not None for v in (self.kinds, self.zones, self.since, self.until, self.sources))


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    source_id: str
    text: str
    heading: str
    kind: str
    uri: str
    title: str
    zone: str
    created_at: str
    score: float  # fused score (higher is better)
    similarity: float | None  # cosine with the query, when the chunk has a vector of the current model
    vector_rank: int | None  # 1-based rank in each list, None when absent from it
    text_rank: int | None
    origin: dict[str, Any]

    def citation(self) -> str:
        """How an answer names where this came from."""
        if self.kind == "document":
            return f"{self.title or self.uri}" + (f" — {self.heading}" if self.heading else "")
        if self.kind == "shared":
            return f"memory shared by {self.origin.get('name') or self.origin.get('agent') or 'a peer'}"
        return f"note {self.source_id[-8:]}"


def fts_match(text: str) -> str:
    """Any word of the query (quoted, so FTS5 syntax in it is inert); rank rewards matching more of them."""
    words = [w for w in _WORD.findall(text.lower()) if len(w) > 1 or w.isdigit()]
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


def fuse(*ranked: list[int], k: int = RRF_K) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ids in ranked:
        for rank, chunk_id in enumerate(ids, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def vector_ranking(
    conn: sqlite3.Connection, index: VectorIndex, query: np.ndarray, model_id: str, pool: int, allowed: set[str] | None
) -> tuple[list[int], dict[int, float]]:
    """Chunk ids by cosine similarity (best first, at most `pool`) and the similarities."""
    count = max(MIN_CANDIDATES, 20 * pool)
    candidates = index.candidates(signature(query.reshape(1, -1))[0], count, allowed)
    if len(candidates) == 0:
        return [], {}
    ids, matrix = store.vectors(conn, [int(c) for c in candidates], model_id)
    if not ids:
        return [], {}
    similarity = matrix @ query.astype(np.float32)
    order = np.argsort(-similarity, kind="stable")[:pool]
    return [ids[i] for i in order], {ids[i]: float(similarity[i]) for i in order}


def search(
    conn: sqlite3.Connection,
    index: VectorIndex,
    *,
    text: str,
    query: np.ndarray | None,
    model_id: str,
    limit: int = 10,
    filters: RecallFilter | None = None,
    mode: Mode = "hybrid",
) -> list[Hit]:
    """The `limit` best chunks for a query. Without a query vector (no model), full text alone answers."""
    filters = filters or RecallFilter()
    allowed = None
    if filters.active():
        allowed = index.allowed_sources(
            set(filters.kinds) if filters.kinds is not None else None,
            set(filters.zones) if filters.zones is not None else None,
            filters.since,
            filters.until,
            set(filters.sources) if filters.sources is not None else None,
        )
    pool = max(50, 5 * limit)
    by_vector: list[int] = []
    similarity: dict[int, float] = {}
    if query is not None and mode != "text":
        by_vector, similarity = vector_ranking(conn, index, query, model_id, pool, allowed)
    by_text: list[int] = []
    match = fts_match(text)
    if match and mode != "vector":
        by_text = [chunk_id for chunk_id, _ in store.fts(conn, match, pool, filters)]
    fused = fuse(by_vector, by_text)[:limit]
    rows = store.chunks(conn, [chunk_id for chunk_id, _ in fused])
    vector_rank = {chunk_id: n for n, chunk_id in enumerate(by_vector, start=1)}
    text_rank = {chunk_id: n for n, chunk_id in enumerate(by_text, start=1)}
    hits = []
    for chunk_id, score in fused:
        row = rows.get(chunk_id)
        if row is None:
            continue
        origin = {"agent": row["origin_agent"], "name": row["origin_name"], "trace": row["origin_trace"]}
        hits.append(
            Hit(
                chunk_id,
                row["source_id"],
                row["text"],
                row["heading"],
                row["kind"],
                row["uri"],
                row["title"],
                row["zone"],
                row["created_at"],
                score,
                similarity.get(chunk_id),
                vector_rank.get(chunk_id),
                text_rank.get(chunk_id),
                origin,
            )
        )
    return hits
