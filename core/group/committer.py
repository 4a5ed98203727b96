"""Offset commits off the reader's hot path.

A reader marks a batch's offsets once the batch is recorded, and goes straight on to the next fetch; this
commits the latest marked offsets in the background (one request covers however many batches were marked
meanwhile). The protocol's order still holds: nothing is committed before it is in the local timeline.
A crash loses at most the last few marks, and redelivered envelopes are no-ops (the inbox keys them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)
RETRY_DELAY = 0.5
COMMIT_INTERVAL = 0.05  # at most this often: each commit is a broker request; nothing waits on one


class Committer:
    """`suspect()` (the node went offline, or a commit failed) makes the next commit first `verify` the
    partitions with the broker: one that lost its state (a restart with memory storage, a topic deleted and
    made again) holds other records at the old offsets. Lost partitions go to `on_lost` (the reader reads
    them from the beginning) instead of being committed. Committed offsets can't tell: a commit retried
    through the outage lands on the new broker."""

    def __init__(
        self,
        consumer: Any,
        name: str,
        verify: Callable[[list[Any]], Awaitable[list[Any]]],
        on_lost: Callable[[list[Any]], Awaitable[None]],
    ) -> None:
        self.consumer = consumer
        self.name = name
        self.verify = verify
        self.on_lost = on_lost
        self.suspected = False
        self._marked: dict[Any, int] = {}  # TopicPartition -> next offset to read
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    def mark(self, offsets: dict[Any, int]) -> None:
        self._marked.update(offsets)
        self._idle.clear()
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"shoal-commit-{self.name}")

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything marked so far is committed (or `timeout` passes)."""
        if self._marked and self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)

    async def close(self, timeout: float = 5.0) -> None:
        await self.flush(timeout)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            marked, self._marked = self._marked, {}
            assigned = self.consumer.assignment()
            offsets = {tp: offset for tp, offset in marked.items() if tp in assigned}
            try:
                if self.suspected and offsets:
                    offsets = await self._check_lost(offsets)
                if offsets:
                    await self.consumer.commit(offsets)
                    self.commits += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.suspected = True
                log.debug("group reader %s: commit failed, retrying: %s", self.name, exc)
                for tp, offset in offsets.items():
                    self._marked.setdefault(tp, offset)  # newer marks win
                self._wake.set()
                await asyncio.sleep(RETRY_DELAY)
                continue
            if not self._marked:
                self._idle.set()
            await asyncio.sleep(COMMIT_INTERVAL)  # marks made meanwhile go in one request

    def suspect(self) -> None:
        self.suspected = True

    async def _check_lost(self, offsets: dict[Any, int]) -> dict[Any, int]:
        """The offsets still to commit, after handing partitions the broker no longer holds to `on_lost`."""
        lost = await self.verify(list(offsets))
        self.suspected = False
        if lost:
            log.warning("group reader %s: the broker lost %d partition(s); reading them again", self.name, len(lost))
            await self.on_lost(lost)
        return {tp: offset for tp, offset in offsets.items() if tp not in lost}


def flush_on_revoke(committer: Committer, forget: Callable[[set[Any]], None] | None = None) -> Any:
    """For work queues: a rebalance listener that commits what was recorded before the partitions go to
    another member, so that member does not read (and run) those tasks again. `forget(partitions)` runs on
    both sides of a rebalance: what the reader knew of a partition it loses says nothing about where it
    resumes when the partition comes back (a peer may have read and committed past it meanwhile), so its lag
    figures must start over. (aiokafka is imported here, on first use, like everywhere in Shoal.)"""
    from aiokafka.abc import ConsumerRebalanceListener

    class FlushOnRevoke(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            await committer.flush()
            if forget is not None:
                forget(set(revoked))

        async def on_partitions_assigned(self, assigned: Any) -> None:
            if forget is not None:
                forget(set(assigned))

    return FlushOnRevoke()
