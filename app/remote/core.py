"""`RemoteCore`: what the desktop's bridges use of `AgentCore`, answered by a remote `shoal serve`.

No model, database, tool or MCP server runs here: the server has them. `start()` checks the server
(/api/status) and says exactly what is wrong when it cannot be used (unreachable, wrong token, untrusted
certificate, not a Shoal server), then loads the tool list and opens two live feeds: the timeline (the
timeline pane updates as the server records steps) and approvals (a question the server asks appears in
the tools pane, whoever started the turn). Tool switches are shown at once and sent in the background; if
the server refuses, the switch flips back and the reason is reported.

Front ends hear of the connection through `on_connection(connected, error)`, of failures outside any call
through `on_error`, and of a changed tool list through `on_tools_changed`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.remote import decode
from app.remote.approvals import ApprovalMirror
from app.remote.facades import RemoteSessions, RemoteTimeline
from app.remote.http import SETTINGS, RemoteClient, ServerError, TokenRefused, missing_token, normalise_url
from app.remote.live import LiveFeed
from app.remote.memory import RemoteMemory
from app.remote.schedule import RemoteSchedule
from app.remote.turn import RemoteTurn
from core.approvals import ApprovalBroker
from core.errors import ConfigError, ShoalError, classify
from core.secrets import get_token, token_env_var
from core.settings import Settings
from core.timeline.sessions import SessionInfo
from core.tools.registry import ToolSpec

log = logging.getLogger(__name__)
MEMORY_TOOLS = frozenset({"remember", "forget"})
READY_WAIT = 10.0  # at most this long for the live feeds at start; they keep trying in the background


@dataclass
class RemoteModel:
    """Stands in for `core.provider`: the bridge shows its `model_id` in the status bar."""

    model_id: str = ""


class RemoteCore:
    def __init__(self, settings: Settings, broker: ApprovalBroker, *, token: str | None = None) -> None:
        """`token`: use this bearer token instead of the one stored under `remote.key_name` (tests, Test)."""
        self.settings = settings
        self.broker = broker
        self.provider = RemoteModel()
        self.status: dict[str, Any] = {}  # the server's last /api/status
        self.group: Any = None  # group mode runs on the server, not here
        self.memory: RemoteMemory | None = None
        self.schedule: RemoteSchedule | None = None
        self.sessions = RemoteSessions(self._need_client)
        self.timeline = RemoteTimeline(self._need_client)
        self._provider_given = True  # never the first-run model dialog: the server has the model
        self._token = token
        self._client: RemoteClient | None = None
        self._mirror: ApprovalMirror | None = None
        self._feeds: list[LiveFeed] = []
        self._tools: dict[str, tuple[ToolSpec, bool]] = {}
        self._turns: set[RemoteTurn] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connection: list[Callable[[bool, ShoalError | None], None]] = []
        self._errors: list[Callable[[ShoalError], None]] = []
        self._tools_changed: list[Callable[[], None]] = []
        self._connected = False
        self._started = False

    # --- what the desktop listens to -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._client.url if self._client else self.settings.remote.url.strip().rstrip("/")

    @property
    def connected(self) -> bool:
        return self._connected

    def on_connection(self, callback: Callable[[bool, ShoalError | None], None]) -> None:
        """`callback(connected, error)` whenever the live connection comes or goes (error: why it went)."""
        self._connection.append(callback)

    def on_error(self, callback: Callable[[ShoalError], None]) -> None:
        self._errors.append(callback)

    def on_tools_changed(self, callback: Callable[[], None]) -> None:
        self._tools_changed.append(callback)

    def _report(self, error: ShoalError) -> None:
        log.warning("remote: %s", error.message)
        for callback in list(self._errors):
            callback(error)

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        remote = self.settings.remote
        if not remote.url.strip():
            raise ConfigError(
                "Remote mode is on, but no server address is set.",
                f"Enter the address of the `shoal serve` to use in {SETTINGS}, or turn remote mode off there.",
            )
        url = normalise_url(remote.url)
        token = self._token if self._token is not None else _stored_token(remote.key_name)
        client = RemoteClient(url, token, remote.timeout, remote.ca_file)
        try:
            self.status = await check_server(client)
        except TokenRefused as exc:
            await client.aclose()
            if not token:
                raise missing_token(url, token_env_var(remote.key_name)) from exc
            raise
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        self.provider.model_id = str(self.status.get("model") or "")
        self._mirror = ApprovalMirror(client, self.broker, self._report)
        self.memory = RemoteMemory(client)
        self.schedule = RemoteSchedule(client, lambda: self.settings, lambda: self.status)
        try:
            await self.refresh_tools()
            await self._open_feeds()
        except BaseException:
            await self._release()
            raise
        self._started = True
        log.info("remote core connected to %s (model %s)", url, self.provider.model_id or "none")

    async def _open_feeds(self) -> None:
        assert self._client is not None and self._mirror is not None
        mirror = self._mirror

        def on_approval(name: str, data: dict[str, Any]) -> None:
            if name == "approval_requested":
                mirror.ask(data)
            elif name == "approval_resolved":
                mirror.withdraw(str(data.get("id", "")))

        self._feeds = [
            LiveFeed(self._client, "/api/timeline/stream", self._on_timeline, self._feed_state),
            LiveFeed(self._client, "/api/approvals/stream", on_approval, self._feed_state),
        ]
        for feed in self._feeds:
            feed.start()
        waits = [asyncio.ensure_future(feed.ready.wait()) for feed in self._feeds]
        _done, pending = await asyncio.wait(waits, timeout=min(READY_WAIT, self.settings.remote.timeout))
        for wait in pending:
            wait.cancel()
        self._feed_state(all(f.connected for f in self._feeds), None)

    def _on_timeline(self, _name: str, data: dict[str, Any]) -> None:
        """A step the server recorded: to the timeline's listeners, and to the panes it concerns."""
        self.timeline.deliver(data)
        kind, name = data.get("kind"), data.get("name")
        if kind == "tool.result" and name in MEMORY_TOOLS and self.memory is not None:
            self.memory.changed()
        elif kind == "schedule.run" and self.schedule is not None:
            self._spawn(self.schedule.run_recorded(dict(data.get("payload") or {})))

    def _feed_state(self, _connected: bool, error: ShoalError | None) -> None:
        connected = bool(self._feeds) and all(f.connected for f in self._feeds)
        if connected == self._connected and error is None:
            return
        was, self._connected = self._connected, connected
        if connected and not was and self._started:
            self._spawn(self._resync())  # back after a drop: what changed meanwhile
        for callback in list(self._connection):
            callback(connected, error)

    async def _resync(self) -> None:
        if self._mirror is not None:
            await self._mirror.refresh()
        await self.refresh_tools()

    async def stop(self, timeout: float = 15.0) -> None:
        """Stop this desktop's turns (closing their streams stops them on the server), the feeds, the client."""
        if not self._started:
            return
        self._started = False
        turns = [t for t in self._turns if not t.done]
        for turn in turns:
            turn.cancel()
        if turns:
            await asyncio.wait([asyncio.ensure_future(t.result()) for t in turns], timeout=timeout)
        await self._release()

    async def _release(self) -> None:
        for feed in self._feeds:
            await feed.stop()
        self._feeds = []
        if self._mirror is not None:
            await self._mirror.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        self._client = self._mirror = None  # requests now say "not connected", not "client closed"
        self.memory = self.schedule = None
        self._connected = False

    async def __aenter__(self) -> RemoteCore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _need_client(self) -> RemoteClient:
        if self._client is None:
            raise ConfigError("Not connected to the remote server yet.", "Wait for Shoal to finish starting.")
        return self._client

    def _spawn(self, coro: Any) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._report(classify(exc))

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the model, settings, things that live on the server ------------------------------------------

    async def load_model(self) -> None:
        """Nothing loads here; re-read the server's status so the model shown is the one it uses."""
        self.status = await check_server(self._need_client())
        self.provider.model_id = str(self.status.get("model") or "")
        if not self.provider.model_id:
            raise ConfigError(
                f"The server at {self.url} has no model set.",
                "Set one there (`shoal config set model.path …`, or the desktop's Settings on that machine), "
                "then restart `shoal serve`.",
            )

    async def apply_settings(self, settings: Settings, *, reconnect: bool = False) -> None:
        """Local settings (appearance…) apply at once; the `[remote]` section itself needs a restart."""
        self.settings = settings
        if self._started:
            self._spawn(self.refresh_tools())

    async def start_scheduler(self) -> None:
        """The server runs its own scheduler."""

    def mcp_status(self) -> list[Any]:
        return []

    def mcp_errors(self) -> dict[str, ShoalError]:
        return {}

    # --- commands --------------------------------------------------------------------------------------

    async def new_session(self, title: str = "") -> SessionInfo:
        row = await self._need_client().request("POST", "/api/sessions", json_body={"title": title[:200]})
        return decode.session_info(row)

    def send(
        self, session_id: str, text: str, *, regenerate: bool = False, label: str | None = None, **_ignored: Any
    ) -> RemoteTurn:
        """Start a turn on the server; iterate the returned turn for its events (as `AgentCore.send`). A
        sensitivity `label` travels with the message; the server's policy applies it."""
        mirror = self._mirror

        def ended(turn: RemoteTurn) -> None:
            self._turns.discard(turn)
            if mirror is not None:
                mirror.withdraw_all(turn.approvals)  # the server withdrew them when the turn ended

        turn = RemoteTurn(
            self._need_client,
            session_id,
            text,
            regenerate=regenerate,
            on_approval=mirror.ask if mirror is not None else lambda _data: None,
            on_end=ended,
            label=label,
        )
        self._turns.add(turn)
        return turn

    async def export_session(self, session_id: str) -> dict[str, Any]:
        from core.export import session_data

        return await session_data(self.sessions, self.timeline, session_id)  # type: ignore[arg-type]

    # --- tools -----------------------------------------------------------------------------------------

    async def refresh_tools(self) -> None:
        rows = await self._need_client().get("/api/tools")
        self._tools = {spec.name: (spec, enabled) for spec, enabled in map(decode.tool_spec, rows)}
        for callback in list(self._tools_changed):
            callback()

    def tool_specs(self) -> list[ToolSpec]:
        return [spec for spec, _enabled in self._tools.values()]

    def tool_enabled(self, name: str) -> bool:
        return self._tools.get(name, (None, False))[1]

    def set_tool_enabled(self, name: str, enabled: bool) -> None:
        """Shown at once; sent to the server in the background (until it restarts, as locally)."""
        if name not in self._tools:
            return
        spec, before = self._tools[name]
        self._tools[name] = (spec, enabled)
        self._spawn(self._send_toggle(name, enabled, before))

    async def _send_toggle(self, name: str, enabled: bool, before: bool) -> None:
        try:
            await self._need_client().request("PUT", f"/api/tools/{name}", json_body={"enabled": enabled})
        except ShoalError:
            if name in self._tools:
                self._tools[name] = (self._tools[name][0], before)
            for callback in list(self._tools_changed):
                callback()
            raise


def _stored_token(key_name: str) -> str | None:
    secret = get_token(key_name)
    return secret.value if secret else None


async def check_server(client: RemoteClient) -> dict[str, Any]:
    """GET /api/status, checked to be a Shoal server's answer. Raises ShoalError saying what to do."""
    try:
        status = await client.get("/api/status")
    except ServerError as exc:
        if exc.status == 404:
            raise ConfigError(
                f"{client.url} is not a Shoal server (or too old for remote mode).",
                f"Check the address in {SETTINGS}: it is the one `shoal serve` prints when it starts.",
            ) from exc
        raise
    if not isinstance(status, dict) or status.get("status") != "ok" or "version" not in status:
        raise ConfigError(
            f"{client.url} answered, but not as a Shoal server.",
            f"Check the address in {SETTINGS}: it is the one `shoal serve` prints when it starts.",
        )
    return status


async def probe(
    url: str, token: str | None, timeout: float, ca_file: str = "", *, key_name: str = "remote"
) -> dict[str, Any]:
    """The Settings dialog's Test: /api/status of `url` with `token` (None: the stored one), trusting `ca_file`
    too. Raises ShoalError saying what is wrong and what to do."""
    address = normalise_url(url)
    use = token if token else _stored_token(key_name)
    client = RemoteClient(address, use, timeout, ca_file)
    try:
        return await check_server(client)
    except TokenRefused as exc:
        if not use:
            raise missing_token(address, token_env_var(key_name)) from exc
        raise
    finally:
        await client.aclose()
