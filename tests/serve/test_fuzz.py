"""Fuzz `shoal serve` with schemathesis against its own OpenAPI document.

Every operation gets generated requests, valid and invalid; each response must match the document
(status code, content type, headers, body schema) and never be a server error. The server is the real
thing: uvicorn on a loopback port, over a real core whose model echoes (so chats always have an answer).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.serve.server import Listening, serve
from core.approvals import ApprovalBroker
from core.providers.base import ChatMessage, TextDelta
from core.providers.scripted import ScriptedProvider
from core.service import AgentCore
from core.settings import load_settings


def _echo(messages: list[ChatMessage]) -> list[TextDelta]:
    return [TextDelta("echo: " + messages[-1].content[:200])]


class _ServerThread:
    """The server on its own loop in a thread, as it would be in its own process."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.listening: Listening | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="shoal-serve-fuzz", daemon=True)

    def start(self) -> Listening:
        self._thread.start()
        assert self.ready.wait(30), "shoal serve did not start"
        if self.error is not None:
            raise self.error
        assert self.listening is not None
        return self.listening

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        loaded = load_settings(None, {"serve": {"port": 0, "rate_limit": 10_000, "rate_burst": 10_000}})
        broker = ApprovalBroker()
        core = AgentCore(loaded.settings, provider=ScriptedProvider([_echo] * 100_000), approve=broker.ask)
        await core.start()
        await core.start_scheduler() if hasattr(core, "start_scheduler") else None

        def on_ready(listening: Listening) -> None:
            self.listening = listening
            self.ready.set()

        task = asyncio.create_task(serve(loaded, core, broker, on_ready=on_ready))
        await self._stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await core.stop()


@pytest.fixture(scope="module")
def running_server() -> Iterator[Listening]:
    server = _ServerThread()
    listening = server.start()
    yield listening
    server.stop()


def _fuzz(operation: Any, mode: Any, examples: int) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: Any) -> None:
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    run()


def _with_token(schema: Any, token: str) -> None:
    """The bearer token through schemathesis' auth hook, so it knows which cases leave it out on purpose."""

    @schema.auth()
    class Bearer:
        def get(self, case: Any, ctx: Any) -> str:
            return token

        def set(self, case: Any, data: str, ctx: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


# Schemathesis' pytest plugin (`from_fixture`) does not work with pytest 9, so the operations are walked here.
# `positive_data_acceptance` is left out: a schema-valid request may still mean something impossible (a cron
# expression "0", an unknown session id) and then a 400/404 with the reason is the right answer.
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_operation_answers_as_documented(running_server: Listening, mode: str) -> None:
    schema = schemathesis.openapi.from_url(f"{running_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20  # the whole API is covered, not a slice of it
    token = running_server.access.token
    assert token
    _with_token(schema, token)
    fuzzed = 0
    for operation in operations:
        try:
            _fuzz(operation, schemathesis.GenerationMode(mode), 25)
            fuzzed += 1
        except Unsatisfiable:  # nothing to get wrong: no parameters and no body (GET /health)
            assert mode == "negative"
    assert fuzzed >= len(operations) - 8
