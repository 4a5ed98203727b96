"""The openai provider against a real OpenAI-compatible server: llama-cpp-python's own, over a generated model."""

from __future__ import annotations

import pytest

from core import events as ev
from core.errors import AuthenticationError, EndpointUnreachableError
from core.providers.base import ChatMessage, GenerationOptions, TextDelta, Usage
from core.providers.openai_compat import OpenAIProvider
from tests.fixtures.cores import core_with, run_turn
from tests.fixtures.llama_server import LlamaServer
from tests.integration.conftest import PLAIN_REPLY

GREEDY = GenerationOptions(temperature=0.0, max_tokens=200, seed=3)


async def test_streams_the_reply_with_usage(llama_server: LlamaServer) -> None:
    provider = OpenAIProvider(llama_server.base_url, "plain", None)
    try:
        chunks = [c async for c in provider.stream([ChatMessage("user", "hi")], [], GREEDY)]
    finally:
        await provider.stop()
    texts = [c.text for c in chunks if isinstance(c, TextDelta)]
    assert "".join(texts) == PLAIN_REPLY and len(texts) > 5
    usage = chunks[-1]
    assert isinstance(usage, Usage) and usage.output_tokens > 0 and usage.input_tokens > 0


async def test_lists_the_served_models(llama_server: LlamaServer) -> None:
    provider = OpenAIProvider(llama_server.base_url, "plain", None)
    try:
        models = await provider.list_models()
    finally:
        await provider.stop()
    assert len(models) == 1 and models[0].endswith("plain.gguf")


async def test_agent_turn_through_the_endpoint(llama_server: LlamaServer) -> None:
    provider = OpenAIProvider(llama_server.base_url, "plain", None)
    async with core_with(provider, overrides={"model": {"temperature": 0.0}}) as core:
        session = await core.new_session()
        events = await run_turn(core, session.id, "hello")
        final = events[-1]
        assert isinstance(final, ev.TurnFinished) and final.text == PLAIN_REPLY, final
        finished = next(e for e in events if isinstance(e, ev.LlmCallFinished))
        assert finished.first_token_ms is not None and finished.output_tokens > 0


async def test_server_going_away_is_a_network_error(plain_model) -> None:  # type: ignore[no-untyped-def]
    with LlamaServer(plain_model, n_ctx=2048) as server:
        base_url = server.base_url
    provider = OpenAIProvider(base_url, "plain", None, timeout=5)
    try:
        with pytest.raises(EndpointUnreachableError) as info:
            [c async for c in provider.stream([ChatMessage("user", "hi")], [], GREEDY)]
    finally:
        await provider.stop()
    assert base_url in info.value.message and "Start the server" in info.value.fix


async def test_a_server_that_wants_a_key_refuses_a_wrong_one(plain_model) -> None:  # type: ignore[no-untyped-def]
    with LlamaServer(plain_model, n_ctx=2048, extra_args=["--api_key", "right-key-1234"]) as server:
        wrong = OpenAIProvider(server.base_url, "plain", "wrong-key-9999")
        right = OpenAIProvider(server.base_url, "plain", "right-key-1234")
        try:
            with pytest.raises(AuthenticationError) as info:
                [c async for c in wrong.stream([ChatMessage("user", "hi")], [], GREEDY)]
            chunks = [c async for c in right.stream([ChatMessage("user", "hi")], [], GREEDY)]
        finally:
            await wrong.stop()
            await right.stop()
    assert "set-key" in info.value.fix and "wrong-key" not in info.value.message
    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)) == PLAIN_REPLY
