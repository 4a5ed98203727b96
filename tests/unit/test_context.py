"""Fitting history into the context window."""

from __future__ import annotations

import pytest

from core.agent.context import fit_history
from core.errors import ContextOverflowError
from core.providers.base import ChatMessage, ToolCall

SYSTEM = ChatMessage("system", "be brief")


def test_everything_fits_when_window_unknown() -> None:
    history = [ChatMessage("user", "x" * 100_000)]
    messages, dropped = fit_history(SYSTEM, history, None, 100)
    assert messages == [SYSTEM, *history] and dropped == 0


def test_oldest_messages_drop_first() -> None:
    history = [ChatMessage("user" if i % 2 == 0 else "assistant", f"{i}" * 300) for i in range(10)]
    messages, dropped = fit_history(SYSTEM, history, 1000, 200)
    assert dropped > 0 and messages[-1] is history[-1] and messages[0] is SYSTEM
    assert messages[1:] == history[dropped:]


def test_never_starts_with_an_orphan_tool_result() -> None:
    history = [
        ChatMessage("user", "a" * 3000),
        ChatMessage("assistant", "", tool_calls=[ToolCall("c", "list_dir", "{}")]),
        ChatMessage("tool", "b" * 30, tool_call_id="c"),
        ChatMessage("assistant", "done"),
        ChatMessage("user", "next"),
    ]
    messages, _ = fit_history(SYSTEM, history, 600, 200)
    assert messages[1].role not in ("tool",) and not messages[1].tool_calls


def test_a_single_message_too_big_is_a_clear_error() -> None:
    with pytest.raises(ContextOverflowError) as info:
        fit_history(SYSTEM, [ChatMessage("user", "z" * 20_000)], 1024, 256)
    assert "context window of 1024 tokens" in info.value.message and "n_ctx" in info.value.fix
