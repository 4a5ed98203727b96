"""Turn `<tool_call>{...}</tool_call>` written as plain text into structured tool calls.

Many open models (Qwen, Hermes, and chat templates in GGUF files generally) call tools by writing that
markup into their answer. llama-cpp-python and some endpoints pass it through as text, so we parse it
while streaming: text outside the tags flows on at once, a partial `<tool_call` at the end of a chunk is
held back, and each closed tag becomes one complete tool call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from core.providers.base import Chunk, TextDelta, ToolCallDelta

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def _partial_prefix_len(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


def parse_call_body(body: str) -> tuple[str, str]:
    """(name, arguments-json) from the JSON inside a tag. Malformed JSON keeps the raw text as arguments
    and an empty name, so the agent can tell the model exactly what was wrong."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return "", body.strip()
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return "", body.strip()
    args = data.get("arguments", data.get("parameters", {}))
    return data["name"], args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)


class ToolTagParser:
    """Feed text deltas in, get text and tool-call chunks out."""

    def __init__(self, first_index: int = 0) -> None:
        self._buffer = ""
        self._inside = False
        self._next_index = first_index
        self.calls_found = 0

    def feed(self, text: str) -> Iterator[Chunk]:
        self._buffer += text
        while True:
            if self._inside:
                end = self._buffer.find(CLOSE)
                if end < 0:
                    return
                yield self._emit_call(self._buffer[:end])
                self._buffer = self._buffer[end + len(CLOSE) :]
                self._inside = False
                continue
            start = self._buffer.find(OPEN)
            if start >= 0:
                if start:
                    yield TextDelta(self._buffer[:start])
                self._buffer = self._buffer[start + len(OPEN) :]
                self._inside = True
                continue
            keep = _partial_prefix_len(self._buffer, OPEN)
            ready = self._buffer[: len(self._buffer) - keep]
            self._buffer = self._buffer[len(ready) :]
            if ready:
                yield TextDelta(ready)
            return

    def finish(self) -> Iterator[Chunk]:
        """End of stream: an unterminated tag still counts as a call (models often stop before closing)."""
        rest, self._buffer = self._buffer, ""
        if self._inside:
            self._inside = False
            if rest.strip():
                yield self._emit_call(rest)
        elif rest:
            yield TextDelta(rest)

    def _emit_call(self, body: str) -> ToolCallDelta:
        name, arguments = parse_call_body(body.strip())
        index = self._next_index
        self._next_index += 1
        self.calls_found += 1
        return ToolCallDelta(index=index, id=f"call_{index}", name=name, arguments=arguments)
