"""The memory facade: remember, recall, forget, and keeping embeddings current.

It owns the embedding process client and the in-memory vector index; the rows live in the agent's SQLite
database. Writes never wait on a broken model: text is stored (and found by full-text search) even when the
embedder cannot run, and its vector is filled in later by `embed_pending`, which also re-embeds everything
when the configured model changes. `problem` says, for the UI, why semantic search is unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import ShoalError, UserError, classify
from core.memory import store
from core.memory.chunking import chunk_text
from core.memory.embed_process import EmbeddingClient
from core.memory.retrieval import Hit, Mode, RecallFilter, search
from core.memory.store import ChunkRow, SourceRow
from core.memory.vectors import VectorIndex
from core.policy.labels import parse_label
from core.settings import MemorySettings
from core.timeline.db import Database
from core.timeline.ids import new_id, now_iso

log = logging.getLogger(__name__)
EMBED_BATCH = 64
EMBED_REQUEST = 256  # texts per request to the model process
MAX_NOTE_CHARS = 8000


@dataclass(frozen=True)
class Remembered:
    source_id: str
    chunks: int
    embedded: bool
    warning: str = ""


class Memory:
    """Start it after the database; `stop()` is idempotent and bounded."""

    def __init__(
        self, db: Database, settings: MemorySettings, *, client: EmbeddingClient | None = None, rescan: bool = True
    ) -> None:
        """`rescan`: scan indexed folders in the background once started (the app does; one-shot commands
        do not)."""
        self.db = db
        self.settings = settings
        self._rescan = rescan
        self._owns_client = client is None  # a client handed in (tests share one) is stopped by its owner
        self.client = client or EmbeddingClient(
            settings.embedder, settings.model_path, threads=settings.index_threads, idle_unload=settings.idle_unload
        )
        self.index = VectorIndex()
        self.model_id = ""
        self.problem: ShoalError | None = None
        self.chunk_count = 0
        self._loaded: asyncio.Task[None] | None = None
        self._pending_task: asyncio.Task[int] | None = None
        self._listeners: list[Callable[[], object]] = []
        self._started = False
        from core.memory.documents import DocumentIndex

        self.documents = DocumentIndex(self)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Cheap: knows its model's id without loading it; the index loads in the background."""
        if self._started:
            return
        self._started = True
        try:
            from core.memory.embedder import open_embedder

            self.model_id = open_embedder(self.settings.embedder, self.settings.model_path, 1).model_id
        except ShoalError as exc:
            self.problem = exc
            log.warning("semantic memory unavailable: %s", exc.describe())
        self._loaded = asyncio.create_task(self._load_index(), name="shoal-memory-index")

    async def stop(self, timeout: float = 5.0) -> None:
        if not self._started:
            return
        self._started = False
        await self.documents.stop()
        for task in (self._pending_task, self._loaded):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout)
        if self._owns_client:
            await self.client.stop(timeout)

    async def _load_index(self) -> None:
        def load(conn: Any) -> tuple[int, int, list[tuple[SourceRow, list[int], np.ndarray]]]:
            count = store.chunk_count(conn)
            pending = store.count_pending(conn, self.model_id) if self.model_id else 0
            return count, pending, list(store.index_rows(conn, self.model_id)) if self.model_id else []

        count, pending, rows = await self.db.read(load)
        self.chunk_count = count
        for source, ids, sigs in rows:
            self._index_add(source, ids, sigs)
        if pending and self.problem is None:
            self.embed_pending_later()
        if self._rescan and await self.documents.folders():  # files may have changed while the app was closed
            self.documents.scan_later()

    def _index_add(self, source: SourceRow, ids: list[int], sigs: np.ndarray) -> None:
        if len(self.index) == 0 and sigs.shape[1] != self.index.words:
            self.index = VectorIndex(sigs.shape[1])
        self.index.add(source.id, store.meta_of(source), ids, sigs)

    async def ready(self) -> None:
        """Wait for the index to be loaded (recall does this itself)."""
        if self._loaded is not None:
            await asyncio.shield(self._loaded)

    def on_change(self, listener: Callable[[], object]) -> None:
        self._listeners.append(listener)

    def changed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("memory listener failed")

    # --- embeddings ------------------------------------------------------------------------

    async def embed(self, texts: list[str]) -> np.ndarray | None:
        """Vectors, or None when the model cannot run (the reason is kept in `problem`). Sent in batches, so
        a long document never holds the model for minutes while a question waits to be embedded."""
        if not texts or (self.problem is not None and not self.model_id):
            return None
        parts = []
        try:
            for start in range(0, len(texts), EMBED_REQUEST):
                parts.append(await self.client.embed(texts[start : start + EMBED_REQUEST]))
        except Exception as exc:  # spawning can fail too (no memory, too many open files)
            self.problem = exc if isinstance(exc, ShoalError) else classify(exc)
            log.warning("embedding failed: %s", self.problem.describe())
            return None
        if self.client.model_id and self.client.model_id != self.model_id:  # configured id and loaded id agree
            log.warning("embedding model id %s differs from %s", self.client.model_id, self.model_id)
            self.model_id = self.client.model_id
        recovered, self.problem = self.problem is not None, None
        if recovered:  # what was stored while the model failed gets its vectors now
            self.embed_pending_later()
        return np.vstack(parts)

    def embed_pending_later(self) -> None:
        if self._pending_task is None or self._pending_task.done():
            self._pending_task = asyncio.create_task(self.embed_pending(), name="shoal-memory-embed")

    async def embed_pending(self) -> int:
        """Embed chunks that have no vector of the current model, batch by batch. Returns how many."""
        done = 0
        while True:
            batch = await self.db.read(lambda conn: store.pending(conn, self.model_id, EMBED_BATCH))
            if not batch:
                return done
            vectors = await self.embed([text for _, text in batch])
            if vectors is None:
                return done
            write = functools.partial(store.set_vectors, chunks=batch, matrix=vectors, model_id=self.model_id)
            touched = await self.db.write(write)
            await self._reindex(touched)
            done += len(batch)
            self.changed()
            if not touched:  # the batch changed under us (re-indexed meanwhile): read what is pending again
                await asyncio.sleep(0)

    async def _reindex(self, source_ids: list[str]) -> None:
        if not source_ids:
            return
        rows = await self.db.read(lambda conn: list(store.index_rows(conn, self.model_id, source_ids)))
        for source_id in source_ids:
            self.index.remove_source(source_id)
        for source, ids, sigs in rows:
            self._index_add(source, ids, sigs)

    # --- writing ---------------------------------------------------------------------------

    async def put(self, source: SourceRow, chunks: list[ChunkRow]) -> Remembered:
        """Store a source with its chunks (replacing one with the same kind and uri), embedding them first."""
        vectors = await self.embed([c.text for c in chunks])
        if vectors is not None:
            for chunk, vector in zip(chunks, vectors, strict=True):
                chunk.vector = vector
        model_id = self.model_id

        def write(conn: Any) -> tuple[SourceRow | None, list[int], int]:
            old = store.source_by_uri(conn, source.kind, source.uri)
            ids = store.replace_source(conn, source, chunks, model_id)
            return old, ids, store.chunk_count(conn)

        old, ids, self.chunk_count = await self.db.write(write)
        if old is not None:
            self.index.remove_source(old.id)
        if vectors is not None:
            from core.memory.vectors import signature

            self._index_add(source, ids, signature(vectors))
        self.changed()
        warning = "" if vectors is not None else f"saved for full-text search only: {self._problem_text()}"
        return Remembered(source.id, len(ids), vectors is not None, warning)

    def _problem_text(self) -> str:
        return self.problem.describe() if self.problem is not None else "the embedding model is not available"

    async def remember(
        self,
        text: str,
        *,
        tags: list[str] | None = None,
        zone: str = "private",
        session_id: str | None = None,
        label: str | None = None,
    ) -> Remembered:
        """`label`: the note's sensitivity label (core/policy/labels.py); None leaves it to the policy's
        classifier rules and default label, applied whenever the note is read."""
        text = text.strip()
        if not text:
            raise UserError("The note is empty.", "Pass the text to remember.")
        if len(text) > MAX_NOTE_CHARS:
            raise UserError(
                f"The note is {len(text)} characters; the limit is {MAX_NOTE_CHARS}.",
                "Summarise it, or save it as a file in an indexed folder.",
            )
        source_id, now = new_id(), now_iso()
        source = SourceRow(
            id=source_id,
            kind="note",
            uri=source_id,
            title=text[:80],
            zone=zone,
            tags=" ".join(tags or []),
            session_id=session_id,
            created_at=now,
            updated_at=now,
            label=parse_label(label).value if label else None,
        )
        return await self.put(source, self.chunks_of(text, "text"))

    def chunks_of(self, text: str, kind: str) -> list[ChunkRow]:
        pieces = chunk_text(text, kind=kind, max_chars=self.settings.chunk_chars)
        return [ChunkRow(c.ordinal, c.text, c.heading, c.start, c.end) for c in pieces]

    async def forget(self, ref: str) -> SourceRow:
        """Delete a source by id or by the short id shown to the model (its last 8 or more characters)."""
        ref = ref.strip()
        if not ref:
            raise UserError("Which memory? No id was given.", "Pass the id shown by recall.")

        def delete(conn: Any) -> SourceRow | list[str]:
            rows = conn.execute(
                "SELECT id FROM memory_sources WHERE id = ? OR (length(?) >= 8 AND substr(id, -length(?)) = ?)",
                (ref, ref, ref, ref),
            ).fetchall()
            if len(rows) != 1:
                return [str(r[0]) for r in rows]
            found = store.source(conn, str(rows[0][0]))
            assert found is not None
            if found.kind == "document":  # keep the row, so the folder scan does not index the file again
                conn.execute("DELETE FROM memory_chunks WHERE source_id = ?", (found.id,))
                conn.execute(
                    "UPDATE memory_sources SET status = 'forgotten', updated_at = ? WHERE id = ?", (now_iso(), found.id)
                )
            else:
                store.delete_source(conn, found.id)
            self.chunk_count = store.chunk_count(conn)
            return found

        result = await self.db.write(delete)
        if isinstance(result, list):
            if not result:
                raise UserError(f"No memory has the id {ref!r}.", "Use recall to find the id.")
            raise UserError(f"{len(result)} memories end in {ref!r}.", "Pass more characters of the id.")
        self.index.remove_source(result.id)
        self.changed()
        return result

    # --- reading ---------------------------------------------------------------------------

    async def recall(
        self, query: str, *, limit: int = 5, filters: RecallFilter | None = None, mode: Mode = "hybrid"
    ) -> list[Hit]:
        """The best chunks for `query`. Without a working model, full-text search alone answers."""
        if not query.strip():
            raise UserError("The query is empty.", "Pass words to search for.")
        await self.ready()
        vector = None
        if mode != "text" and len(self.index):
            vectors = await self.embed([query])
            vector = vectors[0] if vectors is not None else None
        index, model_id = self.index, self.model_id
        return await self.db.read(
            lambda conn: search(
                conn, index, text=query, query=vector, model_id=model_id, limit=limit, filters=filters, mode=mode
            )
        )

    async def sources(
        self, *, kind: str | None = None, status: str | None = None, limit: int = 200, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Notes, documents and shared items, newest first; `status` "indexed" leaves out skipped and
        forgotten files."""
        return await self.db.read(lambda c: store.sources(c, kind=kind, status=status, limit=limit, offset=offset))

    async def source_chunks(self, source_id: str) -> list[dict[str, Any]]:
        """The stored text of one source, chunk by chunk, in order."""
        return await self.db.read(lambda conn: store.source_chunks(conn, source_id))

    def off_change(self, listener: Callable[[], object]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    async def stats(self) -> dict[str, Any]:
        model_id = self.model_id
        data = await self.db.read(lambda conn: {**store.stats(conn), "pending": store.count_pending(conn, model_id)})
        return {
            **data,
            "model": model_id,
            "indexed_vectors": len(self.index),
            "loaded": self.client.running,
            "problem": self.problem.to_dict() if self.problem else None,
        }
