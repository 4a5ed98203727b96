"""`shoal serve` under load: requests/s and latency over HTTP versus the same handler called in-process.

Two workloads, each with 50 concurrent clients:
  - a non-LLM endpoint (GET /api/tools: the tool list with its schemas), and
  - /v1/chat/completions over the scripted model (a full agent turn: session, timeline writes, answer).
The server runs in its own process (as it would on a Pi), with a scripted model that echoes, so the
figures are the API's and the agent loop's, not a model's. The in-process side calls the same route
function (or `core.send` for a chat) with the same concurrency on a core of its own: the ratio is what
HTTP, auth, rate limiting, JSON and uvicorn add.

Run: .venv/bin/python bench/serve.py [--requests N] [--chats N] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")

ANSWER = "The tide comes in twice a day."


def _echo(messages: list[Any]) -> list[Any]:
    from core.providers.base import TextDelta

    return [TextDelta(ANSWER[i : i + 8]) for i in range(0, len(ANSWER), 8)]


def _settings(data: Path, port: int = 0) -> Any:
    from core.settings import load_settings

    return load_settings(
        data / "none.toml",
        {
            "paths": {"data_dir": str(data)},
            "tools": {"workspace": str(data / "ws")},
            "memory": {"enabled": False},
            "schedule": {"enabled": False},
            "serve": {"port": port, "rate_limit": 1e9, "rate_burst": 1_000_000},
        },
    )


async def _core(data: Path, broker: Any) -> Any:
    from core.providers.scripted import ScriptedProvider
    from core.service import AgentCore

    core = AgentCore(_settings(data).settings, provider=ScriptedProvider([_echo] * 20_000), approve=broker.ask)
    await core.start()
    return core


async def run_server(data: Path) -> None:
    """The server side (a child process): prints {"url", "token"} on stdout, serves until stdin closes."""
    from app.serve.server import serve
    from core.approvals import ApprovalBroker

    os.environ["SHOAL_SERVE_TOKEN"] = "bench-token-0123456789abcdef0123456789"
    broker = ApprovalBroker()
    core = await _core(data, broker)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: stop.done() or stop.set_result(None))

    def ready(listening: Any) -> None:
        print(json.dumps({"url": listening.url, "token": listening.access.token}), flush=True)

    task = asyncio.create_task(serve(_settings(data), core, broker, on_ready=ready))
    await stop
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await core.stop()


async def load(call: Callable[[], Awaitable[None]], total: int, clients: int) -> dict[str, float]:
    """`total` calls spread over `clients` concurrent workers: throughput and latency percentiles."""
    latencies: list[float] = []
    remaining = [total]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": total / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


class Connection:
    """A minimal HTTP/1.1 keep-alive client (wrk-style): the load generator must cost far less than the
    server it measures, and httpx's pool does not at 50 connections on 2 cores."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def over_http(url: str, token: str, requests: int, chats: int, clients: int) -> dict[str, dict[str, float]]:
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(clients):
        pool.put_nowait(Connection(host, int(port), token))
    chat_body = json.dumps({"model": "shoal", "messages": [{"role": "user", "content": "When is high tide?"}]})

    async def tools() -> None:
        connection = await pool.get()
        status, _ = await connection.request("GET", "/api/tools")
        pool.put_nowait(connection)
        assert status == 200, status

    async def chat() -> None:
        connection = await pool.get()
        status, body = await connection.request("POST", "/v1/chat/completions", chat_body.encode())
        pool.put_nowait(connection)
        assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == ANSWER, body[:200]

    try:
        await load(tools, min(200, requests), clients)  # warm-up: connections, first imports
        return {"tools": await load(tools, requests, clients), "chat": await load(chat, chats, clients)}
    finally:
        while not pool.empty():
            pool.get_nowait().close()


async def asgi_call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request straight into the ASGI app: everything but the socket, HTTP parsing and uvicorn."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"authorization", b"Bearer x"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # the request is over: a disconnect never comes
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def in_process(data: Path, requests: int, chats: int, clients: int) -> dict[str, dict[str, float]]:
    """The same app on a core of this process: through ASGI (routing, auth, validation, JSON) and the bare
    handler (`routes_ops.tools`, or `core.send` for a chat)."""
    from app.serve import routes_ops
    from app.serve.api import create_app
    from app.serve.auth import Access
    from app.serve.server import make_state
    from core.approvals import ApprovalBroker
    from core.settings import ServeSettings

    broker = ApprovalBroker()
    core = await _core(data, broker)
    state = make_state(core, broker, Access("x"), ServeSettings(rate_limit=1e9, rate_burst=1_000_000))
    app = create_app(state)
    chat_body = json.dumps({"model": "shoal", "messages": [{"role": "user", "content": "When is high tide?"}]})
    try:

        async def asgi_tools() -> None:
            assert (await asgi_call(app, "GET", "/api/tools"))[0] == 200

        async def asgi_chat() -> None:
            status, body = await asgi_call(app, "POST", "/v1/chat/completions", chat_body.encode())
            assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == ANSWER

        async def tools() -> None:
            assert await routes_ops.tools(state)

        async def chat() -> None:
            session = await core.new_session("bench")
            final = None
            async for event in core.send(session.id, "When is high tide?"):
                final = event
            assert getattr(final, "text", None) == ANSWER

        await load(asgi_tools, min(200, requests), clients)
        return {
            "asgi tools": await load(asgi_tools, requests, clients),
            "asgi chat": await load(asgi_chat, chats, clients),
            "tools": await load(tools, requests, clients),
            "chat": await load(chat, chats, clients),
        }
    finally:
        await core.stop()


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server_dir, local_dir = Path(tmp, "server"), Path(tmp, "local")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--server",
            str(server_dir),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None and process.stdin is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))
        try:
            http = await over_http(ready["url"], ready["token"], args.requests, args.chats, args.clients)
        finally:
            process.stdin.close()
            await asyncio.wait_for(process.wait(), 30)
        local = await in_process(local_dir, args.requests, args.chats, args.clients)
    print(f"shoal serve, {args.clients} concurrent clients (server in its own process; scripted model)")
    for name, label in (("tools", "GET /api/tools"), ("chat", "POST /v1/chat/completions")):
        print(f"  {label}")
        rows = (("HTTP (loopback, own process)", http[name]), ("ASGI app in-process", local[f"asgi {name}"]),
                ("handler in-process", local[name]))  # fmt: skip
        for row, figures in rows:
            ratio = figures["rps"] / local[name]["rps"]
            print(
                f"    {row:30s} {figures['rps']:9,.0f} req/s   p50 {figures['p50']:7.1f} ms   "
                f"p99 {figures['p99']:7.1f} ms   throughput vs handler {ratio:5.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="GET /api/tools calls")
    parser.add_argument("--chats", type=int, default=500, help="chat completions")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--server", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server is not None:
        asyncio.run(run_server(args.server))
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
