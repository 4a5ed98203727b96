"""How a remote agent's questions are mirrored into the desktop's broker, down to the failure cases a live
server rarely produces on demand: an answer that cannot be delivered, a duplicate, a withdrawal racing an answer."""

from __future__ import annotations

import asyncio
from typing import Any

from app.remote.approvals import ApprovalMirror
from app.remote.http import ServerError
from core.approvals import ApprovalBroker
from core.errors import Actor, NetworkError, ShoalError
from core.tools.registry import ApprovalDecision

QUESTION = {"id": "r1", "tool": "shell", "risk": "high", "summary": "$ ls", "arguments": {}, "session_id": "s1"}


class FakeClient:
    """Records what is POSTed; fails while `failure` is set."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, Any]] = []
        self.failure: ShoalError | None = None
        self.pending: list[dict[str, Any]] = []

    async def request(self, method: str, path: str, *, json_body: Any = None, **_: Any) -> Any:
        if self.failure is not None:
            raise self.failure
        self.posted.append((path, json_body))
        return None

    async def get(self, path: str, **_: Any) -> Any:
        return self.pending


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_question_is_asked_once_and_the_answer_posted_back() -> None:
    client, broker = FakeClient(), ApprovalBroker()
    mirror = ApprovalMirror(client, broker, lambda _e: None)  # type: ignore[arg-type]
    mirror.ask(QUESTION)
    mirror.ask(QUESTION)  # from the turn's stream and the feed: one card
    await settle()
    [item] = broker.pending.values()
    assert item.request.summary == "$ ls"
    broker.resolve(item.id, ApprovalDecision.APPROVE_SESSION)
    await settle()
    assert client.posted == [("/api/approvals/r1", {"decision": "approve_session"})]
    mirror.ask(QUESTION)  # a late replay of an answered question is not asked again
    await settle()
    assert not broker.pending


async def test_an_answer_that_cannot_be_delivered_is_reported_and_asked_again_later() -> None:
    client, broker, errors = FakeClient(), ApprovalBroker(), []
    mirror = ApprovalMirror(client, broker, errors.append)  # type: ignore[arg-type]
    client.failure = NetworkError("The connection broke.", "Reconnecting.")
    mirror.ask(QUESTION)
    await settle()
    broker.resolve(next(iter(broker.pending)), ApprovalDecision.DENY)
    await settle()
    assert [e.message for e in errors] == ["The connection broke."] and not broker.pending
    client.failure, client.pending = None, [QUESTION]
    await mirror.refresh()  # what reconnecting does: the server still waits, so the question is back
    await settle()
    [item] = broker.pending.values()
    broker.resolve(item.id, ApprovalDecision.DENY)
    await settle()
    assert client.posted == [("/api/approvals/r1", {"decision": "deny"})]


async def test_an_answer_the_server_no_longer_wants_is_not_an_error_and_withdrawals_remove_cards() -> None:
    client, broker, errors = FakeClient(), ApprovalBroker(), []
    mirror = ApprovalMirror(client, broker, errors.append)  # type: ignore[arg-type]
    client.failure = ServerError("Already answered.", "", actor=Actor.USER, status=409, name="Conflict")
    mirror.ask(QUESTION)
    mirror.ask({**QUESTION, "id": "r2"})
    await settle()
    first, _second = broker.pending
    broker.resolve(first, ApprovalDecision.APPROVE_ONCE)
    await settle()
    assert errors == []
    mirror.sync([])  # the server lists nothing waiting: the other card goes too
    await settle()
    assert not broker.pending and mirror.waiting == []
