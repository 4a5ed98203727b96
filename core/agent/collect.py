"""Accumulates one model call's stream into its final answer: text, tool calls, usage, timings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from core.providers.base import Chunk, TextDelta, ToolCall, ToolCallDelta, Usage


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class CallCollector:
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    text_parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    _calls: dict[int, _PartialCall] = field(default_factory=dict)

    def add(self, chunk: Chunk) -> None:
        if self.first_token is None and not isinstance(chunk, Usage):
            self.first_token = time.perf_counter()
        if isinstance(chunk, TextDelta):
            self.text_parts.append(chunk.text)
        elif isinstance(chunk, ToolCallDelta):
            partial = self._calls.setdefault(chunk.index, _PartialCall())
            partial.id = chunk.id or partial.id
            partial.name = chunk.name or partial.name
            partial.arguments += chunk.arguments
        else:
            self.usage = chunk

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(id=p.id or f"call_{index}", name=p.name, arguments=p.arguments)
            for index, p in sorted(self._calls.items())
        ]

    @property
    def duration_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    @property
    def first_token_ms(self) -> float | None:
        return None if self.first_token is None else (self.first_token - self.started) * 1000
