"""A real `shoal serve` (uvicorn on a free loopback port) around a real core with a scripted model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from app.serve.server import Listening, serve
from app.serve.state import ServeState
from core.approvals import ApprovalBroker
from core.providers.scripted import ScriptedProvider, Step
from core.service import AgentCore
from core.settings import load_settings


@dataclass
class Served:
    url: str
    token: str | None
    core: AgentCore
    broker: ApprovalBroker
    provider: ScriptedProvider
    state: ServeState

    def client(self, *, token: str | None = "", timeout: float = 30.0) -> httpx.AsyncClient:
        """A client sending the server's token (pass `token=None` for none, or another string)."""
        use = self.token if token == "" else token
        headers = {"Authorization": f"Bearer {use}"} if use else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)


@asynccontextmanager
async def served(
    steps: Sequence[Step] = (),
    *,
    overrides: dict[str, Any] | None = None,
    delay: float = 0.0,
    provider: ScriptedProvider | None = None,
) -> AsyncIterator[Served]:
    settings = {"serve": {"port": 0}, "memory": {"enabled": False}}
    for section, values in (overrides or {}).items():
        settings[section] = {**settings.get(section, {}), **values}
    loaded = load_settings(None, settings)
    model = provider or ScriptedProvider(steps, delay=delay)
    broker = ApprovalBroker()
    core = AgentCore(loaded.settings, provider=model, approve=broker.ask)
    await core.start()
    ready: asyncio.Future[Listening] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(loaded, core, broker, on_ready=ready.set_result))
    try:
        done, _ = await asyncio.wait({ready, task}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            await task  # raises what stopped it
        listening = ready.result()
        yield Served(listening.url, listening.access.token, core, broker, model, listening.state)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await core.stop()
