"""One endless Server-Sent Events feed of the server, followed for as long as the desktop runs.

The connection drops when the server restarts, the laptop sleeps or the Wi-Fi changes: the feed reconnects
with a growing pause (1 s, doubling to 30 s) and reports each change of state, so the window can say the
server is unreachable and, once it is back, reload what may have been missed. `ready` (sent by the server
once its listener is attached) is what counts as connected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from app.remote.http import RemoteClient
from core.errors import NetworkError, ShoalError, classify

log = logging.getLogger(__name__)
FIRST_PAUSE, LONGEST_PAUSE = 1.0, 30.0

EventCallback = Callable[[str, dict[str, Any]], None]
StateCallback = Callable[[bool, ShoalError | None], None]


class LiveFeed:
    def __init__(self, client: RemoteClient, path: str, on_event: EventCallback, on_state: StateCallback) -> None:
        self.path = path
        self.connected = False
        self.ready = asyncio.Event()  # set at the first `ready`
        self._client = client
        self._on_event = on_event
        self._on_state = on_state
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"shoal-remote-feed{self.path}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        pause = FIRST_PAUSE
        while True:
            error: ShoalError
            try:
                async with self._client.stream("GET", self.path) as events:
                    async for name, data in events:
                        if name == "ready":
                            pause = FIRST_PAUSE
                            self._set(True, None)
                            self.ready.set()
                        elif name == "reset":
                            break
                        else:
                            self._deliver(name, data)
                error = NetworkError(f"{self._client.url} closed the live feed {self.path}.", "Reconnecting.")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = classify(exc)
            self._set(False, error)
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)

    def _deliver(self, name: str, data: dict[str, Any]) -> None:
        try:
            self._on_event(name, data)
        except Exception:
            log.exception("handling %s from %s failed", name, self.path)

    def _set(self, connected: bool, error: ShoalError | None) -> None:
        if connected == self.connected and connected:
            return
        self.connected = connected
        if error is not None:
            log.info("live feed %s: %s", self.path, error.message)
        self._on_state(connected, error)
