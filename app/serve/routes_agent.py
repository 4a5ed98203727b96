"""Sessions, chat (JSON or Server-Sent Events), the timeline and traces."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.serve import schemas as s
from app.serve.errors import NotFound, documented
from app.serve.state import ServeState
from app.serve.streams import collect_while_connected, sse, turn_stream, with_keepalive
from core.errors import UserError
from core.timeline.sessions import SessionInfo
from core.timeline.store import Event, EventNode

router = APIRouter(prefix="/api", responses=documented(400, 401, 404, 429))
SessionId = Annotated[str, Path(min_length=4, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")]


def state_of(request: Request) -> ServeState:
    state: ServeState = request.app.state.serve
    return state


State = Annotated[ServeState, Depends(state_of)]


def session_out(info: SessionInfo) -> s.SessionOut:
    return s.SessionOut(**{f: getattr(info, f) for f in s.SessionOut.model_fields})


def event_out(event: Event) -> s.EventOut:
    return s.EventOut(**dataclasses.asdict(event))


def node_out(node: EventNode) -> s.TraceNodeOut:
    return s.TraceNodeOut(event=event_out(node.event), children=[node_out(c) for c in node.children])


async def find_session(state: ServeState, session_id: str) -> SessionInfo:
    try:
        return await state.core.sessions.get(session_id)
    except UserError as exc:
        raise NotFound(exc.message, exc.fix) from exc


@router.get("/sessions", summary="Recent sessions, pinned first")
async def list_sessions(state: State, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[s.SessionOut]:
    return [session_out(i) for i in await state.core.sessions.recent(limit)]


@router.post("/sessions", status_code=201, summary="Start a session", responses=documented(422))
async def create_session(state: State, body: s.NewSession) -> s.SessionOut:
    return session_out(await state.core.new_session(body.title))


@router.get("/sessions/{session_id}", summary="A session and its messages")
async def get_session(state: State, session_id: SessionId) -> s.SessionDetail:
    info = await find_session(state, session_id)
    entries = await state.core.sessions.transcript(info.id)
    messages = [
        s.MessageOut(
            role=e.message.role,
            content=e.message.content,
            name=e.message.name,
            tool_call_id=e.message.tool_call_id,
            tool_calls=[c.to_openai() for c in e.message.tool_calls],
            created_at=e.created_at,
            model=e.model,
            input_tokens=e.input_tokens,
            output_tokens=e.output_tokens,
            duration_ms=e.duration_ms,
            status=e.status,
            label=e.label,
        )
        for e in entries
    ]
    return s.SessionDetail(session=session_out(info), messages=messages)


@router.delete("/sessions/{session_id}", status_code=204, summary="Delete a session and its messages")
async def delete_session(state: State, session_id: SessionId) -> Response:
    info = await find_session(state, session_id)
    await state.core.sessions.delete(info.id)
    return Response(status_code=204)


_TURN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The finished turn (JSON), or with `stream` one Server-Sent Event per agent event: "
        "turn_started, assistant_delta, llm_call_started, llm_call_finished, memory_recalled, tool_call_started, "
        "approval_requested, approval_resolved, tool_call_finished, then turn_finished or turn_failed.",
        "content": {"text/event-stream": {"schema": s.sse_schema("the agent event's type, e.g. assistant_delta")}},
    },
    **documented(409, 422, 503),
}


@router.post(
    "/sessions/{session_id}/messages",
    summary="Send a message; the answer streams",
    response_model=s.TurnResult,
    responses=_TURN_RESPONSES,
)
async def send_message(state: State, session_id: SessionId, body: s.SendMessage, request: Request) -> Any:
    info = await find_session(state, session_id)
    turn = state.start_turn(info.id, body.text, regenerate=body.regenerate, label=body.label)
    events = turn_stream(turn, state.broker, info.id)
    if body.stream:
        return StreamingResponse(
            with_keepalive(_sse_events(state, events)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Shoal-Session": info.id},
        )
    collected = await collect_while_connected(events, request.receive)
    if collected is None:  # the client left; the turn was cancelled and that is recorded
        return Response(status_code=204)
    return _turn_result(info.id, collected)


async def _sse_events(state: ServeState, events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    state.metrics.streams.inc()
    try:
        async for item in events:
            yield sse(item, item["type"])
    finally:
        state.metrics.streams.dec()


def _turn_result(session_id: str, collected: list[dict[str, Any]]) -> s.TurnResult:
    final: dict[str, Any] = next((e for e in reversed(collected) if e["type"] in ("turn_finished", "turn_failed")), {})
    failed = final.get("type") == "turn_failed"
    return s.TurnResult(
        session_id=session_id,
        status="failed" if failed else str(final.get("status", "cancelled")),
        text=str(final.get("text", "")),
        trace_id=str(final.get("trace_id", "")),
        input_tokens=int(final.get("input_tokens", 0)),
        output_tokens=int(final.get("output_tokens", 0)),
        error=final.get("error") if failed else None,
        events=collected,
    )


@router.get("/timeline", summary="Recorded steps, oldest first, filtered")
async def timeline(
    state: State,
    session_id: Annotated[str | None, Query(max_length=64)] = None,
    trace_id: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[s.EventOut]:
    found = await state.core.timeline.events(session_id=session_id, trace_id=trace_id, kind=kind, limit=limit)
    return [event_out(e) for e in found]


@router.get("/traces", summary="Turns and tasks, newest first (their root events)")
async def traces(
    state: State,
    session_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[s.EventOut]:
    return [event_out(e) for e in await state.core.timeline.traces(session_id, limit)]


@router.get("/traces/{trace_id}", summary="One trace as a tree of steps")
async def trace_tree(state: State, trace_id: Annotated[str, Path(min_length=1, max_length=64)]) -> list[s.TraceNodeOut]:
    nodes = await state.core.timeline.trace_tree(trace_id)
    if not nodes:
        raise NotFound(f"No trace {trace_id!r} in this timeline.", "List traces with GET /api/traces.")
    return [node_out(n) for n in nodes]


@router.get("/events/{event_id}/origin", summary="Walk a step back to the turn or request that caused it")
async def event_origin(state: State, event_id: Annotated[str, Path(min_length=1, max_length=64)]) -> list[s.EventOut]:
    chain = await state.core.timeline.walk_to_origin(event_id)
    if not chain:
        raise NotFound(f"No event {event_id!r} in this timeline.", "Event ids come from GET /api/timeline.")
    return [event_out(e) for e in chain]
