"""`core.sessions` and `core.timeline` of a remote agent: the same methods and dataclasses, over HTTP.

The timeline's listeners are fed by the server's live feed (/api/timeline/stream, see app/remote/core.py),
so the timeline pane inserts each step as it is committed on the server, whoever caused it. Loading the
recent turns fetches their trees in the same request (/api/timeline/traces) and keeps them for the
`trace_tree` calls that follow (the bridge asks for each in turn): one request instead of fifty, which
would also trip the server's rate limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from app.remote import decode
from app.remote.http import RemoteClient, ServerError
from core.errors import UserError
from core.providers.base import ChatMessage
from core.timeline.sessions import SearchHit, SessionInfo, TranscriptEntry
from core.timeline.store import Event, EventNode

log = logging.getLogger(__name__)
TIMELINE_LIMIT = 5000  # the most /api/timeline gives at once
PREFETCH_KEPT = 400


def _missing(exc: ServerError) -> bool:
    return exc.status == 404


class RemoteSessions:
    def __init__(self, client: Callable[[], RemoteClient]) -> None:
        self._client = client

    async def recent(self, limit: int = 100) -> list[SessionInfo]:
        rows = await self._client().get("/api/sessions", limit=max(1, min(limit, 1000)))
        return [decode.session_info(r) for r in rows]

    async def get(self, session_id: str) -> SessionInfo:
        return decode.session_info((await self._detail(session_id))["session"])

    async def transcript(self, session_id: str) -> list[TranscriptEntry]:
        return [decode.transcript_entry(m) for m in (await self._detail(session_id))["messages"]]

    async def messages(self, session_id: str) -> list[ChatMessage]:
        return [entry.message for entry in await self.transcript(session_id)]

    async def rename(self, session_id: str, title: str) -> None:
        await self._patch(session_id, {"title": title[:200]})

    async def set_pinned(self, session_id: str, pinned: bool) -> None:
        await self._patch(session_id, {"pinned": pinned})

    async def delete(self, session_id: str) -> None:
        await self._client().request("DELETE", f"/api/sessions/{session_id}")

    async def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        if not text.strip():
            return []
        rows = await self._client().get("/api/search", q=text[:500], limit=max(1, min(limit, 500)))
        return [decode.search_hit(r) for r in rows]

    async def _detail(self, session_id: str) -> dict[str, Any]:
        _check_id(session_id)
        detail: dict[str, Any] = await self._client().get(f"/api/sessions/{session_id}")
        return detail

    async def _patch(self, session_id: str, body: dict[str, Any]) -> None:
        _check_id(session_id)
        await self._client().request("PATCH", f"/api/sessions/{session_id}", json_body=body)


def _check_id(session_id: str) -> None:
    """Refuse here what the server's path rule would refuse with a bare 422 (a thread id is never like this)."""
    if not (4 <= len(session_id) <= 64) or not session_id.replace("-", "").replace("_", "").isalnum():
        raise UserError(f"{session_id!r} is not a session id.", "Pick the thread from the list.")


class RemoteTimeline:
    def __init__(self, client: Callable[[], RemoteClient]) -> None:
        self._client = client
        self._listeners: list[Callable[[Event], None]] = []
        self._prefetched: dict[str, list[EventNode]] = {}

    # --- live ----------------------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` for each event the server commits (from its live feed)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def deliver(self, data: dict[str, Any]) -> None:
        """One `timeline` event of the live feed."""
        event = decode.timeline_event(data)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("timeline listener failed")

    # --- queries -------------------------------------------------------------------------------------

    async def events(
        self,
        *,
        session_id: str | None = None,
        trace_id: str | None = None,
        kind: str | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        rows = await self._client().get(
            "/api/timeline",
            session_id=session_id,
            trace_id=trace_id,
            kind=kind,
            limit=max(1, min(limit, TIMELINE_LIMIT)),
        )
        return [decode.timeline_event(r) for r in rows]

    async def traces(self, session_id: str | None = None, limit: int = 50) -> list[Event]:
        rows = await self._client().get("/api/timeline/traces", session_id=session_id, limit=max(1, min(limit, 200)))
        roots = []
        for row in rows:
            root = decode.timeline_event(row["root"])
            self._prefetched[root.trace_id] = decode.trace_nodes(row["tree"])
            roots.append(root)
        while len(self._prefetched) > PREFETCH_KEPT:
            del self._prefetched[next(iter(self._prefetched))]
        return roots

    async def trace_tree(self, trace_id: str) -> list[EventNode]:
        kept = self._prefetched.pop(trace_id, None)
        if kept is not None:
            return kept
        try:
            return decode.trace_nodes(await self._client().get(f"/api/traces/{trace_id}"))
        except ServerError as exc:
            if _missing(exc):
                return []
            raise

    async def get(self, event_id: str) -> Event | None:
        try:
            return decode.timeline_event(await self._client().get(f"/api/events/{event_id}"))
        except ServerError as exc:
            if _missing(exc):
                return None
            raise

    async def walk_to_origin(self, event_id: str) -> list[Event]:
        try:
            rows = await self._client().get(f"/api/events/{event_id}/origin")
        except ServerError as exc:
            if _missing(exc):
                return []
            raise
        return [decode.timeline_event(r) for r in rows]
