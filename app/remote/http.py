"""HTTP to a remote `shoal serve`: JSON requests, Server-Sent Events streams, and errors a person can act on.

Every failure becomes a `ShoalError` that says what happened and what to do, in the desktop's own terms
(Settings → Remote): a server that cannot be reached, a wrong or missing token, a certificate this computer
does not trust, a URL that is not a Shoal server. Errors the server reports keep its message and fix (its
body is core.errors' shape). A 429 is retried after the server's Retry-After (a desktop opening a window
makes a burst of requests); nothing else is retried, so a command is never carried out twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from core.errors import Actor, ConfigError, NetworkError, ShoalError

log = logging.getLogger(__name__)
RETRIES_429 = 3
MAX_RETRY_WAIT = 5.0
STREAM_READ_TIMEOUT = 45.0  # the server sends a keepalive comment every 15 s: three missed means a dead link
SETTINGS = "Settings → Remote"
TOKEN_FIX = f"Paste the token `shoal serve --show-token` prints on the server in {SETTINGS}."


class ServerError(ShoalError):
    """An error the server reported: its message, fix and actor, with the HTTP status and error name."""

    def __init__(self, message: str, fix: str, *, actor: Actor, status: int, name: str) -> None:
        super().__init__(message, fix, actor=actor)
        self.status = status
        self.name = name

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "error": self.name}


def normalise_url(url: str) -> str:
    """'pi.local:8765/' -> 'http://pi.local:8765'; raises ConfigError for something that is not a URL."""
    text = url.strip().rstrip("/")
    if text and "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{url!r} is not the address of a Shoal server.",
            f"Enter it as http://host:8765 or https://host:8765 in {SETTINGS}.",
        )
    return text


class TokenRefused(ConfigError):
    """The server answered 401: no token, or not its token."""


def wrong_token(url: str) -> TokenRefused:
    return TokenRefused(f"The token for {url} is wrong; paste it in Settings.", TOKEN_FIX)


def missing_token(url: str, variable: str) -> ConfigError:
    return ConfigError(
        f"{url} asks for a token and none is stored for it.", f"{TOKEN_FIX} (Or set {variable} before starting.)"
    )


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def transport_error(exc: Exception, url: str) -> ShoalError:
    """A failure below HTTP (connect, TLS, timeout, a broken connection) in words, with what to do."""
    text = " ".join(str(e) for e in _chain(exc)).lower()
    host = urlsplit(url).hostname or url
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in _chain(exc)) or "certificate verify failed" in text:
        return ConfigError(
            f"The TLS certificate of {url} is not trusted by this computer ({_reason(exc)}).",
            f"If the server uses its own certificate, choose that certificate (PEM) as the trusted certificate in "
            f"{SETTINGS} (remote.ca_file), or put the server behind a proxy with a certificate from a public "
            "authority; the URL's host name must match it.",
        )
    if "wrong version number" in text or "record layer failure" in text or "packet length too long" in text:
        return ConfigError(
            f"{url} does not speak HTTPS.",
            f"Use http:// in {SETTINGS}, or turn TLS on at the server (serve.tls_certfile and serve.tls_keyfile).",
        )
    if isinstance(exc, httpx.TimeoutException):
        return NetworkError(
            f"{url} did not answer in time.",
            "Check that the server is up and reachable; raise remote.timeout for a slow link.",
        )
    if isinstance(exc, httpx.ConnectError):
        if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            return NetworkError(
                f"The host name {host} cannot be found.", f"Check the address in {SETTINGS} (a typo, or a VPN down?)."
            )
        return NetworkError(
            f"Cannot reach the Shoal server at {url} ({_reason(exc)}).",
            f"Start it there with `shoal serve`, check the address and port in {SETTINGS}, and that no firewall "
            "blocks this computer (a server bound to 127.0.0.1 only answers its own machine: set serve.host).",
        )
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return NetworkError(
            f"The connection to {url} broke ({_reason(exc)}).",
            "The server may have stopped or restarted; if it uses TLS, the URL must start with https://.",
        )
    return NetworkError(
        f"Talking to {url} failed ({_reason(exc)}).", f"Check the server and the address in {SETTINGS}."
    )


def _reason(exc: BaseException) -> str:
    text = " ".join(str(e) for e in _chain(exc)).lower()
    if "connection refused" in text or "connect call failed" in text or "errno 111" in text:
        return "connection refused"
    for item in reversed(_chain(exc)):
        text = str(item).strip()
        if text:
            return text if len(text) < 160 else text[:157] + "…"
    return type(exc).__name__


def status_error(response: httpx.Response, url: str) -> ShoalError:
    """A refusal from the server: its own words when it is Shoal's error body, else what the status means."""
    status = response.status_code
    if status == 401:
        return wrong_token(url)
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and {"message", "actor"} <= body.keys():
        actor = Actor(body["actor"]) if body["actor"] in Actor._value2member_map_ else Actor.BUG
        return ServerError(
            str(body["message"]), str(body.get("fix", "")), actor=actor, status=status, name=str(body.get("error", ""))
        )
    if status == 404:
        return ConfigError(
            f"{url} is not a Shoal server, or an older one ({response.request.url.path} answered 404).",
            f"Check the address in {SETTINGS}; run the same Shoal version on both machines.",
        )
    actor = Actor.NETWORK if status >= 500 else Actor.USER
    return ServerError(
        f"{url} answered {status} {response.reason_phrase}.",
        "Check the server's log; a proxy in between may be refusing the request.",
        actor=actor,
        status=status,
        name="HTTPError",
    )


def trust(ca_file: str) -> ssl.SSLContext | bool:
    """The system's trusted authorities, plus the certificates in `ca_file` when one is given."""
    if not ca_file.strip():
        return True
    path = Path(ca_file).expanduser()
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=str(path))
    except (OSError, ssl.SSLError, ValueError) as exc:
        what = "does not exist" if not path.exists() else f"holds no certificate Shoal can read ({_reason(exc)})"
        raise ConfigError(
            f"The trusted certificate file {path} {what}.",
            f"Set remote.ca_file in {SETTINGS} to the server's certificate in PEM form (the file its "
            "serve.tls_certfile names), or leave it empty to trust only the system's authorities.",
        ) from exc
    return context


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(MAX_RETRY_WAIT, max(0.1, float(response.headers.get("retry-after", "1"))))
    except ValueError:
        return 1.0


class RemoteClient:
    """One connection pool to one server, with its token. `request` for JSON, `stream` for SSE."""

    def __init__(self, url: str, token: str | None, timeout: float, ca_file: str = "") -> None:
        """`ca_file`: certificates (PEM) trusted for this server besides the system's, e.g. its own self-signed
        one (`remote.ca_file`); raises ConfigError when it cannot be read."""
        self.url = normalise_url(url)
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            verify=trust(ca_file),
        )
        self._stream_timeout = httpx.Timeout(timeout, read=max(timeout, STREAM_READ_TIMEOUT))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """The decoded JSON answer (None for 204). Raises ShoalError."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        extra: dict[str, Any] = {} if timeout is None else {"timeout": httpx.Timeout(timeout)}
        for attempt in range(RETRIES_429 + 1):
            try:
                response = await self._client.request(method, path, params=params, json=json_body, **extra)
            except httpx.HTTPError as exc:
                raise transport_error(exc, self.url) from exc
            if response.status_code == 429 and attempt < RETRIES_429:
                await asyncio.sleep(_retry_after(response))
                continue
            if response.status_code >= 400:
                raise status_error(response, self.url)
            if response.status_code == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError as exc:
                raise NetworkError(
                    f"{self.url} answered {path} with something that is not JSON.",
                    f"Check that the address in {SETTINGS} is a Shoal server, not a web page or a proxy's login.",
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params)

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None
    ) -> AsyncIterator[AsyncIterator[tuple[str, dict[str, Any]]]]:
        """Open an SSE response; yields an iterator of (event name, data). Leaving the block closes it."""
        request = self._client.build_request(
            method,
            path,
            json=json_body,
            params={k: v for k, v in (params or {}).items() if v is not None},
            headers={"Accept": "text/event-stream"},
            timeout=self._stream_timeout,
        )
        response: httpx.Response | None = None
        for attempt in range(RETRIES_429 + 1):
            try:
                response = await self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise transport_error(exc, self.url) from exc
            if response.status_code == 429 and attempt < RETRIES_429:
                await response.aclose()
                await asyncio.sleep(_retry_after(response))
                continue
            break
        assert response is not None
        try:
            if response.status_code >= 400:
                await response.aread()
                raise status_error(response, self.url)
            yield self._events(response)
        finally:
            await response.aclose()

    async def _events(self, response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        name, data = "message", list[str]()
        try:
            async for line in response.aiter_lines():
                if not line:  # a blank line ends one event
                    if data:
                        yield name, _decode(data)
                    name, data = "message", []
                elif line.startswith(":"):  # a comment: the server's keepalive
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        name = value
                    elif field == "data":
                        data.append(value)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.url) from exc


def _decode(lines: list[str]) -> dict[str, Any]:
    text = "\n".join(lines)
    try:
        value = json.loads(text)
    except ValueError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}
