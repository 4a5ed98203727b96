"""Fits a conversation into the model's context window by dropping the oldest whole exchanges.

Token counts are estimated (about 3 characters a token, a little per message), which errs on the safe
side for English and code; the provider still reports a precise overflow if the estimate was wrong.
"""

from __future__ import annotations

from core.errors import ContextOverflowError
from core.providers.base import ChatMessage, estimate_tokens


def fit_history(
    system: ChatMessage, history: list[ChatMessage], window: int | None, reserve: int, tool_tokens: int = 0
) -> tuple[list[ChatMessage], int]:
    """Return (messages to send, how many history messages were dropped). The newest message is kept whole."""
    if window is None:
        return [system, *history], 0
    # Keep room for an answer, but never let a large max_tokens crowd out the conversation itself:
    # the backend stops the answer at the window's end anyway.
    reserve = min(reserve, window // 4)
    budget = window - reserve - tool_tokens - estimate_tokens(system)
    kept: list[ChatMessage] = []
    used = 0
    for message in reversed(history):
        cost = estimate_tokens(message)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    if not kept and history:
        raise ContextOverflowError(
            f"Your message (about {estimate_tokens(history[-1])} tokens) does not fit the model's context window "
            f"of {window} tokens ({tool_tokens} go to tool descriptions, {reserve} are kept for the answer).",
            "Shorten the message, lower model.max_tokens, or raise model.n_ctx.",
        )
    # never start with an orphaned tool result or an assistant tool request cut from its results
    while kept and (kept[0].role == "tool" or (kept[0].role == "assistant" and kept[0].tool_calls)):
        kept.pop(0)
    if history and not kept:
        kept = [history[-1]]
    return [system, *kept], len(history) - len(kept)
