"""Parsing <tool_call> markup out of streamed text, however the stream is split."""

from __future__ import annotations

import json

import pytest

from core.agent.collect import CallCollector
from core.providers.base import Chunk, TextDelta, ToolCallDelta
from core.providers.tool_text import ToolTagParser

SAMPLE = 'Let me look.<tool_call>{"name": "read_file", "arguments": {"path": "a.txt"}}</tool_call>'


def run(pieces: list[str]) -> list[Chunk]:
    parser = ToolTagParser()
    out: list[Chunk] = []
    for piece in pieces:
        out.extend(parser.feed(piece))
    out.extend(parser.finish())
    return out


def collect(chunks: list[Chunk]) -> CallCollector:
    collector = CallCollector()
    for chunk in chunks:
        collector.add(chunk)
    return collector


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11, 1000])
def test_any_split_gives_the_same_result(size: int) -> None:
    chunks = run([SAMPLE[i : i + size] for i in range(0, len(SAMPLE), size)])
    result = collect(chunks)
    assert result.text == "Let me look."
    [call] = result.tool_calls
    assert call.name == "read_file" and json.loads(call.arguments) == {"path": "a.txt"}


def test_text_after_a_call_and_two_calls() -> None:
    text = SAMPLE + " and " + SAMPLE.replace("a.txt", "b.txt") + " done"
    result = collect(run([text]))
    assert [json.loads(c.arguments)["path"] for c in result.tool_calls] == ["a.txt", "b.txt"]
    assert result.text == "Let me look. and Let me look. done"


def test_unterminated_call_at_end_of_stream_still_counts() -> None:
    result = collect(run(['<tool_call>{"name": "list_dir", "arguments": {}}']))
    assert [c.name for c in result.tool_calls] == ["list_dir"]


def test_malformed_json_becomes_a_nameless_call_with_the_raw_text() -> None:
    [chunk] = run(['<tool_call>{"name": "x", "arguments": </tool_call>'])
    assert isinstance(chunk, ToolCallDelta) and chunk.name == "" and '"name": "x"' in chunk.arguments


def test_lookalike_text_is_not_held_back_forever() -> None:
    chunks = run(["a < b and <tool", "box> ok"])
    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)) == "a < b and <toolbox> ok"


def test_partial_tag_is_held_back_not_shown() -> None:
    parser = ToolTagParser()
    first = list(parser.feed("Hello <tool_c"))
    assert [c.text for c in first if isinstance(c, TextDelta)] == ["Hello "]
