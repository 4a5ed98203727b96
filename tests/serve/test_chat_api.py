"""Chat over HTTP: JSON and Server-Sent Events, approvals answered over the API, sessions, timeline."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from core.providers.scripted import tool_call
from tests.serve.conftest import served


async def read_sse(response: httpx.Response, *, pause: float = 0.0) -> list[dict[str, Any]]:
    """The events of an SSE response; `pause` makes a slow reader (sleeps between lines)."""
    events: list[dict[str, Any]] = []
    name = None
    async for line in response.aiter_lines():
        if pause:
            await asyncio.sleep(pause)
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            assert data["type"] == name
            events.append(data)
    return events


async def new_session(client: httpx.AsyncClient, title: str = "") -> str:
    answer = await client.post("/api/sessions", json={"title": title})
    assert answer.status_code == 201
    return str(answer.json()["id"])


async def test_a_message_answered_as_json_is_in_the_session_and_the_timeline() -> None:
    async with served(["The capital of France is Paris."]) as server, server.client() as client:
        session = await new_session(client, "geo")
        answer = await client.post(f"/api/sessions/{session}/messages", json={"text": "Capital?", "stream": False})
        assert answer.status_code == 200
        body = answer.json()
        assert body["status"] == "ok" and body["text"] == "The capital of France is Paris."
        assert body["events"][0]["type"] == "turn_started"
        detail = (await client.get(f"/api/sessions/{session}")).json()
        assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
        assert detail["session"]["title"] == "geo" and detail["session"]["message_count"] == 2
        steps = (await client.get("/api/timeline", params={"session_id": session})).json()
        assert [e["kind"] for e in steps] == ["user.message", "llm.request", "llm.response", "turn.end"]
        tree = (await client.get(f"/api/traces/{body['trace_id']}")).json()
        assert tree[0]["event"]["kind"] == "user.message" and tree[0]["children"]
        origin = (await client.get(f"/api/events/{steps[-1]['id']}/origin")).json()
        assert origin[-1]["kind"] == "user.message"
        listed = (await client.get("/api/sessions")).json()
        assert listed[0]["id"] == session


async def test_the_answer_streams_as_server_sent_events_even_to_a_slow_reader() -> None:
    long_answer = "word " * 400  # 500 deltas of 4 characters
    async with served([long_answer]) as server, server.client() as client:
        session = await new_session(client)
        async with client.stream("POST", f"/api/sessions/{session}/messages", json={"text": "Talk"}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-shoal-session"] == session
            events = await read_sse(response, pause=0.002)
        kinds = [e["type"] for e in events]
        assert kinds[0] == "turn_started" and kinds[-1] == "turn_finished"
        assert "".join(e["text"] for e in events if e["type"] == "assistant_delta") == long_answer
        assert events[-1]["status"] == "ok"


async def test_a_high_risk_tool_is_approved_through_the_api_while_the_stream_waits() -> None:
    steps = [[tool_call("shell", {"command": "echo approved-by-api"})], "It printed approved-by-api."]
    async with served(steps) as server, server.client() as client:
        session = await new_session(client)
        events: list[dict[str, Any]] = []
        async with client.stream("POST", f"/api/sessions/{session}/messages", json={"text": "run it"}) as response:
            name = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if name == "approval_requested":
                        pending = (await client.get("/api/approvals")).json()
                        assert [p["tool"] for p in pending] == ["shell"]
                        assert pending[0]["summary"] == events[-1]["summary"] == "echo approved-by-api"
                        answer = await client.post(
                            f"/api/approvals/{events[-1]['id']}", json={"decision": "approve_once"}
                        )
                        assert answer.status_code == 200
                        again = await client.post(f"/api/approvals/{events[-1]['id']}", json={"decision": "deny"})
                        assert again.status_code == 404
        finished = next(e for e in events if e["type"] == "tool_call_finished")
        assert finished["ok"] and "approved-by-api" in finished["output"]
        assert events[-1]["type"] == "turn_finished" and events[-1]["text"] == "It printed approved-by-api."
        assert (await client.get("/api/approvals")).json() == []


async def test_a_client_that_goes_away_stops_its_turn_and_the_stop_is_recorded() -> None:
    async with served(["slow " * 200], delay=0.01) as server, server.client() as client:
        session = await new_session(client)
        async with client.stream("POST", f"/api/sessions/{session}/messages", json={"text": "go"}) as response:
            async for line in response.aiter_lines():
                if "assistant_delta" in line:
                    break  # leave mid-answer
        for _ in range(200):
            ends = (await client.get("/api/timeline", params={"session_id": session, "kind": "turn.end"})).json()
            if ends:
                break
            await asyncio.sleep(0.02)
        assert ends and ends[0]["status"] == "cancelled"


async def test_bad_requests_get_a_422_or_404_with_a_reason() -> None:
    async with served() as server, server.client() as client:
        session = await new_session(client)
        typo = await client.post(f"/api/sessions/{session}/messages", json={"txt": "hello"})
        assert typo.status_code == 422
        reasons = {tuple(d["loc"]): d["type"] for d in typo.json()["detail"]}
        assert reasons[("body", "text")] == "missing" and reasons[("body", "txt")] == "extra_forbidden"
        empty = await client.post(f"/api/sessions/{session}/messages", json={"text": ""})
        assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "text"]
        not_json = await client.post(
            f"/api/sessions/{session}/messages", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 422 and not_json.json()["detail"][0]["type"] == "json_invalid"
        missing = await client.get("/api/sessions/00000000000000000000000000000000")
        assert missing.status_code == 404 and "does not exist" in missing.json()["message"]
        assert missing.json()["fix"]
        assert (await client.get("/api/traces/feedface")).status_code == 404
        assert (await client.post("/api/approvals/nope", json={"decision": "deny"})).status_code == 404
        wrong = await client.post("/api/approvals/nope", json={"decision": "maybe"})
        assert wrong.status_code == 422


async def test_tools_can_be_listed_and_switched_off() -> None:
    async with served() as server, server.client() as client:
        tools = {t["name"]: t for t in (await client.get("/api/tools")).json()}
        assert tools["shell"]["risk"] == "high" and tools["shell"]["enabled"]
        off = await client.put("/api/tools/shell", json={"enabled": False})
        assert off.status_code == 200 and off.json()["enabled"] is False
        assert not server.core.tool_enabled("shell")
        assert (await client.put("/api/tools/nothing_like_it", json={"enabled": False})).status_code == 404


async def test_memory_search_says_how_to_turn_memory_on_and_group_status_says_not_joined() -> None:
    async with served() as server, server.client() as client:
        memory = await client.get("/api/memory/search", params={"q": "anything"})
        assert memory.status_code == 503 and "memory.enabled" in memory.json()["fix"]
        group = (await client.get("/api/group")).json()
        assert group == {
            "enabled": False,
            "joined": False,
            "name": "default",
            "agent": "",
            "state": "",
            "members": [],
            "outbox_depth": None,
        }
        deleted = await client.delete(f"/api/sessions/{await new_session(client)}")
        assert deleted.status_code == 204
