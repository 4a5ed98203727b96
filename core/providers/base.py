"""The one streaming interface every model provider implements.

A provider turns a list of chat messages (plus tool specs) into an async stream of chunks: text
deltas, tool-call deltas and a final usage report. The agent loop never knows which backend it talks to.
"""

from __future__ import annotations

import abc
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from core.tools.registry import ToolSpec

Role = Literal["system", "user", "assistant", "tool"]


@dataclass
class ToolCall:
    """A complete tool call requested by the model; `arguments` is the raw JSON text as the model wrote it."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class ChatMessage:
    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """The message shape OpenAI-compatible APIs and llama-cpp-python both accept."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None and self.role == "tool":
            out["name"] = self.name
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "content": self.content,
            "tool_calls": [vars(c) for c in self.tool_calls],
            "tool_call_id": self.tool_call_id,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChatMessage:
        calls = data.get("tool_calls") or []
        if isinstance(calls, str):
            calls = json.loads(calls)
        return cls(
            role=data["role"],
            content=data.get("content") or "",
            tool_calls=[ToolCall(**c) for c in calls],
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
        )


# --- stream chunks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call; pieces with the same `index` concatenate (OpenAI streaming semantics)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    finish_reason: str = "stop"  # stop | length | tool_calls | cancelled
    estimated: bool = False  # the backend did not report counts; these are estimates


CHARS_PER_TOKEN = 3.0
PER_MESSAGE_TOKENS = 6


def estimate_tokens(message: ChatMessage) -> int:
    """A deliberately generous token estimate (about 3 characters a token) for when no tokenizer is at hand."""
    size = len(message.content) + sum(len(c.name) + len(c.arguments) for c in message.tool_calls)
    return int(size / CHARS_PER_TOKEN) + PER_MESSAGE_TOKENS


Chunk = TextDelta | ToolCallDelta | Usage


@dataclass(frozen=True)
class GenerationOptions:
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 1024
    seed: int | None = None


def chat_request(messages: list[ChatMessage], tools: list[ToolSpec], options: GenerationOptions) -> dict[str, Any]:
    """The OpenAI-shaped streaming chat request that both llama-cpp-python and OpenAI endpoints accept."""
    request: dict[str, Any] = {
        "messages": [m.to_openai() for m in messages],
        "stream": True,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "max_tokens": options.max_tokens,
    }
    if options.seed is not None:
        request["seed"] = options.seed
    if tools:
        request["tools"] = [t.to_openai() for t in tools]
    return request


class Provider(abc.ABC):
    """A model backend. `start()` prepares it (load weights, check endpoint); `stop()` releases it."""

    name: str = "provider"

    @property
    @abc.abstractmethod
    def model_id(self) -> str:
        """What the timeline records as the model of each call."""

    async def start(self) -> None:  # noqa: B027 - optional
        """Prepare the backend. Idempotent."""

    async def stop(self) -> None:  # noqa: B027 - optional
        """Release the backend. Idempotent and bounded."""

    @abc.abstractmethod
    def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec],
        options: GenerationOptions,
    ) -> AsyncIterator[Chunk]:
        """Stream one model call. Closing the iterator (or cancelling the task) stops generation promptly.
        Always ends with exactly one `Usage` chunk unless an error is raised."""

    @property
    def context_window(self) -> int | None:
        """Tokens the model can attend to, if known."""
        return None
