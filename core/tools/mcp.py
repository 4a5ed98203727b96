"""MCP servers as tools: each configured stdio server is spawned, asked for its tools, and each tool is registered.

The `mcp` SDK is imported lazily so Shoal starts (and its tests run) without it. The SDK's `stdio_client` and
`ClientSession` are anyio task groups, which must be entered and exited by the same task; so every connection
runs in one owner task that enters both, signals readiness, waits for a stop request and exits both. Other
tasks only send requests through the session, which the SDK allows.

Results and tool listings are read as wire-format dicts (`model_dump(by_alias=True)`, camelCase as in the MCP
spec), which keeps this module independent of the SDK's Python attribute names (they changed in mcp 2.x).

Risk tier from the server's tool annotations (hints from the server; configuring a server means trusting them):
  readOnlyHint true                              → READ
  destructiveHint false and idempotentHint true  → WRITE
  anything else (destructive, or not stated)     → HIGH (the MCP spec's defaults assume a destructive tool)

Tool names are the server's own unless two servers (or a built-in) share one; then every MCP copy is registered as
`<server>__<tool>`, so which name a tool gets never depends on start-up order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shlex
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from core import paths
from core.errors import ConfigError, ShoalError, ToolError
from core.tools.registry import RiskTier, Tool, ToolContext, ToolOutput, ToolRegistry, ToolSpec

if TYPE_CHECKING:
    from core.settings import McpServerSettings

log = logging.getLogger(__name__)

State = Literal["stopped", "starting", "connected", "failed", "disabled"]
_NAME_OK = re.compile(r"[^A-Za-z0-9_-]")  # OpenAI function names: ^[A-Za-z0-9_-]{1,64}$
_PIN = "mcp>=1.30,<3"
_MAX_PAGES = 50  # a server that pages tools/list forever must not stall startup


def risk_from_annotations(annotations: dict[str, Any] | None) -> RiskTier:
    """Map MCP tool annotations to a tier; see the module docstring for the table."""
    hints = annotations or {}
    if hints.get("readOnlyHint") is True:
        return RiskTier.READ
    if hints.get("destructiveHint") is False and hints.get("idempotentHint") is True:
        return RiskTier.WRITE
    return RiskTier.HIGH


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside anyio's exception groups, so messages name the cause, not the group."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)] or list(exc.exceptions)
        exc = inner[0]
    return exc


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen, so one nobody awaits any more is not logged as "never retrieved"."""
    if not future.cancelled():
        future.exception()


def _content_text(block: dict[str, Any]) -> str:
    """One content block as text; non-text blocks are described, since the model cannot see them."""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind in ("image", "audio"):
        return f"[{kind} {block.get('mimeType', '?')}, {len(block.get('data', '')) * 3 // 4} bytes, not shown]"
    if kind == "resource_link":
        return f"[resource link {block.get('name', '')}: {block.get('uri', '')}]"
    if kind == "resource":
        res = block.get("resource", {})
        return res["text"] if "text" in res else f"[binary resource {res.get('uri', '')}, {res.get('mimeType', '?')}]"
    return f"[{kind} content, not shown]"


@dataclass(frozen=True)
class McpTimeouts:
    """Seconds. `stop` must exceed the SDK's own shutdown (~4 s to SIGKILL a server that ignores stdin closing)."""

    start: float = 30.0  # spawn + initialize + tools/list
    stop: float = 10.0
    call: float | None = None  # None: the tool executor's own timeout applies


class McpServerConnection:
    """One stdio MCP server: spawn, initialize and list tools on `start()`, shut down on `stop()`."""

    def __init__(self, settings: McpServerSettings, timeouts: McpTimeouts | None = None) -> None:
        self.settings = settings
        self.timeouts = timeouts or McpTimeouts()
        self.state: State = "stopped"
        self.error: ShoalError | None = None
        self._tools: list[dict[str, Any]] = []
        self._session: Any = None  # mcp.ClientSession while connected
        self._task: asyncio.Task[None] | None = None
        self._stop_requested = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stderr: Any = None  # temp file collecting the server's stderr, for error messages

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The server's tools as MCP wire dicts (name, description, inputSchema, annotations)."""
        return list(self._tools)

    async def start(self) -> None:
        """Connect, or raise a ShoalError saying why not. A second call while connected does nothing."""
        async with self._lock:
            if self.state == "connected":
                return
            self.state, self.error = "starting", None
            self._stop_requested = asyncio.Event()
            # The server's stderr, quoted in error messages; closed in _join, so no `with`. Append mode (O_APPEND)
            # keeps the server's writes at the end whatever offset stderr_tail() leaves behind.
            self._stderr = tempfile.TemporaryFile("a+", encoding="utf-8", errors="replace")  # noqa: SIM115
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            ready.add_done_callback(_retrieved)  # even if start() gave up waiting
            self._task = asyncio.create_task(self._own(ready), name=f"mcp:{self.name}")
            try:  # the owner enforces timeouts.start itself; this outer bound only guards against a stuck shutdown
                await asyncio.wait_for(asyncio.shield(ready), self.timeouts.start + self.timeouts.stop)
            except asyncio.CancelledError:
                self._stop_requested.set()
                self.state = "stopped"
                if self._task is not None and not ready.done():
                    self._task.cancel()  # still initializing: it would not see the stop request until its timeout
                await self._join()
                raise
            except Exception as exc:
                self.error, self.state, self._tools = self._explain(_leaf(exc)), "failed", []
                await self._join()
                raise self.error from exc
            self.state = "connected"

    async def stop(self) -> None:
        """Shut the server down; bounded by `timeouts.stop` and safe to call any number of times."""
        async with self._lock:
            self._stop_requested.set()
            await self._join()
            self._tools, self._session = [], None
            if self.state != "failed":
                self.state = "stopped"

    async def _join(self) -> None:
        """Wait for the owner task to exit its contexts; cancel it only if the SDK's own bounded shutdown overran."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), self.timeouts.stop)
            except TimeoutError:
                log.warning(
                    "MCP server %r did not shut down within %.0f s; abandoning it", self.name, self.timeouts.stop
                )
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    async def _own(self, ready: asyncio.Future[None]) -> None:
        """The owner task: enters and exits the SDK's contexts itself, as anyio requires."""
        s = self.settings
        try:
            import anyio
            from mcp import ClientSession, StdioServerParameters
            from mcp.client.stdio import stdio_client

            cwd = paths.expand(s.cwd) if s.cwd else None
            params = StdioServerParameters(command=s.command, args=s.args, env=s.env or None, cwd=cwd)
            async with (
                stdio_client(params, errlog=self._stderr) as (read, write),
                ClientSession(read, write) as session,
            ):
                with anyio.fail_after(self.timeouts.start):
                    await session.initialize()
                    self._tools = await self._list_tools(session)
                self._session = session
                ready.set_result(None)
                await self._stop_requested.wait()
        except BaseException as exc:
            if not ready.done() and isinstance(exc, asyncio.CancelledError):
                ready.cancel()
            elif not ready.done():
                ready.set_exception(exc)  # start() reports it
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning("MCP server %r ended with %r", self.name, _leaf(exc))
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
        finally:
            self._session = None

    @staticmethod
    async def _list_tools(session: Any) -> list[dict[str, Any]]:
        """All pages of tools/list, as wire dicts."""
        from mcp.types import PaginatedRequestParams

        tools: list[dict[str, Any]] = []
        params = None
        for _ in range(_MAX_PAGES):
            result = await session.list_tools(params=params)
            tools += [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in result.tools]
            if not (cursor := result.model_dump(by_alias=True).get("nextCursor")):
                break
            params = PaginatedRequestParams(cursor=cursor)
        return tools

    def stderr_tail(self, limit: int = 2000) -> str:
        """The end of what the server wrote to stderr (empty once stopped), for error messages and diagnostics."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)  # safe while the server writes: the file is in append mode
        return str(self._stderr.read()[-limit:]).strip()

    def _explain(self, exc: BaseException) -> ShoalError:
        """Turn a startup failure into what happened and what to do, naming the setting to fix."""
        if isinstance(exc, ShoalError):
            return exc
        s, head, where = self.settings, f"MCP server {self.name!r}", f"mcp_servers[name={self.name!r}]"
        by_hand = f"Run `{shlex.join([s.command, *s.args])}` by hand"
        if isinstance(exc, ImportError):
            msg, fix = f"The MCP SDK cannot be loaded: {exc}", f"Reinstall Shoal's dependencies ({_PIN})."
        elif isinstance(exc, FileNotFoundError) and s.cwd and not paths.expand(s.cwd).is_dir():
            msg, fix = f"{head} could not start: working directory {s.cwd!r} not found.", f"Check {where}.cwd."
        elif isinstance(exc, FileNotFoundError):
            msg = f"{head} could not start: command {s.command!r} not found."
            fix = f"Check {where}.command; install it or give the full path."
        elif isinstance(exc, PermissionError):
            msg, fix = f"{head} could not start: {s.command!r} is not executable.", f"Check {where}.command."
        elif isinstance(exc, TimeoutError):
            msg = f"{head} did not finish starting within {self.timeouts.start:.0f} s."
            fix = f"{by_hand}: it must speak MCP over stdio. Check {where}.args."
        else:
            last = self.stderr_tail().splitlines()[-1:] or [f"{type(exc).__name__}: {exc}"]
            msg, fix = f"{head} failed during startup: {last[0]}", f"{by_hand} to see why, then fix {where}."
        return ConfigError(msg, fix)

    async def call(self, name: str, args: dict[str, Any]) -> ToolOutput:
        """Call one remote tool; an `isError` result, a timeout or a lost or stopped server raises ToolError."""
        session, owner = self._session, self._task
        if session is None or owner is None:
            raise ToolError(f"MCP server {self.name!r} is not connected.", "Restart Shoal or check `shoal doctor`.")
        # Raced against the owner task: mcp 1.x leaves in-flight requests waiting forever once the session closes.
        request = asyncio.ensure_future(session.call_tool(name, args))
        request.add_done_callback(_retrieved)
        try:
            done, _ = await asyncio.wait({request, owner}, timeout=self.timeouts.call, return_when="FIRST_COMPLETED")
        finally:
            request.cancel()  # no-op once done; otherwise we timed out, the server stopped, or our caller gave up
        if request not in done:
            why = "stopped" if owner in done else f"did not answer within {self.timeouts.call} s"
            raise ToolError(f"MCP server {self.name!r} {why} while running {name!r}.", "Retry, or restart Shoal.")
        try:
            result = request.result()
        except Exception as exc:
            cause = _leaf(exc)
            raise ToolError(
                f"MCP server {self.name!r} failed to run {name!r}: {type(cause).__name__}: {cause}",
                "If the server crashed, restart Shoal; its stderr may say why.",
            ) from exc
        wire = result.model_dump(by_alias=True, exclude_none=True, mode="json")
        text = "\n".join(_content_text(b) for b in wire.get("content", []))
        if wire.get("isError"):
            raise ToolError(text or f"MCP tool {name!r} on {self.name!r} failed without saying why.")
        structured = wire.get("structuredContent")
        if not text and structured is not None:
            text = json.dumps(structured, ensure_ascii=False)
        data = {"server": self.name, "tool": name, "structured": structured}
        return ToolOutput(text=text or "(no output)", data=data)


class McpTool(Tool):
    """One remote tool, registered under `spec.name` (which may carry a `server__` prefix to avoid a clash)."""

    def __init__(self, connection: McpServerConnection, remote: dict[str, Any], name: str) -> None:
        self.connection = connection
        self.remote_name: str = remote["name"]
        schema = remote.get("inputSchema") or {}
        self.spec = ToolSpec(
            name=name,
            description=remote.get("description") or remote.get("title") or f"{self.remote_name} ({connection.name})",
            parameters=schema if schema.get("type") == "object" else {"type": "object", "properties": {}},
            risk=risk_from_annotations(remote.get("annotations")),
            source=f"mcp:{connection.name}",
        )

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        return await self.connection.call(self.remote_name, args)

    def approval_summary(self, args: dict[str, Any]) -> str:
        return f"MCP server {self.connection.name!r}: {self.remote_name}({json.dumps(args, ensure_ascii=False)})"


@dataclass(frozen=True)
class McpServerStatus:
    """What `shoal doctor` and the UI show per server."""

    name: str
    state: State
    tool_count: int
    error: ShoalError | None = None


class McpManager:
    """All configured servers: connects them concurrently, registers their tools, and isolates failures."""

    def __init__(
        self, servers: Sequence[McpServerSettings], registry: ToolRegistry, timeouts: McpTimeouts | None = None
    ) -> None:
        self.registry = registry
        self.connections: dict[str, McpServerConnection] = {}
        self._config_errors: dict[str, ShoalError] = {}
        self._disabled: list[str] = []
        for s in servers:
            if s.name in self.connections or s.name in self._disabled:
                self._config_errors[s.name] = ConfigError(
                    f"Two MCP servers are named {s.name!r}; only the first is used.",
                    "Give each entry of mcp_servers a unique name.",
                )
            elif s.enabled:
                self.connections[s.name] = McpServerConnection(s, timeouts)
            else:
                self._disabled.append(s.name)
        self.errors: dict[str, ShoalError] = dict(self._config_errors)
        self._started = False

    async def start(self) -> None:
        """Connect every enabled server at once; failures land in `errors`, the rest are registered."""
        if self._started:
            return
        self._started = True
        self.errors = dict(self._config_errors)
        results = await asyncio.gather(*(c.start() for c in self.connections.values()), return_exceptions=True)
        for conn, result in zip(self.connections.values(), results, strict=True):
            if isinstance(result, ShoalError):
                self.errors[conn.name] = result
            elif isinstance(result, BaseException):
                raise result  # a bug or a cancellation, not a server problem
        self._register()

    def _register(self) -> None:
        """Register tools under their own names, or `server__tool` where two servers or a built-in share a name."""
        live = [c for c in self.connections.values() if c.state == "connected"]
        counts = Counter(_NAME_OK.sub("_", t["name"]) for c in live for t in c.tools)
        others = {t.spec.name for t in self.registry.all() if not t.spec.source.startswith("mcp:")}
        for conn in live:
            for remote in conn.tools:
                bare = _NAME_OK.sub("_", remote["name"])
                clash = counts[bare] > 1 or bare in others  # every copy is prefixed, so no server "wins" by order
                name = f"{_NAME_OK.sub('_', conn.name)}__{bare}" if clash else bare
                try:
                    self.registry.register(McpTool(conn, remote, name[:64]))
                except ValueError as exc:
                    log.warning("MCP tool %r from %r not registered: %s", remote["name"], conn.name, exc)

    async def stop(self) -> None:
        """Unregister every MCP tool, then stop all servers concurrently; idempotent."""
        for conn in self.connections.values():
            self.registry.unregister_source(f"mcp:{conn.name}")
        await asyncio.gather(*(c.stop() for c in self.connections.values()))
        self._started = False

    def status(self) -> list[McpServerStatus]:
        """Per server: state, how many tools it offers and, if it failed, why."""
        rows = [
            McpServerStatus(c.name, c.state, len(c.tools), self.errors.get(c.name) or c.error)
            for c in self.connections.values()
        ]
        return rows + [McpServerStatus(name, "disabled", 0, self.errors.get(name)) for name in self._disabled]
