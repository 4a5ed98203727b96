"""Export a chat session as Markdown (to read) or JSON (to process), with its model and token figures."""

from __future__ import annotations

import json
from typing import Any

from core.timeline.sessions import SessionStore
from core.timeline.store import Timeline

FORMAT_VERSION = 1


async def session_data(sessions: SessionStore, timeline: Timeline, session_id: str) -> dict[str, Any]:
    info = await sessions.get(session_id)
    messages = await sessions.messages(session_id)
    calls = await timeline.events(session_id=session_id, kind="llm.response", limit=100_000)
    return {
        "format": "shoal.session",
        "version": FORMAT_VERSION,
        "id": info.id,
        "title": info.title,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
        "model": info.model,
        "system_prompt": info.system_prompt,
        "usage": {"input_tokens": info.input_tokens, "output_tokens": info.output_tokens, "model_calls": len(calls)},
        "messages": [m.to_dict() for m in messages],
    }


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def to_markdown(data: dict[str, Any]) -> str:
    usage = data["usage"]
    lines = [
        f"# {data['title']}",
        "",
        f"*{data['created_at'][:16].replace('T', ' ')} · {data['model'] or 'model'} · "
        f"{usage['input_tokens']} tokens in, {usage['output_tokens']} out*",
        "",
    ]
    for message in data["messages"]:
        role, content = message["role"], message["content"] or ""
        if role == "user":
            lines += ["## You", "", content, ""]
        elif role == "assistant":
            lines += ["## Shoal", "", content, ""] if content else []
            for call in message["tool_calls"]:
                lines += [f"> **tool call** `{call['name']}`", "", "```json", call["arguments"], "```", ""]
        elif role == "tool":
            fence = "````" if "```" in content else "```"
            lines += [f"> **tool result** `{message.get('name') or ''}`", "", fence, content, fence, ""]
    return "\n".join(lines).rstrip() + "\n"
