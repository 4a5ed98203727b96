"""The facade every front end uses: async commands in, typed events out.

`AgentCore` owns the database, the tool registry (built-ins and MCP servers) and the provider, with an
explicit, idempotent lifecycle. A `Turn` runs in its own task so a slow reader never stalls the model,
and `Turn.cancel()` stops it cleanly (the stop is recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from core import events as ev
from core.agent.loop import Agent
from core.errors import ShoalError, classify
from core.history import History
from core.policy.service import Policy
from core.providers.base import Provider
from core.providers.factory import build_provider, generation_options
from core.settings import Settings
from core.timeline.sessions import SessionInfo
from core.tools.builtin import builtin_tools
from core.tools.executor import ToolExecutor
from core.tools.registry import ApprovalCallback, ToolContext, ToolRegistry, ToolSpec, deny_all

log = logging.getLogger(__name__)
_END = object()
# What a model is loaded or connected with: changing anything else (temperature, max_tokens…) needs no reload.
_LOAD_FIELDS = ("provider", "path", "n_ctx", "n_threads", "n_gpu_layers", "chat_format", "base_url", "name",
                "key_name", "timeout", "tool_call_tags")  # fmt: skip


class QueuedTurn:
    """What a front end holds of a running turn: its events, read from a queue its own task fills.

    The task (a local agent turn, or a remote server's stream in app/remote/) runs on its own, so a slow
    reader never stalls it. A reader that stops reading (it was cancelled, or broke out of the loop) cancels
    the task, and the cancellation is recorded. Subclasses start the task with `_run`.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.final: ev.TurnFinished | ev.TurnFailed | None = None

    def _run(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        self._task = asyncio.create_task(work, name=name)
        # Queued on completion whatever happens, even for a task cancelled before its first step.
        self._task.add_done_callback(lambda _task: self._queue.put_nowait(_END))
        return self._task

    @property
    def _running(self) -> asyncio.Task[None]:
        assert self._task is not None, "a turn's task is started in its constructor"
        return self._task

    def __aiter__(self) -> AsyncIterator[ev.AgentEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[ev.AgentEvent]:
        try:
            while True:
                item = await self._queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise classify(item)
                yield item
        finally:
            if not self._running.done():  # the reader went away: stop the turn rather than leave it running
                self._running.cancel()
                await asyncio.shield(self.result())

    def on_done(self, callback: Callable[[], object]) -> None:
        self._running.add_done_callback(lambda _task: callback())

    @property
    def done(self) -> bool:
        return self._running.done()

    def cancel(self) -> None:
        self._running.cancel()

    async def result(self) -> ev.TurnFinished | ev.TurnFailed | None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._running)
        return self.final


class Turn(QueuedTurn):
    """One running turn of the local agent. Iterate it for events; `cancel()` stops it; `result()` waits."""

    def __init__(self, source: AsyncIterator[ev.AgentEvent]) -> None:
        super().__init__()
        self._run(self._pump(source), "shoal-turn")

    async def _pump(self, source: AsyncIterator[ev.AgentEvent]) -> None:
        try:
            async for event in source:
                if isinstance(event, ev.TurnFinished | ev.TurnFailed):
                    self.final = event
                self._queue.put_nowait(event)
        except asyncio.CancelledError:
            pass  # the agent recorded and emitted the cancellation before re-raising
        except Exception as exc:  # an error before the turn started (empty message, storage down)
            self._queue.put_nowait(exc)


class AgentCore:
    """Start it (or `async with` it), then open sessions and send messages."""

    def __init__(
        self,
        settings: Settings,
        *,
        provider: Provider | None = None,
        approve: ApprovalCallback = deny_all,
        embedder: Any = None,
        config_file: Path | None = None,
    ) -> None:
        """`embedder`: a core.memory.embed_process.EmbeddingClient to share (tests: one model process for many
        cores); by default the memory starts its own when first used. `config_file`: the config.toml in use
        (policy.toml is read from beside it unless policy.file says otherwise)."""
        self.settings = settings
        self._embedder = embedder
        self.history = History(settings)
        self.db = self.history.db
        self.timeline = self.history.timeline
        self.sessions = self.history.sessions
        self.policy = Policy(self.db, self.timeline, config_file=config_file)  # rules read in start()
        self._turns: set[Turn] = set()
        self._background: set[asyncio.Future[None]] = set()
        self.registry = ToolRegistry()
        self.approve = approve
        self._provider = provider
        self._provider_given = provider is not None  # a provider handed in (tests) survives reconfiguring
        self._mcp: Any = None
        self.group: Any = None  # core.group.runtime.GroupRuntime while group mode is on
        self.memory: Any = None  # core.memory.service.Memory when memory.enabled (made in start: it imports numpy)
        self.schedule: Any = None  # core.schedule.Scheduler (made in start); its runner only via start_scheduler()
        self._run_schedule = False  # a long-running front end asked for the runner (start_scheduler)
        self._agent: Agent | None = None
        self._started = False

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self.policy.load(self.settings)  # a bad policy file stops the start like any configuration error
        await self.db.start()
        try:
            from core.schedule import Scheduler

            self.schedule = Scheduler(self)
            workspace = self.settings.tools.workspace_path()
            workspace.mkdir(parents=True, exist_ok=True)
            if self.settings.memory.enabled:
                from core.memory.service import Memory

                self.memory = Memory(self.db, self.settings.memory, client=self._embedder)
                await self.memory.start()
            for tool in builtin_tools(self.memory):
                self.registry.register(tool)
            for name in self.settings.tools.disabled:
                self.registry.set_enabled(name, False)
            await self._start_mcp()
            if self.settings.group.enabled:
                await self.join_group()
        except BaseException:
            await asyncio.shield(self._release())
            raise
        self._started = True

    async def _start_mcp(self) -> None:
        servers = [s for s in self.settings.mcp_servers if s.enabled]
        if not servers:
            return
        from core.tools.mcp import McpManager

        self._mcp = McpManager(servers, self.registry)
        await self._mcp.start()
        for name, error in self._mcp.errors.items():
            log.warning("MCP server %s unavailable: %s", name, error.describe())

    async def stop(self, timeout: float = 15.0) -> None:
        """Cancel running turns (each records its stop), then release MCP servers, the model and the database."""
        if not self._started:
            return
        self._started = False
        turns = [t for t in self._turns if not t.done]
        for turn in turns:
            turn.cancel()
        if turns:
            await asyncio.wait([asyncio.ensure_future(t.result()) for t in turns], timeout=timeout)
        if self._background:  # models released after their last turn
            await asyncio.wait(list(self._background), timeout=timeout)
        await self._release()

    async def join_group(
        self, *, ephemeral: bool = False, identity: Any = None, reuse_session: bool = False, session_needed: float = 0
    ) -> Any:
        """Attach to the configured Kafka group. Returns at once: connecting goes on in the background
        (see `GroupNode`), and local chat works whatever the broker does. `reuse_session`, `session_needed`:
        see GroupRuntime."""
        if self.group is None:
            from core.group.runtime import GroupRuntime

            runtime = GroupRuntime(
                self,
                self.settings.group,
                ephemeral=ephemeral,
                identity=identity,
                reuse_session=reuse_session,
                session_needed=session_needed,
            )
            await runtime.start()
            self.group = runtime
            self._agent = None  # the agent's tool list now includes delegate / ask_peer
        return self.group

    async def leave_group(self, timeout: float = 5.0) -> None:
        runtime, self.group = self.group, None
        if runtime is not None:
            await runtime.stop(timeout)
            self._agent = None

    async def start_scheduler(self) -> None:
        """Run scheduled prompts while this core runs (the desktop app, `shoal serve`), if schedule.enabled; a
        one-shot command never calls it, so `shoal agent` never runs scheduled jobs. Follows the setting later."""
        self._run_schedule = True
        if self.schedule is not None and self.settings.schedule.enabled:
            await self.schedule.start()

    async def _release(self) -> None:
        if self.schedule is not None:  # before the database: a cancelled run records its end
            try:
                await self.schedule.stop()
            except Exception:
                log.exception("stopping the scheduler failed")
        await self.leave_group()
        if self._mcp is not None:
            try:
                await self._mcp.stop()
            except Exception:
                log.exception("stopping MCP servers failed")
            self._mcp = None
        if self._provider is not None:
            try:
                await self._provider.stop()
            except Exception:
                log.exception("stopping the model failed")
        await self.registry.aclose()
        self.registry = ToolRegistry()
        self._agent = None
        if self.memory is not None:
            try:
                await self.memory.stop()
            except Exception:
                log.exception("stopping memory failed")
            self.memory = None
        await self.db.stop()

    async def __aenter__(self) -> AgentCore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the model -------------------------------------------------------------------------

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            self._provider = build_provider(self.settings.model)
        return self._provider

    async def apply_settings(self, settings: Settings, *, reconnect: bool = False) -> None:
        """Use changed settings from the next turn on. The model is released only if what it was loaded or
        connected with changed (generation options need no reload); `reconnect` also renews an endpoint
        connection, whose API key lives in the keyring rather than in the settings. A model still in use by
        a running turn is released when that turn ends. Changed policy settings re-read the policy file first
        (a bad file raises ConfigError and changes nothing)."""
        if (settings.policy, settings.tools.auto_approve) != (self.settings.policy, self.settings.tools.auto_approve):
            self.policy.load(settings)
        old, new = self.settings.model, settings.model
        reload = any(getattr(old, f) != getattr(new, f) for f in _LOAD_FIELDS)
        reload = reload or (reconnect and new.provider == "openai")
        if reload and not self._provider_given and self._provider is not None:
            provider, self._provider = self._provider, None
            running = [t for t in self._turns if not t.done]
            if running:
                task = asyncio.ensure_future(self._release_after(provider, running))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            else:
                await provider.stop()
        for spec in self.registry.specs(enabled_only=False):
            self.registry.set_enabled(spec.name, spec.name not in settings.tools.disabled)
        regroup = settings.group != self.settings.group
        self.settings = settings
        self._agent = None
        if self._run_schedule and self._started and self.schedule is not None:
            await (self.schedule.start() if settings.schedule.enabled else self.schedule.stop())
        if regroup and self._started:
            await self.leave_group()
            if settings.group.enabled:
                await self.join_group()

    async def _release_after(self, provider: Provider, turns: list[Turn]) -> None:
        await asyncio.gather(*(t.result() for t in turns), return_exceptions=True)
        await provider.stop()

    async def load_model(self) -> None:
        """Load or connect now (otherwise it happens on the first message)."""
        await self.provider.start()

    @property
    def agent(self) -> Agent:
        if self._agent is None:
            executor = ToolExecutor(self.registry, self.settings.tools, self.approve, self.policy.engine)
            context = ToolContext(self.settings.tools.workspace_path(), "", self.settings.tools)
            self._agent = Agent(
                self.provider,
                executor,
                self.timeline,
                self.sessions,
                self.settings.agent,
                generation_options(self.settings.model),
                context,
                recall=self._recall if self.memory is not None else None,
                policy=self.policy.gate(self.provider, self.settings.model, self.approve),
            )
        return self._agent

    def reload_policy(self) -> None:
        """Re-read the policy file (after editing it); from the next turn on. Raises ConfigError naming the line."""
        self.policy.load(self.settings)
        self._agent = None

    async def _recall(self, question: str, remote: bool) -> Any:
        from core.memory.recall_context import recall_for

        return await recall_for(self.memory, question, remote=remote) if self.memory is not None else None

    # --- commands --------------------------------------------------------------------------

    async def new_session(self, title: str = "") -> SessionInfo:
        return await self.sessions.create(
            title=title, model=self.provider.model_id, system_prompt=self.settings.agent.system_prompt
        )

    def send(
        self, session_id: str, text: str, *, regenerate: bool = False, label: str | None = None, **remote: Any
    ) -> Turn:
        """Start a turn; iterate the returned Turn for its events. `regenerate` answers the last question again.
        `label`: the message's sensitivity label (public, internal, confidential, secret; else the policy's
        classifier rules or default label). A task from a peer passes `parent`, `correlation_id`, `depth` and
        `requester` (see `Agent.run_turn`); other front ends may pass `requester` ("schedule", "api")."""
        turn = Turn(self.agent.run_turn(session_id, text, regenerate=regenerate, label=label, **remote))
        self._turns.add(turn)
        turn.on_done(lambda: self._turns.discard(turn))
        return turn

    def tool_specs(self) -> list[ToolSpec]:
        return self.registry.specs(enabled_only=False)

    def set_tool_enabled(self, name: str, enabled: bool) -> None:
        """Takes effect from the next model call (persisting it is the settings' job: tools.disabled)."""
        self.registry.set_enabled(name, enabled)

    def tool_enabled(self, name: str) -> bool:
        return self.registry.is_enabled(name)

    async def export_session(self, session_id: str) -> dict[str, Any]:
        """The session as data; `core.export.to_markdown` / `to_json` render it."""
        from core.export import session_data

        return await session_data(self.sessions, self.timeline, session_id)

    def mcp_status(self) -> list[Any]:
        """One `McpServerStatus` per configured server (connected, failed, stopped, disabled)."""
        return self._mcp.status() if self._mcp is not None else []

    def mcp_errors(self) -> dict[str, ShoalError]:
        return dict(self._mcp.errors) if self._mcp is not None else {}
