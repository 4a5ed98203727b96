"""The HTTP side of `web_fetch`, imported on first use so httpx is not loaded at startup.

Fetch one web page and return its readable text, without reaching the local network.

Server-side request forgery is the risk: a page (or the model) asking for http://127.0.0.1:8080/admin,
the router at 192.168.1.1 or cloud metadata at 169.254.169.254. So, for every hop:

* only http and https, no credentials in the URL;
* the host is resolved first and *every* address it resolves to must be public: loopback, private,
  link-local, multicast, reserved, unspecified and shared (CGNAT) ranges are refused, for IPv4, IPv6
  and IPv4 embedded in IPv6 (mapped, 6to4, NAT64); `tools.web_allow_private` lifts this;
* the connection is pinned to the address that was checked: the request goes to the IP, with the
  original `Host` header and, for https, the original name as SNI and for certificate checks
  (httpcore's `sni_hostname` extension). A second DNS answer (rebinding) is never used;
* redirects are followed by hand (at most 5), each one checked like the first.

Limits: `web_timeout` is a deadline for the whole fetch, `web_max_bytes` caps the decoded body (the
rest is not read). Environment proxies are ignored (`trust_env=False`), since a proxy would make its
own DNS lookup and defeat the pinning; people behind a mandatory proxy cannot use this tool yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import httpx

from core.errors import Actor, SandboxViolation, ToolError
from core.settings import ToolSettings
from core.tools.registry import ToolOutput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_REDIRECTS = 5
USER_AGENT = "Shoal/0.1 (personal assistant)"
_ACCEPT = "text/html,application/xhtml+xml,text/plain;q=0.9,application/json;q=0.9,*/*;q=0.1"
_REDIRECTS = {301, 302, 303, 307, 308}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "nav", "footer", "aside", "form", "iframe", "button"}
_BREAK_TAGS = {"br", "div", "tr", "dt", "dd", "section", "article", "main", "header", "table", "ul", "ol"}
_PARAGRAPH_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "hr", "figure", "address"}


def _network_error(message: str, fix: str) -> ToolError:
    return ToolError(message, fix, actor=Actor.NETWORK)


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` must not be fetched by default, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = (
            ip.ipv4_mapped or ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        )
        if embedded is not None:
            inner = blocked_reason(embedded)
            return f"{inner} (IPv4 {embedded} inside IPv6)" if inner else None
    checks = [
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("not globally routable", not ip.is_global),
    ]
    return next((name for name, hit in checks if hit), None)


@dataclass(frozen=True)
class _Target:
    """A URL checked for fetching, with the one address the connection will use."""

    url: httpx.URL
    ip: IPAddress

    def pinned_request(self, client: httpx.AsyncClient) -> httpx.Request:
        headers = {"Host": self.url.netloc.decode("ascii"), "User-Agent": USER_AGENT, "Accept": _ACCEPT}
        return client.build_request(
            "GET",
            self.url.copy_with(host=str(self.ip)),
            headers=headers,
            extensions={"sni_hostname": self.url.raw_host.decode("ascii")},
        )


def _parse_url(raw: str, base: httpx.URL | None = None) -> httpx.URL:
    """Accept only absolute http(s) URLs with a host and no credentials."""
    try:
        url = base.join(raw) if base is not None else httpx.URL(raw)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ToolError(f"Not a valid URL: {raw!r} ({exc}).", "Pass a full URL such as https://example.org/.") from exc
    if url.scheme not in ("http", "https"):
        raise SandboxViolation(
            f"Only http and https URLs can be fetched, not {url.scheme or 'a relative URL'}: {raw!r}.",
            "Pass a full URL starting with https://.",
        )
    if not url.host:
        raise ToolError(f"The URL has no host: {raw!r}.", "Pass a full URL such as https://example.org/.")
    if url.userinfo:
        raise SandboxViolation("URLs with a user name or password are not fetched.", "Remove the 'user@' part.")
    return url


async def _resolve(url: httpx.URL) -> list[IPAddress]:
    """All addresses the host resolves to (a literal IP resolves to itself)."""
    host = url.raw_host.decode("ascii")
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _network_error(f"Could not resolve the host {host!r}.", "Check the address, or your connection.") from exc
    addresses = dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
    if not addresses:
        raise _network_error(f"The host {host!r} has no addresses.", "Check the address.")
    return list(addresses)


async def _check(url: httpx.URL, allow_private: bool) -> _Target:
    """Resolve and vet the host; refuse when any of its addresses is off limits."""
    addresses = await _resolve(url)
    if not allow_private:
        for ip in addresses:
            reason = blocked_reason(ip)
            if reason:
                raise SandboxViolation(
                    f"Refusing to fetch {url}: {url.host} is a {reason} address ({ip}).",
                    "Only public web sites can be fetched; set tools.web_allow_private to reach local ones.",
                )
    return _Target(url, addresses[0])


def _content_kind(content_type: str) -> str | None:
    """'html', 'json', 'text', '' (unknown, sniff it) or None (not text: refuse)."""
    mime = content_type.split(";")[0].strip().lower()
    if mime in ("text/html", "application/xhtml+xml"):
        return "html"
    if mime == "application/json" or mime.endswith("+json"):
        return "json"
    if mime.startswith("text/") or mime.endswith("+xml") or mime in ("application/xml", "application/javascript"):
        return "text"
    return "" if not mime else None


class _TextExtractor(HTMLParser):
    """Readable text from HTML: title kept, scripts/styles/navigation dropped, paragraphs kept apart."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "li" and not self._skip:
            self.parts.append("\n- ")
        else:
            self._break(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._break(tag)  # <br/>, <hr/>; a self-closed <script/> must not start skipping

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        self._break(tag)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif not self._skip:
            self.parts.append(re.sub(r"\s+", " ", data))

    def _break(self, tag: str) -> None:
        if not self._skip:
            if tag in _PARAGRAPH_TAGS:
                self.parts.append("\n\n")
            elif tag in _BREAK_TAGS:
                self.parts.append("\n")

    def result(self) -> tuple[str, str]:
        lines = (re.sub(r" {2,}", " ", line).strip() for line in "".join(self.parts).split("\n"))
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        return " ".join("".join(self.title_parts).split()), text


def html_to_text(html: str) -> tuple[str, str]:
    """(title, text) of an HTML document."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.result()


def _decode(body: bytes, response: httpx.Response) -> str:
    """Decode with the declared charset, falling back to UTF-8 for unknown ones."""
    with contextlib.suppress(LookupError):
        return body.decode(response.charset_encoding or "utf-8", errors="replace")
    return body.decode("utf-8", errors="replace")


async def _read_body(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """At most `max_bytes` of the decoded body; stop reading (and say so) past that."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        room = max_bytes - len(body)
        if len(chunk) > room:
            body += chunk[:room]
            return bytes(body), True
        body += chunk
    return bytes(body), False


@contextlib.asynccontextmanager
async def _send(client: httpx.AsyncClient, target: _Target) -> AsyncIterator[httpx.Response]:
    """A streamed response to the pinned request, closed afterwards; transport errors made readable."""
    try:
        response = await client.send(target.pinned_request(client), stream=True)
    except httpx.ConnectError as exc:
        raise _network_error(
            f"Could not connect to {target.url.host} ({target.ip}): {exc or 'connection failed'}",
            "Check the URL, or try again later.",
        ) from exc
    except httpx.TimeoutException:
        raise
    except httpx.HTTPError as exc:
        raise _network_error(f"The request to {target.url} failed: {exc}", "Try again later.") from exc
    try:
        yield response
    finally:
        await response.aclose()


async def _answer(
    response: httpx.Response, url: httpx.URL, hops: list[str], max_bytes: int, max_chars: int
) -> ToolOutput:
    """The page's readable text, cut to `max_chars` with a note; HTTP errors and non-text refused."""
    kind = _readable_kind(response, url)
    try:
        body, cut = await _read_body(response, max_bytes)
    except httpx.TimeoutException:
        raise
    except httpx.HTTPError as exc:
        raise _network_error(f"Reading {url} failed: {exc}", "Try again later.") from exc
    kind = kind or _sniff(body, url)
    decoded = _decode(body, response)
    title, text = html_to_text(decoded) if kind == "html" else ("", decoded.strip())
    full_chars, notes = len(text), []
    if full_chars > max_chars:
        text = text[:max_chars]
        notes.append(f"[truncated: showing {max_chars:,} of {full_chars:,} characters]")
    if cut:
        notes.append(f"[the page is larger than {max_bytes:,} bytes; only the start was read]")
    header = [f"URL: {url}"] + ([f"Title: {title}"] if title else [])
    out = "\n".join([*header, "", text, *notes]).strip()
    content_type = response.headers.get("content-type", "")
    data = {"url": str(url), "status": response.status_code, "content_type": content_type, "title": title}
    return ToolOutput(out, {**data, "redirects": hops, "bytes": len(body), "truncated": bool(notes)})


def _readable_kind(response: httpx.Response, url: httpx.URL) -> str:
    """Refuse error statuses and binary content types before reading a byte of the body."""
    if response.status_code >= 400:
        raise _network_error(
            f"{url} answered HTTP {response.status_code} {response.reason_phrase}.",
            "Check the URL; the page may not exist or may need a login.",
        )
    content_type = response.headers.get("content-type", "")
    kind = _content_kind(content_type)
    if kind is None:
        raise ToolError(f"{url} is {content_type.split(';')[0]}, not text.", "web_fetch only reads pages, text, JSON.")
    return kind


def _sniff(body: bytes, url: httpx.URL) -> str:
    """The kind of a body sent without a content type."""
    if b"\x00" in body[:4096]:
        raise ToolError(f"{url} has no content type and looks binary.", "web_fetch only reads text.")
    return "html" if body[:512].lstrip().lower().startswith((b"<!doctype html", b"<html")) else "text"


async def fetch(url_text: str, settings: ToolSettings, max_chars: int, transport: Any = None) -> ToolOutput:
    """Fetch `url_text` under the rules above; raises ToolError/SandboxViolation with a reason and a fix."""
    try:
        async with asyncio.timeout(settings.web_timeout):
            return await _fetch(_parse_url(url_text), settings, max_chars, transport)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise _network_error(
            f"Fetching {url_text} took longer than {settings.web_timeout:g} s.",
            "Try again later, or raise tools.web_timeout.",
        ) from exc


async def _fetch(url: httpx.URL, settings: ToolSettings, max_chars: int, transport: Any) -> ToolOutput:
    timeout = httpx.Timeout(settings.web_timeout)
    hops: list[str] = []
    async with httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target = await _check(url, settings.web_allow_private)
            async with _send(client, target) as response:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    hops.append(str(url))
                    url = _parse_url(location, base=url)
                    continue
                return await _answer(response, url, hops, settings.web_max_bytes, max_chars)
    raise _network_error(f"Too many redirects (more than {MAX_REDIRECTS}) from {hops[0]}.", "Try the final URL.")
