"""web_fetch: public pages become readable text; the local network stays out of reach, hop by hop."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from core.errors import Actor, SandboxViolation, ToolError
from core.settings import ToolSettings
from core.tools import web_client as web_fetch
from core.tools.registry import RiskTier, ToolContext, ToolOutput
from core.tools.web_client import blocked_reason, html_to_text
from core.tools.web_fetch import WebFetchTool

PAGE = b"""<!doctype html><html><head><title>Tide  tables</title>
<style>body { color: red }</style><script>var secret = "do not show";</script></head>
<body><nav>Home | About | Login</nav>
<h1>High tide</h1><p>The tide is   high at <b>06:12</b> &amp; low at 12:30.</p>
<p>Second paragraph.</p><ul><li>Mon</li><li>Tue</li></ul><script/>
<footer>Copyright nobody</footer></body></html>"""


class Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []  # noqa: RUF012 - (path, Host header) per request, for assertions

    def log_message(self, *_args: Any) -> None:
        pass

    def do_GET(self) -> None:
        Handler.seen.append((self.path, self.headers.get("Host", "")))
        route = ROUTES.get(self.path.split("?")[0])
        if route is None:
            return self._send(404, "text/plain", b"not here")
        route(self)

    def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self._send(302, "text/plain", b"", {"Location": location})

    def slow(self) -> None:
        time.sleep(1.5)
        self._send(200, "text/plain", b"late")


ROUTES = {
    "/page": lambda h: h._send(200, "text/html; charset=utf-8", PAGE),
    "/text": lambda h: h._send(200, "text/plain", b"  plain words\n\n"),
    "/json": lambda h: h._send(200, "application/json", b'{"a": [1, 2]}'),
    "/big": lambda h: h._send(200, "text/plain", b"x" * 100_000),
    "/png": lambda h: h._send(200, "image/png", b"\x89PNG\r\n\x1a\n"),
    "/host": lambda h: h._send(200, "text/plain", h.headers.get("Host", "").encode()),
    "/to-page": lambda h: h.redirect("/page"),
    "/to-metadata": lambda h: h.redirect("http://169.254.169.254/latest/meta-data/"),
    "/to-private": lambda h: h.redirect("http://10.0.0.1/"),
    "/to-file": lambda h: h.redirect("file:///etc/passwd"),
    "/loop": lambda h: h.redirect("/loop"),
    "/slow": Handler.slow,
}


@pytest.fixture
def server() -> Iterator[str]:
    Handler.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def context(workspace: Path, **settings: Any) -> ToolContext:
    return ToolContext(workspace=workspace, session_id="s", settings=ToolSettings(**settings))


async def fetch(ctx: ToolContext, url: str, tool: WebFetchTool | None = None, **extra: Any) -> ToolOutput:
    args = {"url": url, **extra}
    jsonschema.Draft202012Validator(WebFetchTool.spec.parameters).validate(args)
    return await (tool or WebFetchTool()).run(args, ctx)


@pytest.fixture
def loopback_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend 127.0.0.1 is a public address, so the test server can stand in for the internet."""
    real = web_fetch.blocked_reason
    monkeypatch.setattr(web_fetch, "blocked_reason", lambda ip: None if str(ip) == "127.0.0.1" else real(ip))


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Answer getaddrinfo for the given names (IP literals still go to the real resolver); log lookups."""
    loop = asyncio.get_running_loop()
    real, asked = loop.getaddrinfo, []

    async def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append(host)
        if host not in answers:
            return await real(host, port, *args, **kwargs)
        if not answers[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        return [
            (family[ipaddress.ip_address(ip).version], socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers[host]
        ]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return asked


# --- address policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not globally routable"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback (IPv4 127.0.0.1 inside IPv6)"),
        ("::ffff:10.0.0.1", "private (IPv4"),
        ("2002:7f00:1::1", "loopback (IPv4"),
        ("64:ff9b::a9fe:a9fe", "link-local (IPv4 169.254.169.254"),
    ],
)
def test_non_public_addresses_are_blocked(address: str, reason: str) -> None:
    assert (blocked_reason(ipaddress.ip_address(address)) or "").startswith(reason)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


# --- refusals ------------------------------------------------------------------------------------


async def test_loopback_is_refused_by_default(workspace: Path, server: str) -> None:
    with pytest.raises(SandboxViolation, match="loopback") as info:
        await fetch(context(workspace), server + "/page")
    assert "web_allow_private" in info.value.fix
    assert Handler.seen == []  # refused before connecting


async def test_names_that_resolve_to_private_addresses_are_refused(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"intranet.example": ["93.184.215.14", "192.168.0.10"]})
    with pytest.raises(SandboxViolation, match="private address"):
        await fetch(context(workspace), "http://intranet.example/")


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.org/x", "javascript:alert(1)", "gopher://example.org", "/relative/path"],
)
async def test_only_http_and_https_are_fetched(workspace: Path, url: str) -> None:
    with pytest.raises(SandboxViolation, match="Only http and https"):
        await fetch(context(workspace, web_allow_private=True), url)


async def test_credentials_in_urls_are_refused(workspace: Path) -> None:
    with pytest.raises(SandboxViolation, match="user name or password"):
        await fetch(context(workspace), "http://user:pw@example.org/")


@pytest.mark.usefixtures("loopback_is_public")
@pytest.mark.parametrize(
    ("path", "reason"),
    [("/to-metadata", "link-local"), ("/to-private", "private"), ("/to-file", "Only http and https")],
)
async def test_redirects_are_checked_hop_by_hop(workspace: Path, server: str, path: str, reason: str) -> None:
    with pytest.raises(SandboxViolation, match=reason):
        await fetch(context(workspace), server + path)
    assert [p for p, _ in Handler.seen] == [path]  # the first hop was fetched, the second refused


@pytest.mark.usefixtures("loopback_is_public")
async def test_redirect_loops_stop(workspace: Path, server: str) -> None:
    with pytest.raises(ToolError, match="Too many redirects"):
        await fetch(context(workspace), server + "/loop")
    assert len(Handler.seen) == web_fetch.MAX_REDIRECTS + 1


# --- fetching ------------------------------------------------------------------------------------


async def test_allowed_private_page_becomes_readable_text(workspace: Path, server: str) -> None:
    out = await fetch(context(workspace, web_allow_private=True), server + "/page")
    assert out.data["title"] == "Tide tables"
    assert out.data["status"] == 200 and out.data["truncated"] is False
    body = out.text.split("\n\n", 1)[1]
    assert body == "High tide\n\nThe tide is high at 06:12 & low at 12:30.\n\nSecond paragraph.\n\n- Mon\n- Tue"
    assert out.text.startswith(f"URL: {server}/page\nTitle: Tide tables\n")
    for hidden in ("do not show", "color: red", "Login", "Copyright"):
        assert hidden not in out.text


async def test_redirects_inside_the_rules_are_followed(workspace: Path, server: str) -> None:
    out = await fetch(context(workspace, web_allow_private=True), server + "/to-page")
    assert out.data["url"] == server + "/page"
    assert out.data["redirects"] == [server + "/to-page"]
    assert "High tide" in out.text


async def test_text_and_json_are_returned_as_is(workspace: Path, server: str) -> None:
    ctx = context(workspace, web_allow_private=True)
    assert (await fetch(ctx, server + "/text")).text.endswith("\n\nplain words")
    out = await fetch(ctx, server + "/json")
    assert out.text.endswith('\n\n{"a": [1, 2]}')
    assert out.data["content_type"] == "application/json"


async def test_size_limit_stops_reading(workspace: Path, server: str) -> None:
    out = await fetch(context(workspace, web_allow_private=True, web_max_bytes=1024), server + "/big")
    assert out.data["bytes"] == 1024
    assert out.data["truncated"] is True
    assert out.text.count("x") == 1024
    assert "larger than 1,024 bytes" in out.text


async def test_max_chars_trims_with_a_note(workspace: Path, server: str) -> None:
    out = await fetch(context(workspace, web_allow_private=True), server + "/big", max_chars=500)
    assert out.text.count("x") == 500
    assert "[truncated: showing 500 of 100,000 characters]" in out.text


async def test_http_errors_non_text_and_refused_connections(workspace: Path, server: str) -> None:
    ctx = context(workspace, web_allow_private=True)
    with pytest.raises(ToolError, match="HTTP 404") as info:
        await fetch(ctx, server + "/missing")
    assert info.value.actor is Actor.NETWORK
    with pytest.raises(ToolError, match="image/png, not text"):
        await fetch(ctx, server + "/png")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ToolError, match="Could not connect") as info:
        await fetch(ctx, f"http://127.0.0.1:{port}/")
    assert info.value.actor is Actor.NETWORK


async def test_slow_servers_time_out(workspace: Path, server: str) -> None:
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"longer than 0\.3 s"):
        await fetch(context(workspace, web_allow_private=True, web_timeout=0.3), server + "/slow")
    assert time.monotonic() - started < 1.2


async def test_dns_failures_are_network_errors(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"nowhere.example": []})
    with pytest.raises(ToolError, match=r"Could not resolve the host 'nowhere\.example'") as info:
        await fetch(context(workspace), "https://nowhere.example/")
    assert info.value.actor is Actor.NETWORK


# --- pinning against DNS rebinding ---------------------------------------------------------------


@pytest.mark.usefixtures("loopback_is_public")
async def test_the_connection_uses_the_checked_address(
    workspace: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = server.rsplit(":", 1)[1]
    asked = fake_dns(monkeypatch, {"rebind.example": ["127.0.0.1"]})
    out = await fetch(context(workspace), f"http://rebind.example:{port}/host")
    assert out.text.endswith(f"rebind.example:{port}")  # the server saw the original Host header
    assert asked.count("rebind.example") == 1  # resolved once, for the check; never again to connect


async def test_https_is_pinned_with_sni_and_host(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"example.org": ["93.184.215.14"]})
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, headers={"Content-Type": "text/plain"}, content=b"hello")

    tool = WebFetchTool(transport=httpx.MockTransport(handler))
    out = await fetch(context(workspace), "https://example.org/a?b=1", tool=tool)
    assert out.text.endswith("hello")
    (request,) = requests
    assert str(request.url) == "https://93.184.215.14/a?b=1"
    assert request.headers["Host"] == "example.org"
    assert request.extensions["sni_hostname"] == "example.org"


def test_spec() -> None:
    spec = WebFetchTool.spec
    assert spec.risk is RiskTier.READ
    assert spec.parameters["required"] == ["url"] and spec.parameters["additionalProperties"] is False


def test_html_to_text_handles_entities_breaks_and_broken_markup() -> None:
    title, text = html_to_text("<title>A &lt;b&gt;</title><p>x<br>y</p><div>z &nbsp; w</div><style>p{}")
    assert title == "A <b>"
    assert text == "x\ny\n\nz w"
