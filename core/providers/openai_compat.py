"""Any OpenAI-compatible endpoint through the `openai` SDK: OpenAI, OpenRouter, Ollama, vLLM, LM Studio,
llama-cpp-python's server. The SDK is imported when the provider starts, not when Shoal starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from core.errors import (
    AuthenticationError,
    ContextOverflowError,
    EndpointUnreachableError,
    ModelNotConfiguredError,
    ModelNotFoundError,
    ProviderError,
    ShoalError,
)
from core.providers.base import (
    ChatMessage,
    Chunk,
    GenerationOptions,
    Provider,
    TextDelta,
    ToolCallDelta,
    Usage,
    chat_request,
    estimate_tokens,
)
from core.providers.tool_text import ToolTagParser
from core.secrets import env_var_for
from core.tools.registry import ToolSpec

NO_KEY = "sk-no-key-required"  # local servers ignore it; passing it stops the SDK reading OPENAI_API_KEY


class OpenAIProvider(Provider):
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        *,
        key_name: str = "default",
        timeout: float = 120.0,
        parse_tool_tags: bool = True,
        key_from_keyring: bool = False,
    ) -> None:
        if not base_url:
            raise ModelNotConfiguredError(
                "No endpoint is configured for the openai provider.",
                "Set model.base_url (e.g. http://localhost:11434/v1) and model.name, or use a local GGUF file.",
            )
        if not model:
            raise ModelNotConfiguredError(
                f"No model name is configured for {base_url}.", "Set model.name; `shoal models` lists what it serves."
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self._key_name = key_name
        self._key_from_keyring = key_from_keyring  # read on start(), in a thread: a keyring may prompt
        self._timeout = timeout
        self._parse_tool_tags = parse_tool_tags
        self._client: Any = None

    @property
    def model_id(self) -> str:
        return self.model

    async def start(self) -> None:
        if self._client is None:
            import openai

            if self._key_from_keyring:
                from core.secrets import get_api_key

                secret = await asyncio.to_thread(get_api_key, self._key_name)
                self._api_key = secret.value if secret else None

            self._client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self._api_key or NO_KEY, timeout=self._timeout, max_retries=1
            )

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def list_models(self) -> list[str]:
        await self.start()
        try:
            page = await self._client.models.list()
            return sorted(m.id for m in page.data)
        except Exception as exc:
            raise self.translate(exc) from exc

    async def stream(
        self, messages: list[ChatMessage], tools: list[ToolSpec], options: GenerationOptions
    ) -> AsyncIterator[Chunk]:
        await self.start()
        request = {"model": self.model, **chat_request(messages, tools, options)}
        request["stream_options"] = {"include_usage": True}
        try:
            response = await self._client.chat.completions.create(**request)
        except Exception as exc:
            raise self.translate(exc) from exc
        async for chunk in self._chunks(response, messages):
            yield chunk

    async def _chunks(self, response: Any, messages: list[ChatMessage]) -> AsyncIterator[Chunk]:
        parser = ToolTagParser(first_index=1000) if self._parse_tool_tags else None
        usage: Usage | None = None
        pieces, finish, saw_calls = 0, "stop", False
        try:
            async with response:
                async for event in response:
                    if event.usage is not None:
                        usage = Usage(event.usage.prompt_tokens or 0, event.usage.completion_tokens or 0)
                    for choice in event.choices or []:
                        finish = choice.finish_reason or finish
                        delta = choice.delta
                        for call in delta.tool_calls or []:
                            saw_calls = True
                            fn = call.function
                            yield ToolCallDelta(
                                call.index, call.id, fn.name if fn else None, (fn.arguments or "") if fn else ""
                            )
                        if delta.content:
                            pieces += 1
                            if parser is None:
                                yield TextDelta(delta.content)
                            else:
                                for out in parser.feed(delta.content):
                                    yield out
        except ShoalError:
            raise
        except Exception as exc:
            raise self.translate(exc) from exc
        if parser is not None:
            for out in parser.finish():
                yield out
            saw_calls = saw_calls or parser.calls_found > 0
        if usage is None:  # the endpoint ignored stream_options: estimate (and say so), never report zero
            usage = Usage(sum(estimate_tokens(m) for m in messages), pieces, estimated=True)
        reason = "tool_calls" if saw_calls else ("length" if finish == "length" else finish or "stop")
        yield Usage(usage.input_tokens, usage.output_tokens, reason, usage.estimated)

    def translate(self, exc: BaseException) -> ShoalError:
        """Map SDK errors to errors that name the cause and the fix."""
        import openai

        where = f"{self.base_url} (model {self.model})"
        text = str(getattr(exc, "message", "") or exc)
        if isinstance(exc, openai.APITimeoutError):
            return EndpointUnreachableError(
                f"{self.base_url} did not answer within {self._timeout:g} s.",
                "Check the server is running and not overloaded, or raise model.timeout.",
            )
        if isinstance(exc, openai.APIConnectionError):
            return EndpointUnreachableError(
                f"Cannot reach {self.base_url}: {exc.__cause__ or text}",
                "Start the server (Ollama, LM Studio, llama_cpp.server…) or fix model.base_url.",
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return AuthenticationError(
                f"{self.base_url} refused the API key: {text}",
                f"Store a valid key with `shoal config set-key` (or set {env_var_for(self._key_name)}).",
            )
        if isinstance(exc, openai.NotFoundError):
            return ModelNotFoundError(
                f"{where}: model or path not found: {text}",
                "Check model.name against `shoal models`, and that base_url ends in /v1.",
            )
        lowered = text.lower()
        if isinstance(exc, openai.BadRequestError) and (
            "context" in lowered or "too long" in lowered or "exceed" in lowered
        ):
            return ContextOverflowError(
                f"The conversation is longer than {self.model}'s context window: {text}",
                "Start a new session, shorten the message, or lower model.max_tokens.",
            )
        if isinstance(exc, openai.RateLimitError):
            return ProviderError(f"{where} is rate limiting us: {text}", "Wait a moment and retry, or check your plan.")
        if isinstance(exc, openai.APIStatusError):
            return ProviderError(f"{where} answered HTTP {exc.status_code}: {text}", "Check the server's log.")
        if isinstance(exc, ShoalError):
            return exc
        return ProviderError(f"{where} failed: {type(exc).__name__}: {text}", "Check the server's log and retry.")
