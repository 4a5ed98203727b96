"""Hybrid retrieval: full-text (FTS5) and vector similarity, combined.

Why both: embeddings find the paraphrase ("my plane" for "my flight") but blur rare exact tokens (an error
code, a name, a file name), which full text finds and embeddings miss. Candidates come from both: the nearest
vectors (sign-bit scan, exact rescoring: core/memory/vectors.py) and the best bm25 matches. Each candidate is
scored `cosine similarity + KEYWORD_WEIGHT x keyword coverage`, where coverage is the idf-weighted share of the
query's content words the chunk contains (so "E4412" counts for much more than "error").

Why not reciprocal rank fusion: measured on tests/data/memory_eval.json, RRF scored below vectors alone
(MRR 0.92 against 0.98), because a chunk that full text ranks first on a stray common word beats the true
answer that full text missed altogether (absent from a list counts zero). Absolute similarity plus
coverage keeps both signals calibrated: MRR 1.00 there, against 0.98 (vectors) and 0.48 (full text).
`fuse` (RRF) stays for bench/memory.py's comparison.

Everything here runs on the database thread in one read, so a query sees one consistent snapshot.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from core.memory import keywords, store
from core.memory.vectors import MIN_CANDIDATES, VectorIndex, signature

RRF_K = 60
KEYWORD_WEIGHT = 0.4  # a chunk holding every (idf-weighted) query term gains this much cosine similarity
Mode = Literal["hybrid", "vector", "text"]


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
    label: str | None = None  # the source's own label (None: unlabelled; the policy's classifier decides)

    def citation(self) -> str:
        """How an answer names where this came from."""
        if self.kind == "document":
            return f"{self.title or self.uri}" + (f" — {self.heading}" if self.heading else "")
        if self.kind == "shared":
            return f"memory shared by {self.origin.get('name') or self.origin.get('agent') or 'a peer'}"
        return f"note {self.source_id[-8:]}"


def fuse(*ranked: list[int], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion, kept for bench/memory.py's comparison (see the module docstring)."""
    scores: dict[int, float] = {}
    for ids in ranked:
        for rank, chunk_id in enumerate(ids, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def vector_ranking(
    conn: sqlite3.Connection, index: VectorIndex, query: np.ndarray, model_id: str, pool: int, allowed: set[str] | None
) -> tuple[list[int], dict[int, float]]:
    """Chunk ids by cosine similarity (best first, at most `pool`) and the similarities."""
    count = max(MIN_CANDIDATES, 4 * pool)
    candidates = index.candidates(signature(query.reshape(1, -1))[0], count, allowed)
    if len(candidates) == 0:
        return [], {}
    ids, matrix = store.vectors(conn, [int(c) for c in candidates], model_id)
    if not ids:
        return [], {}
    similarity = matrix @ query.astype(np.float32)
    order = np.argsort(-similarity, kind="stable")[:pool]
    return [ids[i] for i in order], {ids[i]: float(similarity[i]) for i in order}


def _passes(row: dict[str, Any], filters: RecallFilter) -> bool:
    """The filters, checked on the stored row itself."""
    if filters.kinds is not None and row["kind"] not in filters.kinds:
        return False
    if filters.zones is not None and row["zone"] not in filters.zones:
        return False
    if filters.sources is not None and row["source_id"] not in filters.sources:
        return False
    created = store.epoch(row["created_at"])
    if filters.since is not None and created < filters.since:
        return False
    return filters.until is None or created < filters.until


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
    pool = max(30, 3 * limit)
    by_vector: list[int] = []
    similarity: dict[int, float] = {}
    if query is not None and mode != "text":
        by_vector, similarity = vector_ranking(conn, index, query, model_id, pool, allowed)
    by_text: list[int] = []
    scores: dict[int, float] = dict(similarity)
    terms = keywords.content_terms(text)
    if terms and mode != "vector":
        total = store.chunk_count(conn)
        cap = keywords.common_cap(total)
        frequencies = keywords.document_frequencies(conn, terms, cap)
        match = keywords.candidate_query(terms, frequencies, cap, have_vectors=bool(by_vector))
        by_text = [c for c, _ in store.fts(conn, match, pool, filters)] if match else []
        missing = [c for c in by_text if c not in similarity]
        if query is not None and missing:  # text-only finds get a similarity too, so both signals rank them
            ids, matrix = store.vectors(conn, missing, model_id)
            if ids:
                similarity.update(zip(ids, (float(x) for x in matrix @ query.astype(np.float32)), strict=True))
        candidates = list(dict.fromkeys([*by_vector, *by_text]))
        covered = keywords.coverage(store.texts(conn, candidates), terms, frequencies, total)
        scores = {c: similarity.get(c, 0.0) + KEYWORD_WEIGHT * covered.get(c, 0.0) for c in candidates}
    text_order = {chunk_id: n for n, chunk_id in enumerate(by_text)}
    ranked = sorted(scores.items(), key=lambda item: (-item[1], text_order.get(item[0], len(text_order)), item[0]))
    fused = ranked[:limit]
    rows = store.chunks(conn, [chunk_id for chunk_id, _ in fused])
    vector_rank = {chunk_id: n for n, chunk_id in enumerate(by_vector, start=1)}
    text_rank = {chunk_id: n for n, chunk_id in enumerate(by_text, start=1)}
    hits = []
    for chunk_id, score in fused:
        row = rows.get(chunk_id)
        if row is None or not _passes(row, filters):  # the RAM index may be stale (another process wrote)
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
                row.get("label"),
            )
        )
    return hits
