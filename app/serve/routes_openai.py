"""An OpenAI-compatible face: `/v1/models` and `/v1/chat/completions`, streaming included.

Any OpenAI client can talk to the agent (tools, memory, policy and all), not to a bare model. Each request
without `X-Shoal-Session` starts a session seeded with the conversation the client sent (OpenAI clients
resend the whole history each time); their system messages join the agent's own system prompt for the
turn (they are the client's instructions, not the agent's identity). The policy's classify rules label the
seeded history and the instructions like any message (docs/policy.md). The session id
comes back in `X-Shoal-Session`: send it again to continue that session, and then only the last user
message is used. Everything lands in the timeline like any other turn.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from app.serve import schemas as s
from app.serve.errors import documented
from app.serve.routes_agent import State, find_session
from app.serve.state import ServeState
from app.serve.streams import collect_while_connected, sse, turn_stream, with_keepalive
from core.errors import UserError
from core.providers.base import ChatMessage
from core.timeline.ids import new_id

router = APIRouter(prefix="/v1", responses=documented(400, 401, 429, openai=True))
MODEL_ID = "shoal"


@router.get("/models", summary="The agent, as an OpenAI model")
async def models(state: State) -> s.ModelList:
    return s.ModelList(data=[s.ModelCard(id=MODEL_ID, created=int(state.started), owned_by="shoal")])


_COMPLETION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A chat.completion, or with `stream` chat.completion.chunk events ending in [DONE]",
        "content": {
            "text/event-stream": {
                "schema": s.sse_schema("absent: data is a chat.completion.chunk, or [DONE] at the end")
            }
        },
    },
    **documented(400, 404, 409, 422, 500, 502, 503, openai=True),
}


@router.post(
    "/chat/completions",
    summary="Chat with the agent (OpenAI format)",
    response_model=s.ChatCompletion,
    responses=_COMPLETION_RESPONSES,
)
async def chat_completions(
    state: State,
    body: s.ChatCompletionRequest,
    request: Request,
    x_shoal_session: Annotated[str | None, Header(max_length=64)] = None,
) -> Any:
    question = _last_user_text(body)
    if x_shoal_session:
        session_id = (await find_session(state, x_shoal_session)).id
    else:
        session_id = await _seeded_session(state, body)
    instructions = "\n\n".join(m.text() for m in body.messages if m.role in ("system", "developer") and m.text())
    turn = state.start_turn(session_id, question, instructions=instructions)
    events = turn_stream(turn, state.broker, session_id)
    completion_id = f"chatcmpl-{new_id()}"
    headers = {"X-Shoal-Session": session_id}
    if body.stream:
        return StreamingResponse(
            with_keepalive(_chunks(state, events, completion_id)),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return await _completion(events, completion_id, headers, request)


def _last_user_text(body: s.ChatCompletionRequest) -> str:
    last = body.messages[-1]
    if last.role != "user" or not last.text().strip():
        raise UserError(
            "The last message must be a non-empty user message.",
            "End `messages` with {'role': 'user', 'content': '...'}; the agent runs its tools itself.",
        )
    return last.text()


async def _seeded_session(state: ServeState, body: s.ChatCompletionRequest) -> str:
    title = f"API: {body.messages[-1].text()[:60]}"
    info = await state.core.new_session(title)
    core = state.core
    for message in body.messages[:-1]:
        if message.role in ("user", "assistant") and message.text():
            label = core.policy.engine.stored_label(message.text())  # the classifier's: the client gave none
            await core.sessions.append(info.id, ChatMessage(message.role, message.text()), label and label.value)
    return info.id


def _chunk(completion_id: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


async def _chunks(state: ServeState, events: AsyncIterator[dict[str, Any]], completion_id: str) -> AsyncIterator[bytes]:
    state.metrics.streams.inc()
    try:
        yield sse(_chunk(completion_id, {"role": "assistant", "content": ""}))
        async for event in events:
            kind = event["type"]
            if kind == "assistant_delta":
                yield sse(_chunk(completion_id, {"content": event["text"]}))
            elif kind == "turn_failed":
                error = event.get("error", {})
                message = error.get("message", "the turn failed") + (f" ({error['fix']})" if error.get("fix") else "")
                yield sse({"error": {"message": message, "type": "server_error", "code": error.get("error")}})
                return
            elif kind == "turn_finished":
                reason = "stop" if event["status"] == "ok" else "length"
                final = _chunk(completion_id, {}, reason)
                final["usage"] = _usage(event)
                yield sse(final)
        yield sse("[DONE]")
    finally:
        state.metrics.streams.dec()


def _usage(event: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(event.get("input_tokens", 0)), int(event.get("output_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _completion(
    events: AsyncIterator[dict[str, Any]], completion_id: str, headers: dict[str, str], request: Request
) -> Any:
    collected = await collect_while_connected(events, request.receive)
    if collected is None:  # the client left; the turn was cancelled and that is recorded
        return Response(status_code=204)
    final: dict[str, Any] = next((e for e in reversed(collected) if e["type"] in ("turn_finished", "turn_failed")), {})
    if final.get("type") != "turn_finished":
        error = final.get("error") or {"message": "The turn was stopped.", "error": "Cancelled"}
        status = 400 if error.get("actor") == "user" else 502 if error.get("actor") == "network" else 503
        if error.get("actor") == "bug":
            status = 500
        message = error.get("message", "") + (f" ({error['fix']})" if error.get("fix") else "")
        body = {"error": {"message": message, "type": "server_error", "code": error.get("error"), "param": None}}
        return JSONResponse(body, status_code=status, headers=headers)
    completion = s.ChatCompletion(
        id=completion_id,
        created=int(time.time()),
        model=MODEL_ID,
        choices=[
            s.CompletionChoice(
                index=0,
                message=s.CompletionMessage(content=final["text"]),
                finish_reason="stop" if final["status"] == "ok" else "length",
            )
        ],
        usage=s.CompletionUsage(**_usage(final)),
    )
    return JSONResponse(json.loads(completion.model_dump_json()), headers=headers)
