"""The server against clients that misbehave: odd methods, big bodies, proxies' headers, DNS rebinding,
clients that leave, two turns at once, crashes, a taken port, cancellation."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest

from app.serve.server import _bind
from core.errors import ConfigError
from core.providers.scripted import tool_call
from core.settings import ServeSettings
from tests.serve.conftest import served


def series(text: str, name: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)
    }


async def test_made_up_methods_cannot_mint_metric_series() -> None:
    async with served() as server, server.client(token=None) as stranger:
        for i in range(20):
            await stranger.request(f"M{i:06d}", "/x")
        async with server.client() as client:
            text = (await client.get("/metrics")).text
        requests = series(text, "shoal_http_requests_total")
        assert not any("M0000" in key for key in requests)
        assert requests['shoal_http_requests_total{method="other",route="unrouted",status="401"}'] == 20


async def test_oversized_and_unsized_bodies_are_refused_before_reading() -> None:
    async with served() as server, server.client() as client:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"POST /api/sessions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {server.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {9 * 1024 * 1024}\r\n\r\n".encode()
        )  # and no body at all: the answer must not wait for 9 MB
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status_line.split()[1] == b"413"

        async def chunks() -> Any:
            yield b'{"title": "t"}'

        chunked = await client.post("/api/sessions", content=chunks())
        assert chunked.status_code == 411


async def test_forwarded_for_headers_do_not_buy_fresh_rate_limit_buckets() -> None:
    async with served(overrides={"serve": {"rate_limit": 0.1, "rate_burst": 2}}) as server, server.client() as client:
        answers = [
            (await client.get("/api/tools", headers={"X-Forwarded-For": f"10.0.0.{i}"})).status_code for i in range(4)
        ]
        assert answers == [200, 200, 429, 429]


async def test_without_a_token_only_requests_addressed_to_localhost_are_served() -> None:
    async with served(overrides={"serve": {"auth": False}}) as server, server.client(token=None) as client:
        assert server.token is None
        assert (await client.get("/api/tools")).status_code == 200
        rebound = await client.get("/api/tools", headers={"Host": "evil.example:8765"})
        assert rebound.status_code == 403 and "localhost" in rebound.json()["message"]


async def test_a_json_client_that_leaves_cancels_its_turn_and_its_approval() -> None:
    steps = [[tool_call("shell", {"command": "echo nobody-will-approve"})], "never reached"]
    async with served(steps) as server, server.client() as client:
        session = (await client.post("/api/sessions", json={})).json()["id"]
        with pytest.raises(httpx.ReadTimeout):
            async with server.client(timeout=1.0) as impatient:
                await impatient.post(f"/api/sessions/{session}/messages", json={"text": "run", "stream": False})
        for _ in range(100):
            ends = (await client.get("/api/timeline", params={"session_id": session, "kind": "turn.end"})).json()
            if ends:
                break
            await asyncio.sleep(0.05)
        assert ends and ends[0]["status"] == "cancelled"
        assert (await client.get("/api/approvals")).json() == []
        assert not server.state.turns


async def test_one_turn_at_a_time_per_session() -> None:
    async with served(["slow " * 50, "second"], delay=0.01) as server, server.client() as client:
        session = (await client.post("/api/sessions", json={})).json()["id"]
        first = asyncio.create_task(
            client.post(f"/api/sessions/{session}/messages", json={"text": "one", "stream": False})
        )
        for _ in range(200):
            if session in server.state.turns:
                break
            await asyncio.sleep(0.01)
        second = await client.post(f"/api/sessions/{session}/messages", json={"text": "two", "stream": False})
        assert second.status_code == 409 and "already running" in second.json()["message"]
        assert (await first).json()["status"] == "ok"
        again = await client.post(f"/api/sessions/{session}/messages", json={"text": "two", "stream": False})
        assert again.status_code == 200 and again.json()["text"] == "second"


async def test_api_turns_are_requested_by_api_for_the_policy() -> None:
    async with served(["ok"]) as server, server.client() as client:
        session = (await client.post("/api/sessions", json={})).json()["id"]
        await client.post(f"/api/sessions/{session}/messages", json={"text": "hi", "stream": False})
        [question] = (await client.get("/api/timeline", params={"session_id": session, "kind": "user.message"})).json()
        assert question["payload"]["requester"] == "api"


async def test_an_unexpected_error_is_answered_counted_and_shaped(monkeypatch: pytest.MonkeyPatch) -> None:
    async with served() as server, server.client() as client:

        async def broken(limit: int = 100) -> Any:
            raise RuntimeError("the disk went away")

        monkeypatch.setattr(server.core.sessions, "recent", broken)
        answer = await client.get("/api/sessions")
        assert answer.status_code == 500 and answer.json()["actor"] == "bug"
        assert "the disk went away" in answer.json()["message"]
        text = (await client.get("/metrics")).text
        assert (
            series(text, "shoal_http_requests_total")[
                'shoal_http_requests_total{method="GET",route="/api/sessions",status="500"}'
            ]
            == 1
        )


async def test_openai_validation_errors_come_in_openai_shape_and_head_health_works() -> None:
    async with served() as server, server.client() as client:
        invalid = await client.post("/v1/chat/completions", json={"model": "shoal", "messages": []})
        assert invalid.status_code == 422 and "messages" in invalid.json()["error"]["message"]
        assert (await client.head("/health")).status_code == 200


async def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=r"Cannot listen on 127\.0\.0\.1") as info:
            _bind(ServeSettings(port=port))
        assert "--port" in info.value.fix


async def test_a_cancelled_server_stops_listening() -> None:
    async with served() as server:
        url = server.url
    async with httpx.AsyncClient(base_url=url) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/health")
