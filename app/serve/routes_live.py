"""What a remote desktop needs beyond the request/answer routes: live feeds, and the session edits it offers.

The desktop in remote mode (app/remote/) shows the timeline as it is written and the approvals as they are
asked, whoever started the turn (another client, a scheduled job), so it follows two Server-Sent Events
feeds: `/api/timeline/stream` (every committed timeline event) and `/api/approvals/stream` (questions asked
and answered). Both open with a `ready` event once the listener is attached, so a client knows nothing
after that point can be missed, and send a comment every 15 s so a dead connection shows. They never end on
their own (a stopping server ends them: `close_feeds`); a client that cannot keep up is told (`reset`) and
dropped rather than buffered without bound.
Both answer only a client that asks for `text/event-stream` (EventSource does): a plain request, which would
otherwise hang forever, gets 406 saying so.

The rest mirrors what the desktop does to sessions locally: rename and pin (PATCH), full-text search, one
event by id, and the recent turns of a scope as trees in one request (one per turn would trip the rate limit).
The Memory and Schedule panes' extra routes are in routes_panes.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from app.serve import schemas as s
from app.serve.errors import NotFound, documented
from app.serve.routes_agent import SessionId, State, event_out, find_session, node_out, session_out
from app.serve.state import ServeState
from app.serve.streams import approval_dict, sse, with_keepalive
from core.approvals import PendingApproval
from core.errors import UserError
from core.timeline.store import Event

router = APIRouter(prefix="/api", responses=documented(400, 401, 429))
QUEUE_LIMIT = 10_000  # events held for one slow client before it is dropped (it reloads on reconnect)
_RESET, _CLOSE = object(), object()
_open: dict[int, set[asyncio.Queue[Any]]] = {}  # id(ServeState) -> the queues of its open feeds
_NOT_SSE: dict[int | str, dict[str, Any]] = {
    406: {"model": s.ErrorBody, "description": "The request did not accept text/event-stream (send that Accept)"}
}


class SessionPatch(BaseModel):
    """What the desktop changes on a thread: its title, whether it is pinned. Absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, min_length=1, max_length=200)
    pinned: bool | None = None


class SearchHitOut(BaseModel):
    session_id: str
    session_title: str
    seq: int
    role: str
    snippet: str = Field(description="the matching words in [brackets], with … where text was cut")


class TraceOut(BaseModel):
    """A recent turn: its first event, and the whole turn as a tree of steps."""

    root: s.EventOut
    tree: list[s.TraceNodeOut]


# --- live feeds ------------------------------------------------------------------------------------------


def _stream_responses(names: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": f"Server-Sent Events, without end: {names}",
            "content": {"text/event-stream": {"schema": s.sse_schema(names)}},
        },
        **_NOT_SSE,
    }


def _wants_sse(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def _not_sse() -> JSONResponse:
    error = UserError("This route is a Server-Sent Events stream.", "Send 'Accept: text/event-stream' (curl -N -H …).")
    return JSONResponse(error.to_dict(), status_code=406)


def _feed(
    state: ServeState,
    subscribe: Callable[[Callable[[tuple[str, dict[str, Any]]], None]], Callable[[], None]],
    first: Callable[[], list[tuple[str, dict[str, Any]]]] | None = None,
) -> StreamingResponse:
    """An endless SSE response of what `subscribe` reports. `subscribe(put)` attaches a listener calling
    `put((event_name, data))` and returns the function that detaches it; `first()`, read once the listener
    is attached (so nothing falls between the two), is what to send before anything new."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(item: tuple[str, dict[str, Any]]) -> None:
        if queue.qsize() >= QUEUE_LIMIT:
            queue.put_nowait(_RESET)
        else:
            queue.put_nowait(item)

    async def events() -> AsyncIterator[bytes]:
        detach = subscribe(put)
        feeds = _open.setdefault(id(state), set())
        feeds.add(queue)
        state.metrics.streams.inc()
        try:
            yield sse({"status": "ready"}, "ready")
            for name, data in first() if first else []:
                yield sse(data, name)
            while (item := await queue.get()) not in (_RESET, _CLOSE):
                name, data = item
                yield sse(data, name)
            if item is _RESET:
                yield sse({"reason": "the client fell too far behind; reconnect and reload"}, "reset")
        finally:
            detach()
            feeds.discard(queue)
            if not feeds:
                _open.pop(id(state), None)
            state.metrics.streams.dec()

    return StreamingResponse(
        with_keepalive(events()),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def close_feeds(state: ServeState) -> int:
    """End every open feed of this server now (it is stopping): their clients reconnect once it is back,
    instead of the server waiting its whole grace period for streams that never end. Returns how many."""
    feeds = list(_open.get(id(state), ()))
    for queue in feeds:
        queue.put_nowait(_CLOSE)
    return len(feeds)


@router.get(
    "/timeline/stream",
    summary="Every timeline event as it is committed (Server-Sent Events)",
    response_model=None,
    responses=_stream_responses("ready once, then one `timeline` event per step (data: an EventOut)"),
)
async def timeline_stream(
    state: State,
    request: Request,
    session_id: Annotated[str | None, Query(max_length=64, description="only this session's events")] = None,
) -> StreamingResponse | JSONResponse:
    if not _wants_sse(request):
        return _not_sse()
    timeline = state.core.timeline

    def subscribe(put: Callable[[tuple[str, dict[str, Any]]], None]) -> Callable[[], None]:
        def on_event(event: Event) -> None:
            if session_id is None or event.session_id == session_id:
                put(("timeline", event_out(event).model_dump()))

        timeline.add_listener(on_event)
        return lambda: timeline.remove_listener(on_event)

    return _feed(state, subscribe)


@router.get(
    "/approvals/stream",
    summary="Approval questions as they are asked and answered (Server-Sent Events)",
    response_model=None,
    responses=_stream_responses(
        "ready, then `approval_requested` (an ApprovalOut: those waiting now, then each new one) and "
        '`approval_resolved` ({"id": …}: answered here or elsewhere, or withdrawn because its turn stopped)'
    ),
)
async def approvals_stream(state: State, request: Request) -> StreamingResponse | JSONResponse:
    if not _wants_sse(request):
        return _not_sse()
    broker = state.broker

    def subscribe(put: Callable[[tuple[str, dict[str, Any]]], None]) -> Callable[[], None]:
        def on_change(change: str, item: PendingApproval) -> None:
            if change == "added":
                put(("approval_requested", approval_dict(item)))
            else:
                put(("approval_resolved", {"id": item.id}))

        broker.add_listener(on_change)
        return lambda: broker.remove_listener(on_change)

    def waiting() -> list[tuple[str, dict[str, Any]]]:
        return [("approval_requested", approval_dict(item)) for item in broker.pending.values()]

    return _feed(state, subscribe, waiting)


# --- sessions, search, events ----------------------------------------------------------------------------


@router.patch("/sessions/{session_id}", summary="Rename or pin a session", responses=documented(404, 422))
async def patch_session(state: State, session_id: SessionId, body: SessionPatch) -> s.SessionOut:
    info = await find_session(state, session_id)
    if body.title is not None:
        title = body.title.strip()
        if not title:
            raise UserError("The title is blank.", "Give the thread a name with at least one visible character.")
        await state.core.sessions.rename(info.id, title)
    if body.pinned is not None:
        await state.core.sessions.set_pinned(info.id, body.pinned)
    return session_out(await state.core.sessions.get(info.id))


@router.get("/search", summary="Full-text search over every message of every session")
async def search(
    state: State,
    q: Annotated[str, Query(min_length=1, max_length=500)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[SearchHitOut]:
    hits = await state.core.sessions.search(q, limit)
    return [SearchHitOut(**{f: getattr(h, f) for f in SearchHitOut.model_fields}) for h in hits]


@router.get("/events/{event_id}", summary="One timeline event", responses=documented(404))
async def get_event(state: State, event_id: Annotated[str, Path(min_length=1, max_length=64)]) -> s.EventOut:
    event = await state.core.timeline.get(event_id)
    if event is None:
        raise NotFound(f"No event {event_id!r} in this timeline.", "Event ids come from GET /api/timeline.")
    return event_out(event)


@router.get("/timeline/traces", summary="Recent turns, newest first, each with its tree of steps")
async def traces_with_trees(
    state: State,
    session_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[TraceOut]:
    timeline = state.core.timeline
    roots = await timeline.traces(session_id, limit)
    return [
        TraceOut(root=event_out(root), tree=[node_out(n) for n in await timeline.trace_tree(root.trace_id)])
        for root in roots
    ]
