"""The one QObject between the agent core and the widgets.

Widgets never touch the core's objects directly: they call the bridge's commands (which schedule
coroutines on the qasync loop and return at once) or await its queries from `qasync.asyncSlot`
handlers, and they listen to its signals. Core events arrive as Qt signals carrying the core's own
frozen dataclasses (`core.events`, `core.timeline.store.Event`), so widgets render exactly what
the core recorded. Group mode (state, roster, connecting, dispatching) lives in `bridge.group`, a
`ui.group_bridge.GroupBridge` this bridge owns; long-term memory and the document index in `bridge.memory`,
a `ui.memory_bridge.MemoryBridge`; scheduled prompts in `bridge.schedule`, a `ui.schedule_bridge.ScheduleBridge`;
the policy (rules, reload, quota usage, checks) in `bridge.policy`, a `ui.policy_bridge.PolicyBridge`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

from core import events as ev
from core.approvals import ApprovalBroker, PendingApproval
from core.errors import ShoalError, classify
from core.service import AgentCore, Turn
from core.settings import LoadedSettings
from core.timeline.sessions import SearchHit, SessionInfo, TranscriptEntry
from core.timeline.store import Event, EventNode
from core.tools.registry import ApprovalDecision, ToolSpec
from ui.group_bridge import GroupBridge
from ui.memory_bridge import MemoryBridge
from ui.policy_bridge import PolicyBridge
from ui.schedule_bridge import ScheduleBridge

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolRow:
    spec: ToolSpec
    enabled: bool


class Bridge(QObject):
    # --- signals (all emitted on the GUI thread) ---------------------------------------------
    sessionsChanged = Signal()  # the list of sessions changed (new, renamed, pinned, deleted, new activity)
    turnStarted = Signal(str, str)  # session_id, trace_id
    assistantDelta = Signal(str, str)  # session_id, text: streamed answer text
    agentEvent = Signal(str, object)  # session_id, any core.events dataclass (every event of a turn)
    turnEnded = Signal(str, object)  # session_id, TurnFinished | TurnFailed | None
    busyChanged = Signal(str, bool)  # session_id, a turn is running
    timelineEvent = Signal(object)  # core.timeline.store.Event, live, after commit
    approvalsChanged = Signal()  # pending approvals were added or resolved
    toolsChanged = Signal()
    modelState = Signal(str, str)  # "loading" | "ready" | "error", detail
    errorRaised = Signal(dict)  # ShoalError.to_dict() for failures outside a turn

    def __init__(
        self,
        core: AgentCore,
        broker: ApprovalBroker,
        parent: QObject | None = None,
        *,
        loaded: LoadedSettings | None = None,
    ) -> None:
        super().__init__(parent)
        self.core = core
        self.broker = broker
        self.group = GroupBridge(core, loaded, self)  # `loaded`: where connecting to a group saves its settings
        self.memory = MemoryBridge(core, self)
        self.schedule = ScheduleBridge(core, self, self)
        self.policy = PolicyBridge(core, self)
        self._turns: dict[str, Turn] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        core.timeline.add_listener(self.timelineEvent.emit)
        broker.add_listener(lambda _change, _item: self.approvalsChanged.emit())

    # --- plumbing ----------------------------------------------------------------------------

    def _spawn(self, coro: Any, what: str) -> asyncio.Task[Any]:
        """Run `coro` on the loop; a failure is reported through `errorRaised`, never lost."""

        async def guarded() -> Any:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = classify(exc)
                log.warning("%s failed: %s", what, error.message, exc_info=not isinstance(exc, ShoalError))
                self.errorRaised.emit(error.to_dict())
                return None

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait for every scheduled command and running turn (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- the model ---------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        try:
            return self.core.provider.model_id
        except ShoalError:
            return "no model"

    def load_model(self) -> asyncio.Task[Any]:
        async def load() -> None:
            self.modelState.emit("loading", self.model_name)
            try:
                await self.core.load_model()
            except ShoalError as exc:
                self.modelState.emit("error", exc.describe())
                raise
            self.modelState.emit("ready", self.model_name)

        return self._spawn(load(), "loading the model")

    # --- turns -------------------------------------------------------------------------------

    def is_busy(self, session_id: str) -> bool:
        turn = self._turns.get(session_id)
        return (turn is not None and not turn.done) or self.schedule.is_busy(session_id)  # or a scheduled run

    def send(self, session_id: str, text: str, *, label: str | None = None) -> asyncio.Task[Any] | None:
        """Start a turn in `session_id`; None if one is already running there. `label`: the message's
        sensitivity label as the person chose it (None: the policy's classifier rules or default label)."""
        return self._start(session_id, text, regenerate=False, label=label)

    def regenerate(self, session_id: str) -> asyncio.Task[Any] | None:
        """Answer the session's last question again."""
        return self._start(session_id, "", regenerate=True)

    def stop_all(self) -> None:
        """Stop every running turn (each records its stop); `drain()` waits for them."""
        for turn in list(self._turns.values()):
            turn.cancel()

    def stop(self, session_id: str) -> None:
        turn = self._turns.get(session_id)
        if turn is not None:
            turn.cancel()
        self.schedule.stop_session(session_id)  # a scheduled run writing into the thread stops too

    def _start(
        self, session_id: str, text: str, *, regenerate: bool, label: str | None = None
    ) -> asyncio.Task[Any] | None:
        if self.is_busy(session_id):
            return None
        turn = self.core.send(session_id, text, regenerate=regenerate, **({"label": label} if label else {}))
        self._turns[session_id] = turn
        self.busyChanged.emit(session_id, True)
        return self._spawn(self._follow(session_id, turn), "the turn")

    async def _follow(self, session_id: str, turn: Turn) -> None:
        try:
            async for event in turn:
                if isinstance(event, ev.TurnStarted):
                    self.turnStarted.emit(session_id, event.trace_id)
                elif isinstance(event, ev.AssistantDelta):
                    self.assistantDelta.emit(session_id, event.text)
                self.agentEvent.emit(session_id, event)
        finally:
            if self._turns.get(session_id) is turn:  # a newer turn may already own this session
                del self._turns[session_id]
                self.busyChanged.emit(session_id, False)
            self.turnEnded.emit(session_id, turn.final)
            self.sessionsChanged.emit()

    # --- sessions ----------------------------------------------------------------------------

    async def sessions(self, limit: int = 500) -> list[SessionInfo]:
        return await self.core.sessions.recent(limit)

    async def new_session(self, title: str = "") -> SessionInfo:
        try:
            info = await self.core.new_session(title)
        except ShoalError as exc:  # said where the person is looking (a remote server down, a full disk)
            self.errorRaised.emit(exc.to_dict())
            raise
        self.sessionsChanged.emit()
        return info

    async def rename_session(self, session_id: str, title: str) -> None:
        await self.core.sessions.rename(session_id, title.strip() or "Untitled")
        self.sessionsChanged.emit()

    async def pin_session(self, session_id: str, pinned: bool) -> None:
        await self.core.sessions.set_pinned(session_id, pinned)
        self.sessionsChanged.emit()

    async def delete_session(self, session_id: str) -> None:
        turn = self._turns.get(session_id)
        if turn is not None:  # let the turn record its stop before its session goes
            turn.cancel()
            await turn.result()
        await self.core.sessions.delete(session_id)
        self.sessionsChanged.emit()

    async def transcript(self, session_id: str) -> list[TranscriptEntry]:
        return await self.core.sessions.transcript(session_id)

    async def search(self, text: str, limit: int = 100) -> list[SearchHit]:
        return await self.core.sessions.search(text, limit)

    async def export(self, session_id: str, fmt: str) -> str:
        """The session rendered as "markdown" or "json"."""
        from core.export import to_json, to_markdown

        data = await self.core.export_session(session_id)
        return to_markdown(data) if fmt == "markdown" else to_json(data)

    # --- the timeline ------------------------------------------------------------------------

    async def traces(self, session_id: str | None, limit: int = 50) -> list[list[EventNode]]:
        """Recent turns (oldest first), each as its event tree."""
        roots = await self.core.timeline.traces(session_id, limit)
        return [await self.core.timeline.trace_tree(r.trace_id) for r in reversed(roots)]

    async def trace(self, trace_id: str) -> list[EventNode]:
        return await self.core.timeline.trace_tree(trace_id)

    async def get_event(self, event_id: str) -> Event | None:
        """One timeline event by id (not `event`: that name is QObject's event handler)."""
        return await self.core.timeline.get(event_id)

    async def walk_to_origin(self, event_id: str) -> list[Event]:
        return await self.core.timeline.walk_to_origin(event_id)

    # --- tools and approvals -----------------------------------------------------------------

    def tools(self) -> list[ToolRow]:
        return [ToolRow(spec, self.core.tool_enabled(spec.name)) for spec in self.core.tool_specs()]

    def set_tool_enabled(self, name: str, enabled: bool) -> None:
        """For this run; the settings dialog makes it permanent (tools.disabled)."""
        self.core.set_tool_enabled(name, enabled)
        self.toolsChanged.emit()

    def pending_approvals(self) -> list[PendingApproval]:
        return list(self.broker.pending.values())

    def resolve_approval(self, approval_id: str, decision: ApprovalDecision) -> bool:
        return self.broker.resolve(approval_id, decision)
