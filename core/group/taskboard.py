"""Who is on which task: the tasks this agent is working on for the group, and their `step n of m`.

`TaskBoard` (one per node, `node.board`) is what the roster card's `tasks` field shows: each task taken from a
peer, its requester, the step it is on and since when. A change re-announces the card soon (debounced: a
burst of steps makes one announcement, at most one per `min_gap`), so every member sees it within a fraction
of a second instead of at the next heartbeat.

`StepReporter` (one per running task) takes the `step n of m` a skill runner reports (`SkillCall.step`) and
sends it to the requester as `working` progress, throttled: the first step goes at once, later ones at most
every `STEP_INTERVAL`, always the latest (a step skipped over is not worth a message).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.timeline.ids import now_iso

if TYPE_CHECKING:
    from core.group.node import GroupNode

log = logging.getLogger(__name__)
ANNOUNCE_DEBOUNCE = 0.1  # seconds a change waits for the next one before the card goes out
ANNOUNCE_MIN_GAP = 1.0  # at most one change-driven announcement per this long (or per heartbeat, if shorter)
STEP_INTERVAL = 0.25  # at most one step progress envelope per task per this long
MAX_CARD_TASKS = 20
MESSAGE_CHARS = 200


@dataclass
class BoardTask:
    taskid: str
    skill: str
    requester: dict[str, str]  # {"agentid", "name"}
    startedat: str = field(default_factory=now_iso)
    started: float = field(default_factory=time.monotonic)
    step: int | None = None
    steps: int | None = None
    message: str = ""

    def card(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "taskid": self.taskid,
            "skill": self.skill,
            "requester": self.requester,
            "startedat": self.startedat,
            "elapsedms": int((time.monotonic() - self.started) * 1000),
        }
        if self.step is not None:
            out["step"] = self.step
        if self.steps is not None:
            out["steps"] = self.steps
        if self.message:
            out["message"] = self.message
        return out


class TaskBoard:
    def __init__(self, node: GroupNode) -> None:
        self.node = node
        self.tasks: dict[str, BoardTask] = {}
        self._pending: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task[None] | None = None
        self._last = 0.0  # time.monotonic() of the last change-driven announcement

    def start(self, taskid: str, skill: str, requester: dict[str, Any]) -> None:
        who = {"agentid": str(requester.get("agentid") or "")[:64], "name": str(requester.get("name") or "")[:100]}
        self.tasks[taskid] = BoardTask(taskid, skill, who)
        self._changed()

    def update(self, taskid: str, step: int | None, steps: int | None, message: str) -> None:
        task = self.tasks.get(taskid)
        if task is None:
            return
        task.step, task.steps, task.message = step, steps, message[:MESSAGE_CHARS]
        self._changed()

    def finish(self, taskid: str) -> None:
        if self.tasks.pop(taskid, None) is not None:
            self._changed()

    def cards(self) -> list[dict[str, Any]]:
        """The card's `tasks` field: oldest first, at most MAX_CARD_TASKS."""
        ordered = sorted(self.tasks.values(), key=lambda t: t.started)
        return [task.card() for task in ordered[:MAX_CARD_TASKS]]

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None

    def _changed(self) -> None:
        """Announce the card soon: after ANNOUNCE_DEBOUNCE, and no sooner than min_gap after the last one."""
        if self._pending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a test building cards): the next heartbeat carries it
        gap = min(ANNOUNCE_MIN_GAP, self.node.settings.heartbeat_interval)
        delay = max(ANNOUNCE_DEBOUNCE, self._last + gap - time.monotonic())
        self._pending = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._pending = None
        if self.node.state != "online":
            return  # the first heartbeat after connecting carries the card
        self._last = time.monotonic()
        self._sending = asyncio.ensure_future(self._announce())

    async def _announce(self) -> None:
        try:
            await self.node.announce()
        except Exception as exc:  # the outbox keeps trying; a later change or heartbeat sends a newer card
            log.debug("group: announcing a task change failed: %s", exc)


Send = Callable[[dict[str, Any]], Awaitable[None]]


class StepReporter:
    """Throttled `step n of m` progress of one task; `report` may be called from the runner at any rate."""

    def __init__(self, send: Send, on_step: Callable[[int | None, int | None, str], None]) -> None:
        self._send = send
        self._on_step = on_step
        self._latest: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending = False
        self._closed = False

    def report(self, step: int | None, steps: int | None, message: str = "") -> None:
        if self._closed:
            return
        data: dict[str, Any] = {"message": message[:MESSAGE_CHARS]}
        if step is not None:
            data["step"] = max(0, int(step))
        if steps is not None:
            data["steps"] = max(0, int(steps))
        self._latest = data
        self._on_step(data.get("step"), data.get("steps"), data["message"])
        if self._task is None:
            self._task = asyncio.ensure_future(self._pump())
        self._wake.set()

    async def _pump(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            data, self._latest = self._latest, None
            if data is not None:
                self._sending = True
                try:
                    await self._send(data)
                except Exception as exc:
                    log.debug("group: sending step progress failed: %s", exc)
                finally:
                    self._sending = False
            if not self._closed:
                await asyncio.sleep(STEP_INTERVAL)

    async def close(self) -> None:
        """Stop before the result goes out (a step not sent yet is stale by then). A send under way is let
        finish: cut off half-way, it could leave its envelope written but not handed to the outbox sender."""
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        if not self._sending:
            task.cancel()
        await asyncio.wait([task])  # never raises the pump's own cancellation
