"""Fire-and-forget coroutines from Qt slots, kept alive until done and never failing silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)
_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(coro)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


async def settle(timeout: float = 5.0) -> None:
    """Wait (bounded) for the background tasks started so far, e.g. the last reloads before shutdown."""
    if _running:
        await asyncio.wait(list(_running), timeout=timeout)


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())
