"""Prove the GGUF fixtures work with the real llama-cpp-python: the random model generates, the scripted model
says exactly its script (plain, streamed, with tools, through the OpenAI-compatible server)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Must precede the first import of llama_cpp (OpenMP reads it once): spin-waiting threads starve each other.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import llama_cpp
import pytest

from tests.fixtures.gguf_models import CHAT_TEMPLATE, EOS_TOKEN, write_random_model, write_scripted_model
from tests.fixtures.llama_server import LlamaServer

pytestmark = pytest.mark.slow

PLAIN_REPLY = "Hello from Shoal. The tide is in."
TOOL_REPLY = '<tool_call>{"name": "read_file", "arguments": {"path": "notes.txt"}}</tool_call>'
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a text file from the user's notes folder.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string", "description": "Relative path"}},
                "required": ["path"],
            },
        },
    }
]
USER_TURN = [{"role": "user", "content": "What do my notes say?"}]
TOOL_HISTORY: list[dict[str, Any]] = [
    {"role": "system", "content": "You are Shoal."},
    {"role": "user", "content": "Read my notes."},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "read_file", "arguments": json.dumps({"path": "notes.txt"})},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "High tide at 6."},
]


def _load(path: Path, n_ctx: int = 4096) -> Any:
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=2, verbose=False)


def _streamed_text(chunks: Iterator[dict[str, Any]]) -> list[str]:
    return [piece for chunk in chunks if (piece := chunk["choices"][0]["delta"].get("content"))]


@pytest.fixture(scope="module")
def plain_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scripted_model(tmp_path_factory.mktemp("gguf") / "plain.gguf", PLAIN_REPLY)


@pytest.fixture(scope="module")
def plain_llm(plain_model_path: Path) -> Iterator[Any]:
    llm = _load(plain_model_path)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def tool_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    llm = _load(write_scripted_model(tmp_path_factory.mktemp("gguf") / "tool.gguf", TOOL_REPLY))
    yield llm
    llm.close()


def test_random_model_generates_exactly_max_tokens(tmp_path: Path) -> None:
    path = write_random_model(tmp_path / "random.gguf", eos_suppressed=True)
    llm = _load(path, n_ctx=512)
    try:
        result = llm.create_completion("The tide", max_tokens=64, temperature=0)
    finally:
        llm.close()
    assert result["usage"]["completion_tokens"] == 64
    assert result["choices"][0]["finish_reason"] == "length"
    assert result["choices"][0]["text"]


def test_random_f16_model_chats_with_template_from_file(tmp_path: Path) -> None:
    path = write_random_model(tmp_path / "random16.gguf", n_embd=128, dtype="f16", seed=3)
    llm = _load(path, n_ctx=2048)
    try:
        assert llm.chat_format == "chat_template.default"  # taken from tokenizer.chat_template
        result = llm.create_chat_completion(messages=USER_TURN, tools=TOOLS, max_tokens=16, temperature=0)
    finally:
        llm.close()
    # EOS is not suppressed here, so the (random) reply may be short: only check that generation ran.
    assert result["usage"]["prompt_tokens"] > 100
    assert result["usage"]["completion_tokens"] <= 16
    assert result["choices"][0]["finish_reason"] in {"stop", "length"}


def test_template_renders_tools_tool_calls_and_tool_results() -> None:
    formatter = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
        template=CHAT_TEMPLATE, eos_token=EOS_TOKEN, bos_token="<s>"
    )
    prompt = formatter(messages=[*TOOL_HISTORY, {"role": "tool", "content": "Low tide at 12."}], tools=TOOLS).prompt
    assert prompt.startswith("<|im_start|>system\nYou are Shoal.\n\n# Tools\n")
    assert "<tools>\n" + json.dumps(TOOLS[0]) + "\n</tools>" in prompt
    assert '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' in prompt
    assert prompt.endswith(
        "<|im_start|>user\nRead my notes.<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "read_file", "arguments": {"path": "notes.txt"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nHigh tide at 6.\n</tool_response>\n"
        "<tool_response>\nLow tide at 12.\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    plain = formatter(messages=USER_TURN).prompt
    assert plain == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat do my notes say?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_generation_prompt_ends_in_the_newline_byte(plain_llm: Any) -> None:
    tokens = plain_llm.tokenize(b"<|im_start|>assistant\n", add_bos=False, special=True)
    assert tokens[-1] == plain_llm.tokenize(b"\n", add_bos=False, special=True)[0]
    assert plain_llm.detokenize(tokens[-1:]) == b"\n"


def test_scripted_reply_plain_and_streamed(plain_llm: Any) -> None:
    result = plain_llm.create_chat_completion(messages=USER_TURN, temperature=0)
    assert result["choices"][0]["message"]["content"] == PLAIN_REPLY
    assert result["choices"][0]["finish_reason"] == "stop"

    pieces = _streamed_text(plain_llm.create_chat_completion(messages=USER_TURN, temperature=0, stream=True))
    assert "".join(pieces) == PLAIN_REPLY
    assert len(pieces) > 5


def test_scripted_reply_is_independent_of_the_prompt(plain_llm: Any) -> None:
    result = plain_llm.create_chat_completion(messages=TOOL_HISTORY, tools=TOOLS, temperature=0)
    assert result["choices"][0]["message"]["content"] == PLAIN_REPLY


def test_scripted_tool_call_comes_out_exactly_with_tools(tool_llm: Any) -> None:
    result = tool_llm.create_chat_completion(messages=USER_TURN, tools=TOOLS, temperature=0)
    message = result["choices"][0]["message"]
    # The GGUF template handler does not parse tool calls: the Hermes text arrives as content.
    assert message["content"] == TOOL_REPLY
    assert not message.get("tool_calls")

    pieces = _streamed_text(
        tool_llm.create_chat_completion(messages=USER_TURN, tools=TOOLS, temperature=0, stream=True)
    )
    assert "".join(pieces) == TOOL_REPLY
    assert len(pieces) > 5


def test_forced_tool_choice_returns_scripted_arguments(tmp_path: Path) -> None:
    """With a named tool_choice llama-cpp-python constrains sampling by the schema and returns tool_calls."""
    arguments = '{"path": "notes.txt"}'
    llm = _load(write_scripted_model(tmp_path / "args.gguf", arguments))
    try:
        result = llm.create_chat_completion(
            messages=USER_TURN,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "read_file"}},
            temperature=0,
        )
    finally:
        llm.close()
    call = result["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "read_file", "arguments": arguments}
    assert result["choices"][0]["finish_reason"] == "tool_calls"


def test_scripted_model_rejects_control_tokens_and_too_long_replies(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="control tokens"):
        write_scripted_model(tmp_path / "bad.gguf", f"hi{EOS_TOKEN}")
    with pytest.raises(ValueError, match="too long"):
        write_scripted_model(tmp_path / "long.gguf", "x" * 5000, n_embd=16)


def test_server_streams_scripted_reply_through_openai_sdk(plain_model_path: Path) -> None:
    openai = pytest.importorskip("openai")
    with LlamaServer(plain_model_path, n_ctx=4096, timeout=60) as server:
        assert server.base_url.endswith("/v1")
        client = openai.OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0, timeout=30)
        try:
            stream = client.chat.completions.create(
                model="scripted", messages=USER_TURN, tools=TOOLS, stream=True, temperature=0
            )
            pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
            result = client.chat.completions.create(model="scripted", messages=USER_TURN, temperature=0)
        finally:
            client.close()
    assert "".join(pieces) == PLAIN_REPLY
    assert len(pieces) > 5
    assert result.choices[0].message.content == PLAIN_REPLY
