"""A running turn as a stream of JSON-ready events, with its approval questions woven in.

An API client cannot answer an approval it never hears about, so while a turn runs, the questions the
approval broker raises for its session are put into the same stream (`approval_requested`); the client
answers with POST /api/approvals/{id}. The turn itself runs in its own task (core.service.Turn), so a
slow reader delays only its own stream, never the model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from core import events as ev
from core.approvals import ApprovalBroker, PendingApproval
from core.errors import classify

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_DONE = object()
KEEPALIVE_SECONDS = 15.0


def event_type(event: Any) -> str:
    """TurnStarted -> turn_started: the `event:` name of an SSE message and the `type` of a JSON event."""
    return _CAMEL.sub("_", type(event).__name__).lower()


def event_dict(event: ev.AgentEvent) -> dict[str, Any]:
    return {"type": event_type(event), **dataclasses.asdict(event)}


def approval_dict(item: PendingApproval) -> dict[str, Any]:
    request = item.request
    return {
        "id": item.id,
        "tool": request.tool,
        "risk": request.risk.value,
        "summary": request.summary,
        "arguments": request.arguments,
        "session_id": request.session_id,
    }


async def turn_stream(turn: Any, broker: ApprovalBroker, session_id: str) -> AsyncIterator[dict[str, Any]]:
    """Every event of `turn` as a dict, plus `approval_requested` for questions about this session.
    Leaving the loop early (the client went away) cancels the turn, which records the stop."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def on_approval(change: str, item: PendingApproval) -> None:
        if change == "added" and item.request.session_id == session_id:
            queue.put_nowait({"type": "approval_requested", **approval_dict(item)})

    async def pump() -> None:
        try:
            async for event in turn:
                queue.put_nowait(event_dict(event))
        except Exception as exc:  # a failure before the turn started (empty message, storage down)
            queue.put_nowait({"type": "turn_failed", "session_id": session_id, "error": classify(exc).to_dict()})
        finally:
            queue.put_nowait(_DONE)

    broker.add_listener(on_approval)
    task = asyncio.create_task(pump(), name="shoal-serve-turn")
    try:
        for item in broker.pending.values():  # asked before the listener was added
            on_approval("added", item)
        while (item := await queue.get()) is not _DONE:
            yield item
    finally:
        broker.remove_listener(on_approval)
        if not task.done():
            task.cancel()
            turn.cancel()
        await asyncio.gather(task, return_exceptions=True)


def sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    """One Server-Sent Events message. JSON never contains a raw newline, so one `data:` line suffices."""
    body = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {body}\n\n".encode()


async def with_keepalive(source: AsyncIterator[bytes], every: float = KEEPALIVE_SECONDS) -> AsyncIterator[bytes]:
    """Forward `source`, sending an SSE comment when it is quiet (a model loading, an approval pending),
    so proxies and clients do not take a long silence for a dead connection."""
    iterator = source.__aiter__()
    pending: asyncio.Task[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield b": keepalive\n\n"
                continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield chunk
    finally:
        if pending is not None:  # done or not: its outcome is collected (never "exception never retrieved")
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def collect_while_connected(events: AsyncIterator[dict[str, Any]], receive: Any) -> list[dict[str, Any]] | None:
    """All of `events`, or None if the client disconnects first, in which case the turn is cancelled (and
    the cancellation recorded) rather than left running, perhaps waiting on an approval nobody will see."""
    collected: list[dict[str, Any]] = []

    async def gather() -> None:
        async for item in events:
            collected.append(item)

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    gatherer = asyncio.ensure_future(gather())
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({gatherer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not gatherer.done():
            gatherer.cancel()  # closes turn_stream, which cancels the turn
        await asyncio.gather(gatherer, watcher, return_exceptions=True)
    if gatherer.cancelled():
        return None
    gatherer.result()  # raise what stopped it, if anything
    return collected
