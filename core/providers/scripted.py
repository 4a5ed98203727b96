"""A provider that plays back a script: deterministic tests of the agent loop without a model.

Each call to `stream` consumes the next step of the script. A step is a string (streamed as text in small
pieces), a list of chunks (an exception in it is raised when reached: a stream failing half-way), a callable
that builds chunks from the messages it was sent, or an exception to raise at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from core.errors import BugError
from core.providers.base import ChatMessage, Chunk, GenerationOptions, Provider, TextDelta, ToolCallDelta, Usage
from core.tools.registry import ToolSpec

Step = str | Sequence[Chunk | BaseException] | Callable[[list[ChatMessage]], Sequence[Chunk]] | BaseException


def tool_call(name: str, arguments: str | dict[str, Any], index: int = 0, call_id: str | None = None) -> ToolCallDelta:
    import json

    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCallDelta(index=index, id=call_id or f"call_{index}", name=name, arguments=args)


class ScriptedProvider(Provider):
    name = "scripted"

    def __init__(self, steps: Sequence[Step], *, delay: float = 0.0, model: str = "scripted") -> None:
        self._steps = list(steps)
        self._delay = delay
        self._model = model
        self.calls: list[list[ChatMessage]] = []  # what each call was sent, for assertions
        self.tools_seen: list[list[str]] = []

    @property
    def model_id(self) -> str:
        return self._model

    async def stream(
        self, messages: list[ChatMessage], tools: list[ToolSpec], options: GenerationOptions
    ) -> AsyncIterator[Chunk]:
        if not self._steps:
            raise BugError("The scripted provider ran out of steps.", "Give the test script more steps.")
        self.calls.append(list(messages))
        self.tools_seen.append([t.name for t in tools])
        step = self._steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        chunks = self._chunks(step, messages)
        produced = 0
        for chunk in chunks:
            if self._delay:
                await asyncio.sleep(self._delay)
            else:
                await asyncio.sleep(0)
            if isinstance(chunk, BaseException):
                raise chunk
            produced += 1
            yield chunk
        if not any(isinstance(c, Usage) for c in chunks):
            reason = "tool_calls" if any(isinstance(c, ToolCallDelta) for c in chunks) else "stop"
            yield Usage(
                input_tokens=sum(len(m.content) for m in messages) // 4, output_tokens=produced, finish_reason=reason
            )

    @staticmethod
    def _chunks(step: Step, messages: list[ChatMessage]) -> list[Chunk | BaseException]:
        if isinstance(step, str):
            return [TextDelta(step[i : i + 4]) for i in range(0, len(step), 4)]
        if callable(step):
            return list(step(messages))
        assert not isinstance(step, BaseException)
        return list(step)
