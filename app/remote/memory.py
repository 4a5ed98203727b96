"""The remote agent's long-term memory, as much of `core.memory.service.Memory` as the Memory pane uses.

Search, the newest stored items, an item's text, forgetting and the counts go to the server (/api/memory…).
Indexing folders is the server's business (the folders are on its disk, not this computer's), so the
document index here is empty and refuses changes with a message saying where to make them. The pane's
`changed` follows the server's timeline: a memory step recorded there (a note remembered or forgotten by
the agent) re-runs the shown query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.remote.http import RemoteClient
from core.errors import UserError

SEARCH_LIMIT = 100  # the most /api/memory/search gives at once
ON_SERVER = UserError(
    "Document folders are indexed by the server, not by this desktop, in remote mode.",
    "Index them on the server: `shoal memory index <folder>` there.",
)


@dataclass(frozen=True)
class RemoteHit:
    """A search result with the fields and `citation()` of core.memory.retrieval.Hit (which needs numpy)."""

    chunk_id: int
    source_id: str
    text: str
    heading: str
    kind: str
    uri: str
    title: str
    zone: str
    created_at: str
    score: float
    similarity: float | None
    origin: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    def citation(self) -> str:
        if self.kind == "document":
            return f"{self.title or self.uri}" + (f" — {self.heading}" if self.heading else "")
        if self.kind == "shared":
            return f"memory shared by {self.origin.get('name') or self.origin.get('agent') or 'a peer'}"
        return f"note {self.source_id[-8:]}"


class RemoteDocuments:
    """An empty document index: folders live on the server."""

    progress: Any = None

    def on_progress(self, _listener: Callable[[Any], object]) -> None:
        return None

    async def folders(self) -> list[dict[str, Any]]:
        return []

    async def status(self) -> dict[str, Any]:
        return {"folders": [], "skipped": [], "documents": 0}

    async def add_folder(self, _path: str) -> dict[str, Any]:
        raise ON_SERVER

    async def remove_folder(self, _path_or_id: str) -> int:
        raise ON_SERVER

    def scan_later(self) -> None:
        raise ON_SERVER


class RemoteMemory:
    def __init__(self, client: RemoteClient) -> None:
        self._client = client
        self._listeners: list[Callable[[], object]] = []
        self.documents = RemoteDocuments()

    def on_change(self, listener: Callable[[], object]) -> None:
        self._listeners.append(listener)

    def changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    async def recall(self, query: str, *, limit: int = 5, filters: Any = None, mode: str = "hybrid") -> list[RemoteHit]:
        """The server's hybrid search; a kind filter (the pane's Notes/Documents/Shared) is applied here."""
        if not query.strip():
            raise UserError("The query is empty.", "Pass words to search for.")
        kinds = getattr(filters, "kinds", None)
        want = SEARCH_LIMIT if kinds else max(1, min(limit, SEARCH_LIMIT))
        rows = await self._client.get("/api/memory/search", q=query[:2000], limit=want)
        names = set(RemoteHit.__dataclass_fields__)
        hits = [RemoteHit(**{k: v for k, v in row.items() if k in names}) for row in rows]
        return [h for h in hits if not kinds or h.kind in kinds][:limit]

    async def sources(
        self, *, kind: str | None = None, status: str | None = None, limit: int = 200, offset: int = 0
    ) -> list[dict[str, Any]]:
        rows = await self._client.get("/api/memory/sources", kind=kind, limit=max(1, min(limit, 1000)))
        return list(rows)

    async def source_chunks(self, source_id: str) -> list[dict[str, Any]]:
        return list(await self._client.get(f"/api/memory/sources/{source_id}"))

    async def forget(self, ref: str) -> dict[str, Any]:
        row: dict[str, Any] = await self._client.request("DELETE", f"/api/memory/sources/{ref}")
        self.changed()
        return row

    async def stats(self) -> dict[str, Any]:
        return dict(await self._client.get("/api/memory/stats"))

    async def remember(self, _text: str, **_fields: Any) -> Any:
        raise UserError(
            "Notes are remembered by the remote agent itself in remote mode.", "Ask it in the chat: “remember …”."
        )
