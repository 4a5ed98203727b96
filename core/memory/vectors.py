"""The in-memory part of vector search: one bit per dimension, scanned by Hamming distance.

Why not a float matrix: top-10 cosine over 100,000 x 384 float32 vectors costs about 15 ms per query on a
2-core machine (memory bandwidth: 150 MB per scan) and 150 MB of RAM; sqlite-vec measured 75-80 ms and this
Python cannot load SQLite extensions anyway. Keeping only the sign of each dimension (48 bytes a vector for
MiniLM) makes the scan 32x smaller: XOR plus popcount over 4.8 MB finds a few hundred candidates in about a
millisecond, and their exact float32 vectors, read from SQLite (the only copy), decide the final order
(`bench/memory.py` reports recall against exact search). Below `EXACT_BELOW` chunks every vector is a
candidate, so small memories are searched exactly.

The index is rebuilt from SQLite at start (signatures are stored beside the vectors) and kept in step by
the memory service on every write; deleted rows are tombstoned and compacted in bulk.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

EXACT_BELOW = 2048  # with fewer live chunks than this, every chunk is rescored exactly
MIN_CANDIDATES = 128  # candidates rescored exactly, at least; more for large k (recall@10 1.0 at 100k: bench)


def signature(vectors: np.ndarray) -> np.ndarray:
    """Sign bits of each row, packed into uint64 words (rows padded to a multiple of 64 dimensions)."""
    rows, dim = vectors.shape
    padded = -(-dim // 64) * 64
    bits = np.zeros((rows, padded), dtype=bool)
    bits[:, :dim] = vectors > 0
    return np.packbits(bits, axis=1).view(np.uint64).reshape(rows, padded // 64)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _hamming(columns: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Bits differing from `query` per column of a (words, n) signature array."""
    distance = np.bitwise_count(columns[0] ^ query[0]).astype(np.uint16)
    for word in range(1, len(query)):
        distance += np.bitwise_count(columns[word] ^ query[word])
    return distance


@dataclass(frozen=True)
class SourceMeta:
    """What filters look at, per source."""

    kind: str
    zone: str
    created: float  # seconds since the epoch


class VectorIndex:
    """Chunk ids and their sign signatures, with the source each belongs to. Thread-safe."""

    def __init__(self, words: int = 6) -> None:
        self._lock = threading.Lock()
        self.words = words
        self._ids = np.zeros(0, dtype=np.int64)
        self._sigs = np.zeros((words, 0), dtype=np.uint64)  # one row per word: column-wise scans are 3x faster
        self._owner = np.zeros(0, dtype=np.int32)  # index into self._sources
        self._alive = np.zeros(0, dtype=bool)
        self._size = 0
        self._sources: list[str] = []
        self._source_index: dict[str, int] = {}
        self.meta: dict[str, SourceMeta] = {}

    def __len__(self) -> int:
        with self._lock:
            return int(self._alive[: self._size].sum())

    # --- writes ----------------------------------------------------------------------------

    def add(self, source_id: str, meta: SourceMeta, chunk_ids: list[int], signatures: np.ndarray) -> None:
        """Add (or re-add) chunks of one source."""
        if not chunk_ids:
            return
        if signatures.shape != (len(chunk_ids), self.words):
            raise ValueError(f"signatures of shape {signatures.shape}; expected ({len(chunk_ids)}, {self.words})")
        with self._lock:
            owner = self._source_index.get(source_id)
            if owner is None:
                owner = self._source_index[source_id] = len(self._sources)
                self._sources.append(source_id)
            self.meta[source_id] = meta
            self._grow(len(chunk_ids))
            end = self._size + len(chunk_ids)
            self._ids[self._size : end] = chunk_ids
            self._sigs[:, self._size : end] = signatures.T
            self._owner[self._size : end] = owner
            self._alive[self._size : end] = True
            self._size = end

    def remove_source(self, source_id: str) -> None:
        with self._lock:
            owner = self._source_index.get(source_id)
            if owner is None:
                return
            self._alive[: self._size][self._owner[: self._size] == owner] = False
            self.meta.pop(source_id, None)
            dead = self._size - int(self._alive[: self._size].sum())
            if dead > max(1024, self._size // 4):
                self._compact()

    def clear(self) -> None:
        with self._lock:
            self._size = 0
            self._sources, self._source_index, self.meta = [], {}, {}

    def _grow(self, extra: int) -> None:
        need = self._size + extra
        if need <= len(self._ids):
            return
        capacity = max(need, 2 * len(self._ids), 1024)
        self._ids = np.resize(self._ids, capacity)
        self._owner = np.resize(self._owner, capacity)
        alive = np.zeros(capacity, dtype=bool)
        alive[: self._size] = self._alive[: self._size]
        self._alive = alive
        sigs = np.zeros((self.words, capacity), dtype=np.uint64)
        sigs[:, : self._size] = self._sigs[:, : self._size]
        self._sigs = sigs

    def _compact(self) -> None:
        """Drops dead rows, and the sources none of the rows left belongs to (a source re-shared or re-indexed
        comes back under a new id each time: their names would otherwise pile up)."""
        keep = np.flatnonzero(self._alive[: self._size])
        self._ids[: len(keep)] = self._ids[keep]
        self._sigs[:, : len(keep)] = self._sigs[:, keep]
        used, renumbered = np.unique(self._owner[keep], return_inverse=True)
        self._owner[: len(keep)] = renumbered.astype(np.int32)
        self._sources = [self._sources[owner] for owner in used]
        self._source_index = {source: owner for owner, source in enumerate(self._sources)}
        self._alive[: len(keep)] = True
        self._alive[len(keep) :] = False
        self._size = len(keep)

    # --- reads -----------------------------------------------------------------------------

    def allowed_sources(
        self,
        kinds: set[str] | None,
        zones: set[str] | None,
        since: float | None,
        until: float | None,
        sources: set[str] | None,
    ) -> set[str] | None:
        """Source ids that pass the filters (None: no filter, everything passes)."""
        if not any(f is not None for f in (kinds, zones, since, until, sources)):
            return None
        with self._lock:
            items = list(self.meta.items())
        return {
            source
            for source, meta in items
            if (kinds is None or meta.kind in kinds)
            and (zones is None or meta.zone in zones)
            and (since is None or meta.created >= since)
            and (until is None or meta.created < until)
            and (sources is None or source in sources)
        }

    def candidates(self, query_signature: np.ndarray, count: int, allowed: set[str] | None = None) -> np.ndarray:
        """Chunk ids of the `count` nearest signatures (all live ones when there are few), best first."""
        with self._lock:
            size = self._size
            live = self._alive[:size]
            if allowed is not None:
                owners = [self._source_index[s] for s in allowed if s in self._source_index]
                live = live & np.isin(self._owner[:size], np.asarray(owners, dtype=np.int32))
            rows = np.flatnonzero(live)
            if len(rows) <= max(count, EXACT_BELOW):
                return self._ids[rows].copy()
            whole = len(rows) == size
            sigs, ids = (self._sigs[:, :size], self._ids[:size]) if whole else (self._sigs[:, rows], self._ids[rows])
            distance = _hamming(sigs, query_signature)
            best = np.argpartition(distance, count)[:count]
            return ids[best[np.argsort(distance[best], kind="stable")]].copy()
