"""Qt tests: real widgets (offscreen), a qasync loop so Qt events run while tests await, the real core."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import qasync
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication

from core.approvals import ApprovalBroker
from core.providers.base import Provider
from core.providers.scripted import ScriptedProvider, Step
from core.service import AgentCore
from core.settings import load_settings
from ui.bridge import Bridge


def _app() -> QApplication:
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([])
    app.setQuitOnLastWindowClosed(False)  # closing a test's window must not stop the test's loop
    return app


@pytest.fixture(autouse=True)
def _no_widget_outlives_its_test() -> Iterator[None]:
    """Close and delete every top-level widget a test left behind, while its objects are still alive, so
    no timer or queued event of one test fires into the next one's objects."""
    yield
    app = _app()
    for widget in app.topLevelWidgets():
        widget.close()
        widget.deleteLater()
    for _ in range(3):
        app.processEvents()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    app.processEvents()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Any]:
    """The real Tansu broker (Kafka protocol) for group-mode widgets, one per run like tests/group's fixture:
    give every test its own group name."""
    from tests.fixtures.kafka_broker import TansuBroker

    with TansuBroker() as broker:
        yield broker


def qasync_loop() -> qasync.QEventLoop:
    """Every async test under tests/ui runs on a qasync loop over the QApplication (chosen in tests/conftest.py)."""
    return qasync.QEventLoop(_app())


@asynccontextmanager
async def running_bridge(provider: Provider, overrides: dict[str, Any] | None = None) -> AsyncIterator[Bridge]:
    """A real AgentCore (real SQLite, tools) behind a Bridge whose approvals go to a broker."""
    broker = ApprovalBroker()
    loaded = load_settings(None, overrides or {})
    core = AgentCore(loaded.settings, provider=provider, approve=broker.ask)
    await core.start()
    bridge = Bridge(core, broker, loaded=loaded)
    try:
        yield bridge
    finally:
        bridge.stop_all()
        await bridge.drain()
        await core.stop()


@asynccontextmanager
async def scripted_bridge(
    steps: Sequence[Step], *, delay: float = 0.0, overrides: dict[str, Any] | None = None
) -> AsyncIterator[tuple[Bridge, ScriptedProvider]]:
    provider = ScriptedProvider(steps, delay=delay)
    async with running_bridge(provider, overrides) as bridge:
        yield bridge, provider


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0, message: str = "") -> None:
    """Await (never a nested Qt loop) until `condition()` holds; Qt keeps processing events meanwhile."""
    import asyncio

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError(message or f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
