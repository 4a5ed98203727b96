"""The llama_cpp provider and the agent loop over real llama-cpp-python and generated GGUF models."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from core import events as ev
from core.errors import ContextOverflowError, ModelFileError
from core.providers.base import ChatMessage, GenerationOptions, TextDelta, ToolCallDelta, Usage
from core.providers.llama_local import LlamaCppProvider
from core.tools.files import ReadFileTool
from tests.fixtures.cores import core_with, run_turn
from tests.integration.conftest import PLAIN_REPLY

GREEDY = GenerationOptions(temperature=0.0, max_tokens=256, seed=1)


async def collect(provider: LlamaCppProvider, text: str = "hi", tools=(), options=GREEDY):  # type: ignore[no-untyped-def]
    return [c async for c in provider.stream([ChatMessage("user", text)], list(tools), options)]


async def test_streams_the_reply_from_the_gguf_chat_template(plain_model: Path) -> None:
    provider = LlamaCppProvider(str(plain_model), n_ctx=2048, n_threads=2)
    try:
        chunks = await collect(provider)
    finally:
        await provider.stop()
    texts = [c.text for c in chunks if isinstance(c, TextDelta)]
    assert "".join(texts) == PLAIN_REPLY and len(texts) > 5
    usage = chunks[-1]
    assert isinstance(usage, Usage) and usage.output_tokens == len(PLAIN_REPLY) and usage.input_tokens > 5


async def test_tool_call_markup_becomes_a_structured_call(tool_model: Path) -> None:
    provider = LlamaCppProvider(str(tool_model), n_ctx=4096, n_threads=2)
    try:
        chunks = await collect(provider, "read my notes", tools=[ReadFileTool.spec])
    finally:
        await provider.stop()
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert len(calls) == 1 and calls[0].name == "read_file" and json.loads(calls[0].arguments) == {"path": "notes.txt"}
    assert not [c for c in chunks if isinstance(c, TextDelta) and c.text.strip()]
    assert isinstance(chunks[-1], Usage) and chunks[-1].finish_reason == "tool_calls"


async def test_real_tool_loop_runs_tools_and_stops_at_the_iteration_bound(tool_model: Path, workspace: Path) -> None:
    """This model always answers with the same tool call, so the loop must stop itself."""
    (workspace / "notes.txt").write_text("High tide at six.")
    provider = LlamaCppProvider(str(tool_model), n_ctx=4096, n_threads=2)
    overrides = {"agent": {"max_iterations": 2}, "model": {"temperature": 0.0}}
    async with core_with(provider, overrides=overrides) as core:
        session = await core.new_session()
        events = await run_turn(core, session.id, "What do my notes say?")
    results = [e for e in events if isinstance(e, ev.ToolCallFinished)]
    assert len(results) == 2 and all(r.ok and "High tide at six." in r.output for r in results)
    final = events[-1]
    assert isinstance(final, ev.TurnFinished) and final.status == "max_iterations"
    assert final.input_tokens > 0 and final.output_tokens > 0


async def test_agent_answers_and_records_tokens(plain_model: Path) -> None:
    provider = LlamaCppProvider(str(plain_model), n_ctx=4096, n_threads=2)
    async with core_with(provider, overrides={"model": {"temperature": 0.0}}) as core:
        session = await core.new_session()
        events = await run_turn(core, session.id, "hello")
        final = events[-1]
        assert isinstance(final, ev.TurnFinished) and final.text == PLAIN_REPLY, final
        [response] = await core.timeline.events(trace_id=final.trace_id, kind="llm.response")
        assert response.output_tokens == len(PLAIN_REPLY) and response.model == "plain.gguf"
        assert response.payload["first_token_ms"] is not None


async def test_cancel_stops_generation_within_a_token_and_the_model_stays_usable(endless_model: Path) -> None:
    provider = LlamaCppProvider(str(endless_model), n_ctx=4096, n_threads=2)
    options = GenerationOptions(temperature=0.0, max_tokens=3000)
    try:
        stream = provider.stream([ChatMessage("user", "go")], [], options)
        seen = 0
        async for chunk in stream:
            seen += isinstance(chunk, TextDelta)
            if seen == 10:
                break
        loop = asyncio.get_running_loop()
        started = loop.time()
        await stream.aclose()  # type: ignore[attr-defined]  # sets the flag; returns without waiting
        assert loop.time() - started < 0.1
        again = await collect(provider, "again", options=GenerationOptions(temperature=0.0, max_tokens=5))
        assert isinstance(again[-1], Usage) and again[-1].output_tokens == 5 and again[-1].finish_reason == "length"
    finally:
        await provider.stop()


async def test_prompt_larger_than_the_context_is_a_clear_error(plain_model: Path) -> None:
    provider = LlamaCppProvider(str(plain_model), n_ctx=256, n_threads=2)
    try:
        with pytest.raises(ContextOverflowError) as info:
            await collect(provider, "word " * 400)
    finally:
        await provider.stop()
    assert "256" in info.value.message and "n_ctx" in info.value.fix


async def test_truncated_gguf_is_reported_as_a_corrupt_model(plain_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "truncated.gguf"
    broken.write_bytes(plain_model.read_bytes()[:4096])  # valid header, missing tensors
    provider = LlamaCppProvider(str(broken))
    with pytest.raises(ModelFileError) as info:
        await provider.start()
    assert "could not load" in info.value.message and "corrupt" in info.value.fix


async def test_loop_stays_responsive_while_the_model_generates(endless_model: Path) -> None:
    """Generation runs in a worker thread: the event loop keeps ticking."""
    provider = LlamaCppProvider(str(endless_model), n_ctx=4096, n_threads=2)
    await provider.start()
    gaps: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.005)
            now = loop.time()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        await collect(provider, "go", options=GenerationOptions(temperature=0.0, max_tokens=300))
    finally:
        task.cancel()
        await provider.stop()
    assert gaps and max(gaps) < 0.25


async def test_token_counts_match_what_was_generated(plain_model: Path, endless_model: Path) -> None:
    plain = LlamaCppProvider(str(plain_model), n_ctx=2048, n_threads=2)
    endless = LlamaCppProvider(str(endless_model), n_ctx=2048, n_threads=2)
    try:
        stopped = (await collect(plain))[-1]
        limited = (await collect(endless, options=GenerationOptions(temperature=0.0, max_tokens=7)))[-1]
    finally:
        await plain.stop()
        await endless.stop()
    assert isinstance(stopped, Usage) and stopped.output_tokens == len(PLAIN_REPLY) and stopped.finish_reason == "stop"
    assert isinstance(limited, Usage) and limited.output_tokens == 7 and limited.finish_reason == "length"
    assert stopped.input_tokens > 20 and limited.input_tokens > 20
