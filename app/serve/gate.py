"""The door every request passes: rate limit, bearer token, CORS, and the request metrics.

A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware: it adds no task per request and
leaves Server-Sent Events streaming untouched. The rate limit comes first, keyed by client address, so
guessing tokens is throttled like anything else.
"""

from __future__ import annotations

import json
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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _error(scope: Scope, status: int, error: str, message: str, fix: str) -> tuple[int, bytes]:
    """The refusal in the body shape of the route asked for (OpenAI's under /v1)."""
    if scope["path"].startswith("/v1/"):
        return status, json.dumps(openai_body(status, error, message, fix)).encode()
    body = {"error": error, "actor": "config" if status == 401 else "user", "message": message, "fix": fix}
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
                if allowed_origin:
                    headers = list(message.get("headers", []))
                    headers += [(b"access-control-allow-origin", allowed_origin.encode()), (b"vary", b"Origin")]
                    message["headers"] = headers
                self._observe(scope, message["status"], started)
            await send(message)

        refusal = self._refusal(scope, allowed_origin)
        if refusal is not None:
            status, body, extra = refusal
            await self._respond(send_wrapped, status, body, extra)
            return
        await self.app(scope, receive, send_wrapped)

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
        self.state.metrics.requests.labels(scope["method"], name, str(status)).inc()
        self.state.metrics.latency.labels(name).observe(time.perf_counter() - started)
