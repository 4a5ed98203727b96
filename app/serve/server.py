"""`shoal serve`: the core, the scheduler and the HTTP API on one asyncio loop, no GUI.

uvicorn serves the app on the loop that runs the core (no second loop, no thread hop per request), traps
SIGINT/SIGTERM for a graceful stop (open streams get `timeout_graceful_shutdown` seconds), and the core
stops after it, recording the turns that were cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app.serve.auth import Access, decide_access, is_loopback
from app.serve.metrics import ServeMetrics
from app.serve.state import ServeState
from core.approvals import ApprovalBroker
from core.errors import ConfigError
from core.logs import register_secret
from core.policy.ratelimit import RateLimiter
from core.service import AgentCore
from core.settings import LoadedSettings, ServeSettings

log = logging.getLogger(__name__)
GRACEFUL_SECONDS = 5


@dataclass(frozen=True)
class Listening:
    url: str
    access: Access
    state: ServeState


def make_state(core: AgentCore, broker: ApprovalBroker, access: Access, settings: ServeSettings) -> ServeState:
    holder: dict[str, ServeState] = {}
    metrics = ServeMetrics(lambda: holder["state"].group_figures)
    state = ServeState(
        core=core,
        broker=broker,
        access=access,
        limiter=RateLimiter(settings.rate_limit, settings.rate_burst),
        metrics=metrics,
        cors_origins=list(settings.cors_origins),
    )
    holder["state"] = state
    core.timeline.add_listener(metrics.on_event)
    return state


def _uvicorn_server(state: ServeState, settings: ServeSettings) -> Any:
    import uvicorn

    from app.serve.api import create_app

    config = uvicorn.Config(
        create_app(state),
        host=settings.host,
        port=settings.port,
        lifespan="off",
        access_log=False,
        server_header=False,
        log_level="warning",
        log_config=None,  # Shoal's own logging (file, scrubbed) stays in charge
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        proxy_headers=False,  # X-Forwarded-For from any local client would give it a fresh rate-limit bucket
        ssl_certfile=settings.tls_certfile or None,
        ssl_keyfile=settings.tls_keyfile or None,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises a trapped SIGTERM once it has stopped, which would kill the process before the core
    # records its cut-short turns and closes the database. Shoal traps the signals itself (_stop_on_signals).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    return server


def _bind(settings: ServeSettings) -> socket.socket:
    """The listening socket, bound here so a taken port is a clear error (uvicorn would exit the process)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host.strip("[]"), settings.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror}.",
            "Another program (or another shoal serve) uses that port: pick another with --port, or stop it."
            if exc.errno == errno.EADDRINUSE
            else "Check serve.host: it must be an address of this machine.",
        ) from exc
    sock.set_inheritable(True)
    return sock


def _begin_shutdown(server: Any, state: ServeState) -> None:
    """Stop accepting, and cancel the API's running turns so their streams end with `turn_finished`
    (cancelled, recorded) within the grace period instead of being cut off."""
    server.should_exit = True
    state.cancel_turns()
    from app.serve.routes_live import close_feeds  # with the app: fastapi is imported only once serving

    close_feeds(state)  # the live feeds never end on their own: end them now, not after the grace period


@contextlib.contextmanager
def _stop_on_signals(server: Any, state: ServeState) -> Iterator[None]:
    """SIGINT/SIGTERM ask the server to stop gracefully (only the main thread can trap signals)."""
    loop = asyncio.get_running_loop()
    trapped: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, _begin_shutdown, server, state)
            trapped.append(sig)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or Windows
            pass
    try:
        yield
    finally:
        for sig in trapped:
            loop.remove_signal_handler(sig)


def _bound_url(server: Any, settings: ServeSettings) -> str:
    scheme = "https" if settings.tls_certfile else "http"
    host, port = settings.host, settings.port
    for listener in getattr(server, "servers", []):
        for sock in listener.sockets:
            port = sock.getsockname()[1]
            break
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


async def serve(
    loaded: LoadedSettings,
    core: AgentCore,
    broker: ApprovalBroker,
    *,
    access: Access | None = None,
    on_ready: Callable[[Listening], None] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or cancellation). The caller owns `core` (started before, stopped after)."""
    settings = loaded.settings.serve
    access = access or decide_access(settings)
    for warning in access.warnings:
        log.warning("%s", warning)
    register_secret(access.token)  # never in the log file, whatever logs it
    sock = _bind(settings)
    state = make_state(core, broker, access, settings)
    server = _uvicorn_server(state, settings)
    task = asyncio.create_task(_run(server, sock), name="shoal-serve-http")
    try:
        while not server.started:
            if task.done():  # the certificate unreadable…
                await task
                raise ConfigError(f"shoal serve could not start on {settings.host}:{settings.port}.", "See the log.")
            await asyncio.sleep(0.02)
        if on_ready is not None:
            on_ready(Listening(_bound_url(server, settings), access, state))
        with _stop_on_signals(server, state):
            await asyncio.shield(task)
    finally:
        if not task.done():  # cancelled: stop serving (a shielded task outlives the cancellation otherwise)
            _begin_shutdown(server, state)
            await asyncio.wait({task}, timeout=GRACEFUL_SECONDS + 2)
        core.timeline.remove_listener(state.metrics.on_event)
        sock.close()


async def _run(server: Any, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits on a startup failure (a TLS file it cannot read)
        raise ConfigError(f"shoal serve failed to start (exit {exc.code}).", "See the log for the reason.") from exc


def banner(listening: Listening, settings: ServeSettings, token_shown: bool) -> list[str]:
    lines = [f"Shoal is serving on {listening.url}  (OpenAI-compatible: {listening.url}/v1)"]
    access = listening.access
    if access.token is None:
        lines.append("No bearer token is asked (serve.auth = false, loopback only).")
    elif access.created or token_shown:
        lines.append(f"Bearer token ({'new, stored in' if access.created else 'from'} {access.token_origin}):")
        lines.append(f"  {access.token}")
        lines.append("Keep it secret; `shoal serve --show-token` prints it again.")
    else:
        lines.append(f"Bearer token: from {access.token_origin} (`shoal serve --show-token` prints it).")
    if not is_loopback(settings.host):
        lines.append(f"Reachable from other machines on {settings.host}.")
    lines += [f"warning: {w}" for w in access.warnings]
    return lines


def print_banner(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr, flush=True)
