"""The door every request passes: rate limit, bearer token, CORS, and the request metrics.

A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware: it adds no task per request and
leaves Server-Sent Events streaming untouched. The rate limit comes first, keyed by client address, so
guessing tokens is throttled like anything else.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from app.serve.errors import openai_body
from app.serve.state import ServeState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Reachable without the token: liveness probes and the API's own description.
PUBLIC_PATHS = frozenset({"/health", "/openapi.json"})
_CORS_HEADERS = b"authorization, content-type, x-shoal-session"
_EXPOSED = b"x-shoal-session, retry-after"
# Metric labels come from fixed sets only: any other method is "other", so a client cannot mint series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_BODY_BYTES = 8 * 1024 * 1024  # the largest request body (a chat message is capped at 200k characters)
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})

log = logging.getLogger(__name__)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _error(scope: Scope, status: int, error: str, message: str, fix: str) -> tuple[int, bytes]:
    """The refusal in the body shape of the route asked for (OpenAI's under /v1)."""
    if scope["path"].startswith("/v1/"):
        return status, json.dumps(openai_body(status, error, message, fix)).encode()
    actor = "config" if status == 401 else "bug" if status >= 500 else "user"
    body = {"error": error, "actor": actor, "message": message, "fix": fix}
    return status, json.dumps(body).encode()


class Gate:
    def __init__(self, app: ASGIApp, state: ServeState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_seen: list[int] = []
        origin = _header(scope, b"origin")
        allowed_origin = origin if origin and origin in self.state.cors_origins else None

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(int(message["status"]))
                headers = list(message.get("headers", []))
                if allowed_origin:
                    headers += [(b"access-control-allow-origin", allowed_origin.encode()),
                                (b"access-control-expose-headers", _EXPOSED)]  # fmt: skip
                if self.state.cors_origins:
                    headers.append((b"vary", b"Origin"))
                message["headers"] = headers
                self._observe(scope, message["status"], started)
            await send(message)

        refusal = self._refusal(scope, allowed_origin) or self._oversized(scope)
        if refusal is not None:
            status, body, extra = refusal
            await self._respond(send_wrapped, status, body, extra)
            return
        try:
            await self.app(scope, receive, send_wrapped)
        except Exception as exc:  # answered here, inside the gate: counted, with CORS, logged once
            if status_seen:
                raise
            from core.errors import classify

            log.exception("%s %s: unexpected error", scope["method"], scope["path"])
            error = classify(exc)
            status, body = _error(scope, 500, type(error).__name__, error.message, error.fix)
            await self._respond(send_wrapped, status, body, [])

    def _oversized(self, scope: Scope) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        """Bodies are read whole before validation: refuse what would not fit rather than buffer it."""
        length = _header(scope, b"content-length")
        if length is None and _header(scope, b"transfer-encoding"):
            status, body = _error(scope, 411, "LengthRequired", "A request body needs a Content-Length.", "")
            return status, body, []
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            status, body = _error(
                scope,
                413,
                "PayloadTooLarge",
                f"The request body is over {MAX_BODY_BYTES // (1024 * 1024)} MB.",
                "Send less: put large documents in the document index (shoal docs add) instead.",
            )
            return status, body, []
        return None

    def _refusal(self, scope: Scope, allowed_origin: str | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        client = scope.get("client")
        key = client[0] if client else "unknown"
        wait = self.state.limiter.acquire(key)
        if wait > 0:
            self.state.metrics.refused.labels("rate_limit").inc()
            retry = max(1, math.ceil(wait))
            status, body = _error(
                scope,
                429,
                "RateLimited",
                f"Too many requests from {key}.",
                f"Retry after {retry} s (Retry-After header).",
            )
            return status, body, [(b"retry-after", str(retry).encode())]
        if scope["method"] == "OPTIONS" and allowed_origin:  # a CORS preflight from an allowed origin
            headers = [
                (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE"),
                (b"access-control-allow-headers", _CORS_HEADERS),
                (b"access-control-max-age", b"600"),
            ]
            return 204, b"", headers
        if self.state.access.token is None and not self._local_host(scope):
            # No token asked (loopback only): a web page whose name re-resolves to 127.0.0.1 (DNS rebinding)
            # must not drive the agent, so only requests addressed to a loopback name are served.
            self.state.metrics.refused.labels("host").inc()
            status, body = _error(
                scope, 403, "Forbidden", "Requests must be addressed to localhost.", "Use http://127.0.0.1:<port>."
            )
            return status, body, []
        if scope["path"] in PUBLIC_PATHS or self.state.access.allows(_header(scope, b"authorization")):
            return None
        self.state.metrics.refused.labels("unauthorized").inc()
        status, body = _error(
            scope,
            401,
            "Unauthorized",
            "A valid bearer token is required.",
            "Send 'Authorization: Bearer <token>'; `shoal serve --show-token` prints it on the server.",
        )
        return status, body, [(b"www-authenticate", b'Bearer realm="shoal"')]

    @staticmethod
    def _local_host(scope: Scope) -> bool:
        host = (_header(scope, b"host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in _LOOPBACK_HOSTS

    @staticmethod
    async def _respond(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
        if not body:
            headers = extra
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        # The route's template, never the raw path: fuzzed or hostile paths must not mint new series.
        name = getattr(route, "path", None) or ("public" if scope["path"] in PUBLIC_PATHS else "unrouted")
        method = scope["method"] if scope["method"] in _METHODS else "other"
        self.state.metrics.requests.labels(method, name, str(status)).inc()
        self.state.metrics.latency.labels(name).observe(time.perf_counter() - started)
